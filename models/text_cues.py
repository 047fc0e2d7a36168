"""On-screen text as a game-scene cue: where text lines are, how much of the screen they cover.

A menu is a column of short labels, a dialogue a block of lines in a box; play shows a few
numbers in a HUD. A model that learnt the look of some games cannot know the look of the next
one's menus, but text is text in every game. This module finds text lines in a frame with
PP-OCRv4's text *detector* (the first stage of PaddleOCR; no recognition: what the words say
does not matter, where they are does) and sums them up per frame:

=========  ===================================================================
cue        per frame (the detector's boxes, after the DB post-processing)
=========  ===================================================================
area       share of the frame covered by text boxes (their union), 0..1
prose      share of the frame covered by *long* text boxes (at least :data:`LONG_ASPECT`
           times as wide as tall on screen: sentences, menu entries), 0..1
lines      text boxes (lines, or words far apart) on screen
block      boxes in the largest block (boxes that touch once each is grown by its height)
=========  ===================================================================

A HUD is text too (Doom's status bar covers 5-9 % of the screen with numbers), but its words
are short: a number, a label. ``prose`` leaves them out, and only ``prose`` is evidence.

The weights are ``ch_PP-OCRv4_det_infer.onnx`` (Apache-2.0, 4.7 MB), copied unchanged from the
``rapidocr-onnxruntime==1.4.4`` wheel into ``models/weights/`` (that wheel would bring a second
OpenCV, and only its model file is needed: the pre- and post-processing are here), so they ship
in moodscore's own wheel; run with ``onnxruntime`` on one thread; nothing is downloaded.

Fusion (:func:`fuse`) is a likelihood ratio, like the audio cues' (:mod:`models.audio_cues`):
text evidence ``e = clip((area - AREA_GATE) / (1 - AREA_GATE)) * min(1, block / BLOCK_GATE)``
multiplies ``dialogue`` and ``menu`` by ``1 + TEXT_GAIN * e`` (the picture decides which of the
two; text says only "not play"); a class the picture gives less than :data:`VETO` is never
raised. The constants were set on the "dev" clips named in ``models/SCENE_CARD.md``.

Cost: about 25 ms for a 640x360 frame on one core, so the game mode runs it in a worker on one
frame a second (:mod:`daemon.analysis.game_text`), never on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DET_SIDE = 640  # the longer side of the frame the detector reads (a multiple of 32)
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
BIN_THRESH = 0.3  # text probability of a pixel that counts as text (PP-OCR's default)
BOX_THRESH = 0.5  # mean probability of a box that keeps it (rapidocr's default)
UNCLIP = 1.6  # PP-OCR's box growth: area * UNCLIP / perimeter on each side
MIN_HEIGHT = 4  # pixels of the detector's frame: smaller boxes are noise

LONG_ASPECT = 5.0  # a box this many times as wide as tall (on screen) is a line of words
TOP_STRIP = 0.15  # long lines centred above this share of the height are not prose
PROSE_GATE = 0.02  # long lines under 2 % of the screen (a HUD label, a chat line) say nothing
PROSE_FULL = 0.05  # long lines over 5 % of the screen are full evidence
TEXT_GAIN = 3.0
VETO = 0.1
CUE_SPEAKS = 0.5

TEXT_CUE_NAMES = ("area", "prose", "lines", "block")


class TextModelMissing(ImportError):
    """The detector's weights or ``onnxruntime`` are not installed."""


@dataclass(frozen=True, slots=True)
class TextCues:
    """One frame's text cues (see the module docstring)."""

    area: float
    prose: float
    lines: float
    block: float

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in TEXT_CUE_NAMES}

    @property
    def evidence(self) -> float:
        """How strongly the text says "dialogue or menu", 0..1."""
        return min(1.0, max(0.0, (self.prose - PROSE_GATE) / (PROSE_FULL - PROSE_GATE)))


NO_TEXT = TextCues(0.0, 0.0, 0.0, 0.0)


def model_path() -> Path:
    """Where the detector's ONNX file is (``models/weights/``, shipped in the wheel).

    Raises
    ------
    TextModelMissing
        The file is not there (a damaged install).
    """
    from models.shipped import weights_path

    path = weights_path(DET_MODEL)
    if not path.exists():
        raise TextModelMissing(f"{path} is missing: reinstall moodscore")
    return path


def det_size(width: int, height: int, side: int = DET_SIDE) -> tuple[int, int]:
    """(width, height) the detector reads a ``width`` x ``height`` frame at: the longer side
    ``side`` (never enlarged), both multiples of 32."""
    scale = min(1.0, side / max(width, height))
    w = max(32, round(width * scale / 32) * 32)
    h = max(32, round(height * scale / 32) * 32)
    return w, h


