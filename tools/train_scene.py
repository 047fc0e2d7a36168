#!/usr/bin/env python3
"""Train the default scene model on the recorded footage and report its held-out figures.

Reads the clips the recorders wrote (``tools/record_vizdoom.py``, ``tools/record_atari.py``):

- ``.cache/scene/train``: ViZDoom scenarios, freedoom2 MAP01-MAP12, the training Atari games;
- ``.cache/scene/val``: freedoom2 MAP13-MAP16, the only set used to choose the epoch;
- ``.cache/scene/eval``: freedoom1 E1M1-E1M6, never used to train or tune (independent);
- ``.cache/scene/heldout_atari``: the held-out Atari games, never trained or tuned on.

Writes ``models/weights/scene_default.pt`` (with its metrics inside), the metrics as JSON and a
confusion-matrix PNG per evaluation set beside it. CPU: about 15 minutes on two cores
(with ``OMP_WAIT_POLICY=PASSIVE`` when other work shares the cores).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python tools/train_scene.py
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

import torch  # noqa: E402 - after sys.path fix

from daemon.training.scene import plot_confusion  # noqa: E402
from models.scene import DEFAULT_WEIGHTS, SceneNet, SceneNetConfig, save_checkpoint  # noqa: E402
from models.scene_data import SCENE_CLASSES, load_clips  # noqa: E402
from models.scene_training import TrainSettings, evaluate, train  # noqa: E402

DATA = REPO_ROOT / ".cache" / "scene"
EVAL_SETS = {
    "val_freedoom2": "val",
    "test_freedoom1": "eval",
    "test_atari": "heldout_atari",
}


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
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    train_clips = load_clips(args.data / "train")
    sets = {name: load_clips(args.data / folder) for name, folder in EVAL_SETS.items()}
    print(f"train: {len(train_clips)} clips, {sum(len(c) for c in train_clips)} frames", flush=True)
    config = SceneNetConfig(colour=args.colour)
    net = SceneNet(config, len(SCENE_CLASSES))
    settings = TrainSettings(
        cnn_epochs=args.epochs,
        cnn_steps=args.steps,
        gru_epochs=args.epochs,
        gru_steps=args.steps,
        seed=args.seed,
        affect_weight=args.affect_weight,
    )
    history = train(
        net,
        train_clips,
        classes=SCENE_CLASSES,
        settings=settings,
        val_clips=sets["val_freedoom2"],
        log=lambda line: print(line, flush=True),
    )
    metrics: dict[str, object] = {
        "trained_on": sorted({c.group for c in train_clips}),
        "train_seconds": round(time.perf_counter() - started),
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "config": config.to_dict(),
        **history,
    }
    for name, clips in sets.items():
        result = evaluate(net, clips, classes=SCENE_CLASSES)
        figures = result.metrics()
        figures["groups"] = sorted({c.group for c in clips})
        if name != "test_atari":
            # Gameplay only: menus and dialogue have no monster count and are left out already;
            # this is the figure for intensity within play.
            figures["gameplay_only"] = result.subset(result.labels <= 1).metrics()
        metrics[name] = figures
        headline = {k: figures[k] for k in ("accuracy", "balanced_accuracy", "recall")}
        spearman = figures.get("spearman_arousal_monsters")
        print(f"{name}: {json.dumps(headline)} spearman={spearman}", flush=True)
        png = args.out.with_name(f"{args.out.stem}.{name}.confusion.png")
        plot_confusion(
            figures["confusion"], SCENE_CLASSES, png, f"{name}: accuracy {figures['accuracy']:.0%}"
        )
    save_checkpoint(args.out, net, SCENE_CLASSES, metrics=metrics)
    args.out.with_suffix(".metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
