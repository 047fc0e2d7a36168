"""Label audit: a contact sheet per game (frames sampled per class, with their labels) and totals.

A sheet has a band per class and one of unlabelled frames; each band shows frames spread evenly
over all the game's frames of that class (all clips), at twice the stored size, captioned with
clip, time and label state, so a reviewer can see at a glance whether the labels are right.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from models.scene_data import FOOTAGE_FORMAT, SCENE_CLASSES, load_footage

SCALE = 2
PER_ROW = 8
ROWS_PER_CLASS = 2
CAPTION_H = 26
HEADER_H = 22


def _footage_files(root: Path) -> list[Path]:
    return [
        p
        for p in sorted(root.glob("*/*/*.json"))
        if json.loads(p.read_text()).get("format") == FOOTAGE_FORMAT
    ]


def _tile(frame: np.ndarray, caption: tuple[str, str]) -> np.ndarray:
    big = cv2.resize(
        frame, (frame.shape[1] * SCALE, frame.shape[0] * SCALE), interpolation=cv2.INTER_NEAREST
    )
    tile = np.full((big.shape[0] + CAPTION_H, big.shape[1], 3), 255, np.uint8)
    tile[: big.shape[0]] = big
    for line, text in enumerate(caption):
        cv2.putText(
            tile,
            text[:30],
            (3, big.shape[0] + 11 + 12 * line),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.34,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    cv2.rectangle(tile, (0, 0), (tile.shape[1] - 1, tile.shape[0] - 1), (200, 200, 200), 1)
    return tile


def game_sheet(paths: list[Path]) -> np.ndarray:
    """The contact sheet [shape=(h, w, 3), RGB] of one game's clips."""
    clips = [load_footage(p) for p in paths]
    tile_w = clips[0].frames.shape[2] * SCALE
    tile_h = clips[0].frames.shape[1] * SCALE + CAPTION_H
    width = PER_ROW * tile_w
    bands: list[np.ndarray] = []
    title = f"{clips[0].meta.get('game', '?')} ({clips[0].meta.get('split', '?')})"
    for index, name in [*enumerate(SCENE_CLASSES), (-1, "unlabelled")]:
        where = [(c, i) for c in clips for i in np.flatnonzero(c.labels == index)]
        header = np.full((HEADER_H, width, 3), 235, np.uint8)
        seconds = len(where) / clips[0].fps
        text = f"{title}  {name}: {seconds / 60:.1f} min"
        cv2.putText(header, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        rows_n = ROWS_PER_CLASS if index >= 0 else 1
        n = min(len(where), rows_n * PER_ROW)
        picks = [where[int(k)] for k in np.linspace(0, len(where) - 1, n)] if n else []
        tiles = []
        for clip, i in picks:
            t = i / clip.fps
            caption = (
                f"{clip.group.split('/')[-1]}",
                f"{int(t // 60)}:{t % 60:04.1f} {clip.meta['states'][i]}",
            )
            tiles.append(_tile(clip.frames[i], caption))
        band = np.full((max(1, -(-n // PER_ROW)) * tile_h, width, 3), 255, np.uint8)
        for k, tile in enumerate(tiles):
            r, c = divmod(k, PER_ROW)
            band[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
        bands.extend([header, band])
    return np.concatenate(bands, axis=0)


def write_sheets(root: Path) -> list[Path]:
    """Write ``root/sheets/<game>.png`` for every game with footage under ``root``."""
    by_game: dict[str, list[Path]] = defaultdict(list)
    for path in _footage_files(root):
        by_game[path.parent.name].append(path)
    written = []
    for game, paths in sorted(by_game.items()):
        sheet = game_sheet(paths)
        out = root / "sheets" / f"{game}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        # A 256-colour palette keeps a sheet to a few hundred kB; labels stay legible.
        Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            out, optimize=True
        )
        written.append(out)
        print(f"{out}: {out.stat().st_size / 1e3:.0f} kB")
    return written


def summarise(root: Path) -> str:
    """A markdown table: per game, split, minutes per class, resolutions, clips and MB."""
    rows: dict[str, dict[str, object]] = {}
    for path in _footage_files(root):
        labels = json.loads(path.read_text())
        game = path.parent.name
        row = rows.setdefault(
            game,
            {
                "split": path.parent.parent.name,
                "frames": defaultdict(int),
                "res": set(),
                "clips": 0,
                "bytes": 0,
            },
        )
        counts: dict[str, int] = row["frames"]  # type: ignore[assignment]
        for start, stop, _state, cls in labels["segments"]:
            counts[cls or "unlabelled"] += stop - start
        res: set[str] = row["res"]  # type: ignore[assignment]
        res.add("x".join(str(v) for v in labels["meta"]["resolution"]))
        row["clips"] = int(row["clips"]) + 1  # type: ignore[call-overload]
        size = path.stat().st_size + path.with_name(labels["video"]).stat().st_size
        row["bytes"] = int(row["bytes"]) + size  # type: ignore[call-overload]
    head = ["game", "split", *SCENE_CLASSES, "unlabelled", "total min", "clips", "MB", "sizes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals: dict[str, float] = defaultdict(float)
    for game, row in sorted(rows.items(), key=lambda kv: (str(kv[1]["split"]), kv[0])):
        counts = row["frames"]  # type: ignore[assignment]
        mins = {k: counts.get(k, 0) / 8 / 60 for k in [*SCENE_CLASSES, "unlabelled"]}
        total = sum(mins.values())
        for k, v in mins.items():
            totals[k] += v
        totals["total"] += total
        totals["bytes"] += int(row["bytes"])  # type: ignore[call-overload]
        cells = [
            game,
            str(row["split"]),
            *[f"{mins[k]:.1f}" for k in [*SCENE_CLASSES, "unlabelled"]],
            f"{total:.1f}",
            str(row["clips"]),
            f"{int(row['bytes']) / 1e6:.1f}",  # type: ignore[call-overload]
            ", ".join(sorted(row["res"], key=lambda r: int(r.split("x")[0]))),  # type: ignore[call-overload]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        "| **all** | | "
        + " | ".join(f"{totals[k]:.1f}" for k in [*SCENE_CLASSES, "unlabelled"])
        + f" | {totals['total']:.1f} | | {totals['bytes'] / 1e6:.1f} | |"
    )
    return "\n".join(lines)