def shrink_for_text(image: np.ndarray, side: int = DET_SIDE) -> np.ndarray:
    """An RGB frame [shape=(h, w, 3), uint8] at the detector's size (INTER_AREA)."""
    h, w = image.shape[:2]
    size = det_size(w, h, side)
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class TextDetector:
    """PP-OCRv4's text detector on one thread: boxes and cues of a frame.

    Parameters
    ----------
    threads : onnxruntime's intra-op threads.

    Raises
    ------
    TextModelMissing
        The detector's file or onnxruntime is not installed.
    """

    def __init__(self, *, threads: int = 1) -> None:
        path = model_path()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise TextModelMissing(
                "the on-screen text cue needs onnxruntime: pip install onnxruntime"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name

    def probability(self, image: np.ndarray) -> np.ndarray:
        """The per-pixel text probability of ``image`` (RGB, already at the detector's size:
        :func:`shrink_for_text`) [shape=(h, w), float32]."""
        h, w = image.shape[:2]
        if h % 32 or w % 32:
            image = cv2.resize(image, det_size(w, h, max(w, h)), interpolation=cv2.INTER_AREA)
        bgr = image[:, :, ::-1].astype(np.float32)
        x = (bgr * (1.0 / 127.5) - 1.0).transpose(2, 0, 1)[None]
        out = self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]
        prob = out[0, 0]
        if prob.shape != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return prob.astype(np.float32)

    def boxes(self, image: np.ndarray) -> np.ndarray:
        """Text boxes of an RGB frame of any size, as (x0, y0, x1, y1) shares of its width and
        height [shape=(n, 4), float32]."""
        small = shrink_for_text(image)
        return boxes_from_probability(self.probability(small))

    def measure(self, image: np.ndarray) -> TextCues:
        """The text cues of an RGB frame [shape=(h, w, 3), uint8] of any size."""
        h, w = image.shape[:2]
        return cues_from_boxes(self.boxes(image), aspect=w / h)


def boxes_from_probability(prob: np.ndarray) -> np.ndarray:
    """DB post-processing, axis-aligned: text boxes from a probability map, as shares of it."""
    h, w = prob.shape
    bitmap = cv2.dilate((prob > BIN_THRESH).astype(np.uint8), np.ones((2, 2), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(bitmap, connectivity=4)
    out: list[tuple[float, float, float, float]] = []
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if min(bw, bh) < MIN_HEIGHT // 2 or area < 6:
            continue
        score = float(prob[y : y + bh, x : x + bw].mean())
        if score < BOX_THRESH * 0.6 and float(prob[y : y + bh, x : x + bw].max()) < 0.8:
            continue
        grow = bw * bh * UNCLIP / (2.0 * (bw + bh))
        x0, y0 = max(0.0, x - grow), max(0.0, y - grow)
        x1, y1 = min(float(w), x + bw + grow), min(float(h), y + bh + grow)
        if y1 - y0 < MIN_HEIGHT:
            continue
        out.append((x0 / w, y0 / h, x1 / w, y1 / h))
    return np.asarray(out, dtype=np.float32).reshape(-1, 4)


def cues_from_boxes(boxes: np.ndarray, *, aspect: float) -> TextCues:
    """The cues of text boxes [shape=(n, 4): x0, y0, x1, y1 as shares of the frame] on a frame
    ``aspect`` (width / height) wide."""
    if boxes.size == 0:
        return NO_TEXT
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    long = widths * aspect >= LONG_ASPECT * np.maximum(heights, 1e-6)
    # The top strip holds a shooter's console, kill feed, scores and timer, not a dialogue.
    long &= (boxes[:, 1] + boxes[:, 3]) / 2 >= TOP_STRIP
    return TextCues(
        area=union_area(boxes),
        prose=union_area(boxes[long]),
        lines=float(len(boxes)),
        block=float(largest_block(boxes, heights)),
    )


def union_area(boxes: np.ndarray) -> float:
    """Share of the frame the boxes cover, overlaps counted once (on a 160x90 grid)."""
    grid = np.zeros((90, 160), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        grid[int(y0 * 90) : max(int(y0 * 90) + 1, int(np.ceil(y1 * 90))),
             int(x0 * 160) : max(int(x0 * 160) + 1, int(np.ceil(x1 * 160)))] = 1  # fmt: skip
    return float(grid.mean())


def largest_block(boxes: np.ndarray, heights: np.ndarray) -> int:
    """Boxes in the largest group of boxes that touch once each is grown by its height."""
    n = len(boxes)
    grown = boxes.copy()
    grown[:, 0] -= heights
    grown[:, 2] += heights
    grown[:, 1] -= heights * 0.8
    grown[:, 3] += heights * 0.8
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            a, b = grown[i], grown[j]
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                parent[root(i)] = root(j)
    sizes: dict[int, int] = {}
    for i in range(n):
        r = root(i)
        sizes[r] = sizes.get(r, 0) + 1
    return max(sizes.values())


def fuse(
    classes: tuple[str, ...] | list[str], probs: np.ndarray, cues: TextCues
) -> tuple[np.ndarray, dict[str, float]]:
    """The picture model's probabilities moved by the text cues (see the module docstring).

    Returns the fused probabilities and the evidence that moved them, by class (only those
    moved).
    """
    evidence = cues.evidence
    if evidence <= 0:
        return probs, {}
    gains = np.ones(len(classes), dtype=np.float64)
    moved: dict[str, float] = {}
    for name in ("dialogue", "menu"):
        if name in classes:
            i = list(classes).index(name)
            if probs[i] >= VETO:
                gains[i] = 1.0 + TEXT_GAIN * evidence
                moved[name] = evidence
    if not moved:
        return probs, {}
    fused = probs * gains
    return (fused / fused.sum()).astype(probs.dtype), moved
