#!/usr/bin/env python3
"""Train the default scene model on the recorded footage and report its held-out figures.

Reads the clips the recorders wrote:

- ``.cache/scene/train``: ViZDoom scenarios, freedoom2 MAP01-MAP12, the training Atari games
  (``tools/record_vizdoom.py``, ``tools/record_atari.py``; git-ignored, re-recorded in minutes);
- ``models/footage/train``: the committed footage of the open-source games
  (``tools/record_games``);
- ``.cache/scene/val``: freedoom2 MAP13-MAP16, the only set used to choose the epoch;
- ``.cache/scene/eval``: freedoom1 E1M1-E1M6, never used to train or tune (independent);
- ``.cache/scene/heldout_atari``: the held-out Atari games, never trained or tuned on;
- ``models/footage/val``: the held-out games (Red Eclipse, Flare), never trained or tuned on:
  read only after training, for the figures.

Writes ``models/weights/scene_default.pt`` (with its metrics inside), the metrics as JSON and a
confusion-matrix PNG per evaluation set beside it. ``--ablate`` then retrains the GRU stage
without each group of picture cues in turn (the CNN stays as trained) and reports what each adds
on the held-out sets. CPU: about 30 minutes on two cores (``OMP_WAIT_POLICY=PASSIVE`` when other
work shares the cores).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/train_scene.py --ablate
    .venv/bin/python tools/train_scene.py --colour hsv --epochs 10 --steps 150 \\
        --affect-weight 1 --out .cache/scene_hsv.pt            # the colour ablation
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import dataclasses  # noqa: E402 - after sys.path fix
from typing import Any  # noqa: E402

import torch  # noqa: E402

from daemon.training.scene import plot_confusion  # noqa: E402
from models.scene import (  # noqa: E402
    DEFAULT_WEIGHTS,
    SceneNet,
    SceneNetConfig,
    load_checkpoint,
    save_checkpoint,
)
from models.scene_augment import HELD_SHARE, stutter_copies  # noqa: E402
from models.scene_cues import CUE_GROUPS, CUE_NAMES  # noqa: E402
from models.scene_data import (  # noqa: E402
    SCENE_CLASSES,
    Clip,
    load_clips,
    load_footage_folder,
    load_heldout_games,
)
from models.scene_training import TrainSettings, evaluate, train  # noqa: E402

DATA = REPO_ROOT / ".cache" / "scene"
FOOTAGE = REPO_ROOT / "models" / "footage"
EVAL_SETS = {
    "val_freedoom2": "val",
    "test_freedoom1": "eval",
    "test_atari": "heldout_atari",
}


def _warm_start(net: SceneNet, base: SceneNet) -> None:
    """Copy ``base``'s GRU and window heads into ``net``; inputs ``base`` lacks (cues) start at
    zero weight, so ``net`` starts out answering as ``base`` does."""
    with torch.no_grad():
        source = base.state_dict()
        for name, value in net.state_dict().items():
            if not name.startswith(("gru.", "classify.", "affect.")):
                continue
            old = source[name]
            if old.shape == value.shape:
                value.copy_(old)
            elif name == "gru.weight_ih_l0" and old.shape[0] == value.shape[0]:
                value.zero_()
                value[:, : old.shape[1]] = old
            else:
                raise SystemExit(
                    f"cannot warm-start {name}: {tuple(old.shape)} vs {tuple(value.shape)}"
                )


def figures_of(net: SceneNet, clips: list[Clip]) -> dict[str, Any]:
    result = evaluate(net, clips, classes=SCENE_CLASSES)
    figures = result.metrics()
    figures["groups"] = sorted({c.group for c in clips})
    figures["gameplay_only"] = result.subset(result.labels <= 1).metrics()
    return figures


def ablate(
    net: SceneNet,
    train_clips: list[Clip],
    val_clips: list[Clip],
    sets: dict[str, list[Clip]],
    settings: TrainSettings,
) -> dict[str, Any]:
    """The GRU stage retrained on the trained CNN with all cues, none, and all but each group."""
    variants: dict[str, tuple[str, ...]] = {"all cues": CUE_NAMES, "no cues": ()}
    for group, names in CUE_GROUPS.items():
        variants[f"without {group}"] = tuple(n for n in CUE_NAMES if n not in names)
    table: dict[str, Any] = {}
    for name, cues in variants.items():
        config = dataclasses.replace(net.config, cues=cues)
        other = SceneNet(config, len(SCENE_CLASSES))
        cnn_only = {
            k: v
            for k, v in net.state_dict().items()
            if not k.startswith(("gru.", "classify.", "affect."))
        }
        other.load_state_dict(cnn_only, strict=False)
        train(
            other,
            train_clips,
            classes=SCENE_CLASSES,
            settings=dataclasses.replace(settings, cnn_epochs=0),
            val_clips=val_clips,
        )
        row: dict[str, Any] = {}
        for set_name, clips in sets.items():
            figures = evaluate(other, clips, classes=SCENE_CLASSES).metrics()
            row[set_name] = {
                "accuracy": figures["accuracy"],
                "balanced_accuracy": figures["balanced_accuracy"],
                "recall": figures["recall"],
                "spearman": figures.get("spearman_arousal_monsters"),
            }
        table[name] = row
        print(f"ablation {name}: " + json.dumps(
            {k: v["balanced_accuracy"] for k, v in row.items()}), flush=True)  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--colour", choices=("rgb", "hsv"), default="rgb")
    parser.add_argument("--epochs", type=int, default=16, help="epochs per stage")
    parser.add_argument("--steps", type=int, default=200, help="steps per epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--affect-weight", type=float, default=2.0, help="arousal/valence loss")
    parser.add_argument("--footage", type=Path, default=FOOTAGE, help="committed game footage")
    parser.add_argument("--no-cues", action="store_true", help="the GRU reads no picture cues")
    parser.add_argument("--ablate", action="store_true", help="what each cue group adds")
    parser.add_argument(
        "--stutter",
        type=float,
        default=0.5,
        help="share of clips with play also trained as a stuttered copy (models/scene_augment.py)",
    )
    parser.add_argument(
        "--held",
        type=float,
        default=0.0,
        help="share of clips with play also trained as a copy whose picture is held 1.5-4 s",
    )
    parser.add_argument(
        "--balance-sources",
        action="store_true",
        help="draw each class from its sources (ViZDoom, Atari, each game) equally",
    )
    parser.add_argument(
        "--still-reference",
        type=float,
        default=0.0,
        help="share of stage-1 frames shown with no motion (models/scene_training.py)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="with --gru-from: also start the GRU and heads from it (new cue inputs at zero), "
        "at lr 1e-3, and distil its arousal/valence where the footage has none",
    )
    parser.add_argument(
        "--gru-from",
        type=Path,
        help="keep this checkpoint's CNN and train only the GRU stage (minutes, not half an hour)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    train_clips = load_clips(args.data / "train") + load_footage_folder(args.footage / "train")
    sets = {name: load_clips(args.data / folder) for name, folder in EVAL_SETS.items()}
    copies = stutter_copies(train_clips, share=args.stutter, seed=args.seed)
    if args.held:
        copies += stutter_copies(
            train_clips, share=args.held, seed=args.seed + 1, new_share=HELD_SHARE
        )
    train_clips += copies
    print(f"train: {len(train_clips)} clips ({len(copies)} stuttered copies), "
          f"{sum(len(c) for c in train_clips)} frames", flush=True)  # fmt: skip
    config = SceneNetConfig(colour=args.colour, cues=() if args.no_cues else CUE_NAMES)
    net = SceneNet(config, len(SCENE_CLASSES))
    base: SceneNet | None = None
    if args.gru_from is not None:
        base = load_checkpoint(args.gru_from).net
        if base.config.colour != config.colour:
            raise SystemExit(f"{args.gru_from} reads {base.config.colour}, not {config.colour}")
        cnn_only = {
            k: v
            for k, v in base.state_dict().items()
            if not k.startswith(("gru.", "classify.", "affect."))
        }
        net.load_state_dict(cnn_only, strict=False)
        if args.warm:
            _warm_start(net, base)
    settings = TrainSettings(
        cnn_epochs=0 if args.gru_from is not None else args.epochs,
        cnn_steps=args.steps,
        gru_epochs=args.epochs,
        gru_steps=args.steps,
        seed=args.seed,
        affect_weight=args.affect_weight,
        lr=1e-3 if args.warm else 3e-3,
        still_reference=args.still_reference,
        balance_sources=args.balance_sources,
    )
    history = train(
        net,
        train_clips,
        classes=SCENE_CLASSES,
        settings=settings,
        val_clips=sets["val_freedoom2"],
        teacher=base if args.gru_from is not None and args.warm else None,
        log=lambda line: print(line, flush=True),
    )
    metrics: dict[str, object] = {
        "trained_on": sorted({c.group for c in train_clips}),
        "stutter": args.stutter,
        "held": args.held,
        "still_reference": args.still_reference,
        "balance_sources": args.balance_sources,
        "cnn_from": str(args.gru_from) if args.gru_from is not None else None,
        "warm": args.warm,
        "train_seconds": round(time.perf_counter() - started),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "config": config.to_dict(),
        **history,
    }
    # The held-out games are read only now, after training: nothing above saw them.
    sets.update(load_heldout_games(args.footage))
    for name, clips in sets.items():
        # gameplay_only: menus and dialogue have no monster count and are left out already;
        # this is the figure for intensity within play.
        figures = figures_of(net, clips)
        metrics[name] = figures
        headline = {k: figures[k] for k in ("accuracy", "balanced_accuracy", "recall")}
        spearman = figures.get("spearman_arousal_monsters")
        print(f"{name}: {json.dumps(headline)} spearman={spearman}", flush=True)
        png = args.out.with_name(f"{args.out.stem}.{name}.confusion.png")
        plot_confusion(
            figures["confusion"], SCENE_CLASSES, png, f"{name}: accuracy {figures['accuracy']:.0%}"
        )
    if args.ablate:
        metrics["ablation"] = ablate(net, train_clips, sets["val_freedoom2"], sets, settings)
    save_checkpoint(args.out, net, SCENE_CLASSES, metrics=metrics)
    args.out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
