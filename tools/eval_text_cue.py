"""Scene recall with and without the on-screen text cue, on footage that carries it.

Each clip of ``models/footage/text/`` (written by ``tools/text_footage.py``: 96x72 frames plus
the text cue measured on the full-size frames) is read by the game mode's own model
(:class:`daemon.analysis.game.GameModel`, the shipped scene model or ``--model``) window by
window (0.5 s); its raw probabilities are cached, then fused with the text cue measured on the
frame due at each second (as :mod:`daemon.analysis.game_text` hands them over), smoothed and
floored as ``GameModel.infer`` does, once without and once with the text. The constants of
:mod:`models.text_cues` can so be tried in seconds; ``tests/test_game_text.py`` checks the
live path itself (a detector on a real frame, ``analyze`` recording the cue). Each window is
compared with the label most of its frames carry; reported per clip and class: recall of the
scene the window names (None below ``game.min_scene_prob`` counts as a miss), and how many
windows the text moved.

    .venv/bin/python -m tools.eval_text_cue [CLIP.json ...] [--json OUT.json] [--model PT]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from daemon.analysis.game import GameModel
from daemon.analysis.game_text import EVERY_S
from daemon.config import REPO_ROOT, load_config
from daemon.messages import Frame
from models.scene_data import load_footage
from models.text_cues import TextCues, cues_from_boxes, fuse

FOOTAGE = REPO_ROOT / "models" / "footage" / "text"
CLASSES = ("combat", "exploration", "dialogue", "menu")
# The clips the constants of models/text_cues.py were set on; the others only measure them.
DEV = (
    "openarena_menus_800x600",
    "openarena_dm_oa_dm4_640x480",
    "wesnoth_campaign_heir_to_the_throne_800x600",
    "renpy_tutorial_960x540",
)


def stored_text(labels: dict[str, Any]) -> dict[int, TextCues]:
    """Frame index -> the text cues of the boxes found on it (every 4th frame of a text clip),
    summed up by today's :func:`models.text_cues.cues_from_boxes`."""
    width, height = labels["meta"]["resolution"]
    return {
        int(i): cues_from_boxes(
            np.asarray(found, dtype=np.float32).reshape(-1, 4), aspect=width / height
        )
        for i, found in labels["text_boxes"].items()
    }


def picture_probs(clip_json: Path, model: str = "") -> dict[str, Any]:
    """The picture model's raw probabilities per 0.5 s window (the game mode's own model with
    no smoothing and no floor), the window labels, and the text reading each window would use
    (the frame due at each whole second: :data:`daemon.analysis.game_text.EVERY_S`). Cached
    under ``.cache/text_eval/`` by clip and model."""
    cache = (
        REPO_ROOT
        / ".cache"
        / "text_eval"
        / f"{clip_json.stem}.{Path(model).stem or 'shipped'}.json"
    )
    if cache.exists() and cache.stat().st_mtime > clip_json.stat().st_mtime:
        return dict(json.loads(cache.read_text()))
    clip = load_footage(clip_json)
    config = load_config(None).replace(
        "game", text=False, model=model, smoothing_s=0.0, min_scene_prob=0.0
    )
    game = GameModel(config=config.game, device="cpu")
    per_window = round(config.analysis.window_s * clip.fps)
    every = round(EVERY_S * clip.fps)
    stored = stored_text(json.loads(clip_json.read_text()))
    labels: list[str | None] = []
    probs: list[list[float]] = []
    text: list[int | None] = []  # the frame whose text each window reads
    due_index: int | None = None
    try:
        for start in range(0, len(clip.frames) - per_window + 1, per_window):
            prepared = []
            for i in range(start, start + per_window):
                prepared.append(
                    game.prepare(Frame(pts=i / clip.fps, image=clip.frames[i], index=i))
                )
                if i % every == 0:
                    due_index = i if i in stored else None
            mood = game.infer(prepared, start / clip.fps, (start + per_window) / clip.fps)
            votes = Counter(int(v) for v in clip.labels[start : start + per_window])
            best, count = votes.most_common(1)[0]
            labels.append(clip.classes[best] if best >= 0 and count * 2 > per_window else None)
            probs.append([mood.scene_probs[c] for c in game.classes])
            text.append(due_index)
    finally:
        game.close()
    result = {"classes": list(game.classes), "labels": labels, "probs": probs, "text": text}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result


