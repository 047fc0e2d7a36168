#!/usr/bin/env python3
"""Train the n-gram melody model on the cached folk-tune dataset and report held-out NLL.

Splits the dataset by tune (seeded 90/10), fits :class:`models.ngram.NgramMelodyModel` on the
training tunes, scores the held-out tunes against a context-free unigram baseline, and writes the
weights plus a metrics JSON beside them.

    .venv/bin/python tools/prepare_melodies.py          # once: builds .cache/melodies.json.gz
    .venv/bin/python tools/train_ngram.py               # writes models/weights/ngram_melody.*
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.melody_data import load_dataset, split_by_tune  # noqa: E402 - after sys.path fix
from models.ngram import DEFAULT_WEIGHTS, NgramMelodyModel  # noqa: E402

DEFAULT_DATA = REPO_ROOT / ".cache" / "melodies.json.gz"


def metrics_path_for(weights: Path) -> Path:
    """``x/ngram_melody.json.gz`` -> ``x/ngram_melody.metrics.json``."""
    name = weights.name
    for suffix in (".json.gz", ".gz", ".json"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return weights.with_name(f"{name}.metrics.json")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dataset (JSON gzip)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N tunes")
    parser.add_argument("--order", type=int, default=4, help="n-gram order (2-6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="held-out share")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_WEIGHTS, help="weights path")
    parser.add_argument(
        "--metrics", type=Path, default=None, help="metrics JSON (default: beside the weights)"
    )
    parser.add_argument(
        "--compare-orders",
        action="store_true",
        help="also fit and score orders 2..6 on the same split (for the model card)",
    )
    args = parser.parse_args(argv)

    try:
        dataset = load_dataset(args.data)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tunes = list(dataset.tunes)
    if args.limit is not None:
        tunes = tunes[: args.limit]
    train, test = split_by_tune(tunes, test_fraction=args.test_fraction, seed=args.seed)
    if not train:
        print("error: no training tunes; build a bigger dataset", file=sys.stderr)
        return 2

    started = time.perf_counter()
    model = NgramMelodyModel(order=args.order).fit(train)
    fit_seconds = time.perf_counter() - started
    model.info.update({"seed": args.seed, "data": dataset.meta.get("collections", [])})
    model.save(args.output)

    metrics: dict[str, Any] = {
        "order": args.order,
        "seed": args.seed,
        "train_tunes": len(train),
        "train_notes": sum(len(t.notes) for t in train),
        "test_tunes": len(test),
        "test_notes": sum(len(t.notes) for t in test),
        "fit_seconds": round(fit_seconds, 2),
        "weights_bytes": args.output.stat().st_size,
        "dataset": dataset.meta,
    }
    if test:
        started = time.perf_counter()
        metrics["test_nll_per_note"] = round(model.nll_per_note(test), 4)
        metrics["eval_seconds"] = round(time.perf_counter() - started, 2)
        metrics["test_nll_per_note_unigram"] = round(model.baseline.nll_per_note(test), 4)
        metrics["train_nll_per_note"] = round(model.nll_per_note(train[: len(test)]), 4)
        if args.compare_orders:
            metrics["test_nll_by_order"] = {
                str(order): round(NgramMelodyModel(order=order).fit(train).nll_per_note(test), 4)
                for order in range(2, 7)
            }
    metrics["test_ids"] = [t.id for t in test]

    metrics_path = args.metrics or metrics_path_for(args.output)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")

    summary = f"order {args.order}: {len(train)} train / {len(test)} test tunes"
    if test:
        summary += (
            f"; held-out NLL {metrics['test_nll_per_note']:.3f} nats/note "
            f"(unigram {metrics['test_nll_per_note_unigram']:.3f})"
        )
    print(f"{summary}; wrote {args.output} ({metrics['weights_bytes']} bytes) and {metrics_path}")
    if "test_nll_by_order" in metrics:
        print("held-out NLL by order:", metrics["test_nll_by_order"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
