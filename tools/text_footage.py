"""Measure the on-screen text cue on recorded footage and keep it with the clip (issue 15).

The committed footage is 96x72, where no text can be read; the text cue is measured on
full-size frames, so clips recorded with ``--full-frames`` keep every 4th frame at the window's
own size (``tools/record_games``, not committed). This tool runs the text detector
(:mod:`models.text_cues`) on those frames and writes the clip to ``models/footage/text/`` with
the per-frame figures as cues ``text_area``, ``text_lines`` and ``text_block`` (null on the
frames not measured), so the cue's effect can be measured again without the games:

    .venv/bin/python -m tools.record_games flare --clip story_800x600 \\
        --out .cache/text_footage --full-frames .cache/text_full
    nice -n 15 .venv/bin/python -m tools.text_footage .cache/text_footage .cache/text_full
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from daemon.config import REPO_ROOT
from models.text_cues import TextDetector, cues_from_boxes

OUT = REPO_ROOT / "models" / "footage" / "text"
CUE_KEYS = {
    "area": "text_area",
    "prose": "text_prose",
    "lines": "text_lines",
    "block": "text_block",
}


def measure_clip(detector: TextDetector, labels_path: Path, frames: Path, out: Path) -> Path:
    """Write ``labels_path``'s clip and its text cues to ``out``; returns the JSON written."""
    labels = json.loads(labels_path.read_text())
    n = int(labels["frames"])
    columns: dict[str, list[float | None]] = {key: [None] * n for key in CUE_KEYS.values()}
    boxes: dict[str, list[list[float]]] = {}
    spent: list[float] = []
    for jpg in sorted(frames.glob("*.jpg")):
        index = int(jpg.stem)
        if index >= n:
            continue
        image = cv2.imread(str(jpg))
        if image is None:
            continue
        started = time.thread_time()
        found = detector.boxes(np.ascontiguousarray(image[:, :, ::-1]))
        cues = cues_from_boxes(found, aspect=image.shape[1] / image.shape[0])
        spent.append(time.thread_time() - started)
        boxes[str(index)] = [[round(float(v), 4) for v in box] for box in found]
        for name, key in CUE_KEYS.items():
            columns[key][index] = round(float(getattr(cues, name)), 4)
    labels.setdefault("cues", {}).update(columns)
    # The boxes themselves (x0, y0, x1, y1 as shares of the frame), so other summaries of them
    # can be tried without the full-size frames.
    labels["text_boxes"] = boxes
    name = f"{labels['meta']['game']}_{labels_path.stem}"
    labels["video"] = f"{name}.mp4"
    labels["meta"]["text_cue"] = (
        "models/text_cues.py on every 4th frame at the window's size (tools/text_footage.py), "
        f"{len(spent)} frames, {1000 * float(np.median(spent)) if spent else 0:.0f} ms p50 each"
    )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(labels_path.with_suffix(".mp4"), out / f"{name}.mp4")
    written = out / f"{name}.json"
    written.write_text(json.dumps(labels))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("footage", type=Path, help="--out of the recording")
    parser.add_argument("full", type=Path, help="--full-frames of the recording")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    detector = TextDetector(threads=1)
    for labels_path in sorted(args.footage.glob("*/*/*.json")):
        game = labels_path.parent.name
        frames = args.full / game / labels_path.stem
        if not frames.is_dir():
            print(f"{labels_path}: no full-size frames in {frames}, skipped")
            continue
        written = measure_clip(detector, labels_path, frames, args.out)
        print(f"{written.name}: {json.loads(written.read_text())['meta']['text_cue']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