def scenes(
    run: dict[str, Any], stored: dict[int, TextCues], *, text: bool
) -> tuple[list[str | None], list[dict[str, float]]]:
    """Each window's scene as the game mode names it (the fusion, then the smoothing and the
    floor of ``config.toml``: :meth:`daemon.analysis.game.GameModel.infer`), and what the text
    moved."""
    config = load_config(None).game
    classes = tuple(run["classes"])
    alpha = 1.0 - math.exp(-0.5 / config.smoothing_s) if config.smoothing_s > 0 else 1.0
    smoothed: np.ndarray | None = None
    out: list[str | None] = []
    moved_all: list[dict[str, float]] = []
    for raw, measured in zip(run["probs"], run["text"], strict=True):
        probs = np.asarray(raw, dtype=np.float64)
        moved: dict[str, float] = {}
        if text and measured is not None:
            probs, moved = fuse(classes, probs, stored[measured])
        smoothed = probs if smoothed is None else smoothed + alpha * (probs - smoothed)
        best = int(np.argmax(smoothed))
        out.append(classes[best] if smoothed[best] >= config.min_scene_prob else None)
        moved_all.append(moved)
    return out, moved_all


def evaluate(clip_json: Path, model: str = "") -> dict[str, Any]:
    result: dict[str, Any] = {"clip": clip_json.stem, "dev": clip_json.stem in DEV}
    run = picture_probs(clip_json, model)
    stored = stored_text(json.loads(clip_json.read_text()))
    truth = run["labels"]
    for name, on in (("picture", False), ("with_text", True)):
        named, moved = scenes(run, stored, text=on)
        recall: dict[str, Any] = {}
        for cls in CLASSES:
            idx = [i for i, t in enumerate(truth) if t == cls]
            if idx:
                hits = sum(1 for i in idx if named[i] == cls)
                recall[cls] = {
                    "recall": round(hits / len(idx), 3),
                    "windows": len(idx),
                    "hits": hits,
                }
        result[name] = recall
    result["windows_moved"] = dict(Counter(k for m in moved for k in m))
    result["moved_by_true_class"] = {
        str(k): v for k, v in Counter(t for t, m in zip(truth, moved, strict=True) if m).items()
    }
    result["windows"] = len(truth)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", default="", help="a scene checkpoint (default: the shipped one)")
    args = parser.parse_args(argv)
    clips = args.clips or sorted(FOOTAGE.glob("*.json"))
    results = [evaluate(c, args.model) for c in clips]
    pooled: dict[str, dict[str, Counter[str]]] = {}
    for r in results:
        tag = "dev" if r["dev"] else "measured"
        print(
            f"{r['clip']} ({tag}) windows {r['windows']} moved {r['windows_moved']} "
            f"by truth {r['moved_by_true_class']}"
        )
        for cls in CLASSES:
            if cls in r["picture"]:
                p, a = r["picture"][cls], r["with_text"][cls]
                print(
                    f"  {cls:12s} n={p['windows']:4d}  picture {p['recall']:.3f}  "
                    f"with text {a['recall']:.3f}"
                )
                box = pooled.setdefault(tag, {}).setdefault(cls, Counter())
                box["n"] += p["windows"]
                box["picture"] += p["hits"]
                box["with_text"] += a["hits"]
    for tag, by_class in pooled.items():
        print(f"pooled {tag}:")
        for cls, box in by_class.items():
            print(
                f"  {cls:12s} n={box['n']:4d}  picture {box['picture'] / box['n']:.3f}  "
                f"with text {box['with_text'] / box['n']:.3f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
