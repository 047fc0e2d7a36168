"""Scene recall with and without the game's own audio, on footage that has audio.

For each clip of ``models/footage/audio/`` (or those named), ``moodscore analyze --mode game`` is
run twice through the real command path, once hearing the file's audio track and once with
``--no-game-audio``; each 0.5 s window is compared with the label most of its frames carry
(windows with no label are left out). Reported per clip and class: recall of the scene the window
names (None below ``game.min_scene_prob`` counts as a miss), and how many windows the audio moved.

    .venv/bin/python -m tools.eval_game_audio [CLIP.mp4 ...] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from daemon.app.render import analyze
from daemon.config import REPO_ROOT, load_config

FOOTAGE = REPO_ROOT / "models" / "footage" / "audio"
CLASSES = ("combat", "exploration", "dialogue", "menu")


def window_labels(labels: dict[str, Any], window_s: float, n_windows: int) -> list[str | None]:
    fps = float(labels["fps"])
    per_frame: list[str | None] = [None] * int(labels["frames"])
    for start, end, _state, cls in labels["segments"]:
        for i in range(start, min(end, len(per_frame))):
            per_frame[i] = cls
    out: list[str | None] = []
    for w in range(n_windows):
        a, b = round(w * window_s * fps), round((w + 1) * window_s * fps)
        votes = Counter(per_frame[a:b])
        best, count = votes.most_common(1)[0] if votes else (None, 0)
        out.append(best if count * 2 > max(1, b - a) else None)
    return out


def evaluate(clip: Path) -> dict[str, Any]:
    labels = json.loads(clip.with_suffix(".json").read_text())
    base = load_config(None).replace("analysis", mode="game")
    result: dict[str, Any] = {"clip": clip.name, "audio": labels["meta"].get("audio", "")}
    with tempfile.TemporaryDirectory() as folder:
        runs = {}
        for name, hear in (("picture", False), ("with_audio", True)):
            out = Path(folder) / f"{name}.json"
            analyze(base.replace("game", audio=hear), str(clip), out)
            runs[name] = json.loads(out.read_text())["windows"]
    window_s = base.analysis.window_s
    truth = window_labels(labels, window_s, len(runs["picture"]))
    for name, windows in runs.items():
        recall: dict[str, Any] = {}
        for cls in CLASSES:
            idx = [i for i, t in enumerate(truth) if t == cls]
            if idx:
                hits = sum(1 for i in idx if windows[i]["scene"] == cls)
                recall[cls] = {"recall": round(hits / len(idx), 3), "windows": len(idx)}
        result[name] = recall
    moved = Counter(k for w in runs["with_audio"] for k in w.get("audio_moved", {}))
    result["windows_moved"] = dict(moved)
    result["windows"] = len(truth)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    clips = args.clips or sorted(FOOTAGE.glob("*.mp4"))
    results = [evaluate(c) for c in clips]
    for r in results:
        print(r["clip"], "windows", r["windows"], "moved", r["windows_moved"])
        for cls in CLASSES:
            if cls in r["picture"]:
                p, a = r["picture"][cls], r["with_audio"][cls]
                print(
                    f"  {cls:12s} n={p['windows']:4d}  picture {p['recall']:.3f}  "
                    f"with audio {a['recall']:.3f}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
