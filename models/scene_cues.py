"""Game-agnostic picture cues, per frame, that the scene model reads beside its CNN embedding.

The CNN sees one 80x60 frame and its motion against the frame before; the GRU sees one second
of them. What tells a menu or a dialogue from play in a game the model never saw is often
*time*: the picture has not moved for seconds, a box of straight edges has stayed put, or the
camera jerks (a hit), the screen flashes (an explosion, a muzzle). These cues measure that on
the same 96x72 frames the model reads (stored footage and live frames alike, so training and
live use see the same numbers), causally, at the model's 8 frames per second:

=============  ======================================================================  =========
cue            per frame                                                               range
=============  ======================================================================  =========
motion         mean absolute grey difference from the frame 1/8 s earlier, x 4         0..1
still          share of pixels that did not change (difference < 4/255: H.264 noise)   0..1
still_long     ``still`` averaged over the last seconds (exponential, 3 s)             0..1
static_share   share of pixels unchanged for the whole last second (a box, a HUD)      0..1
pan            size of the global shift between frames (phase correlation), / 8 px     0..1
shake          change of that shift from the previous frame's (jerk), decaying 0.5 s   0..1
flash          rise of mean brightness (x 5), decaying over 0.5 s                       0..1
hlines         rows crossed by a straight horizontal edge over half the width, / 6     0..1
vlines         columns crossed by a straight vertical edge over half the height, / 6   0..1
detail         fine texture: mean absolute difference from a 3x3 blur, x 10            0..1
=============  ======================================================================  =========

Straight long edges are what panels, text boxes, menu lists and inventory grids are made of;
fine texture is where small text sits once shrunk. Every cue costs a few tens of microseconds
on a 96x72 frame (the phase correlation's two small FFTs are the most of it).

numpy and OpenCV; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from models.scene_data import MODEL_FPS

CUE_NAMES: tuple[str, ...] = (
    "motion",
    "still",
    "still_long",
    "static_share",
    "pan",
    "shake",
    "flash",
    "hlines",
    "vlines",
    "detail",
)
# Cues measured together, for the ablation in the model card (each group left out in turn).
CUE_GROUPS: dict[str, tuple[str, ...]] = {
    "stillness": ("still", "still_long", "static_share"),
    "motion": ("motion", "pan"),
    "shake": ("shake",),
    "flash": ("flash",),
    "ui_lines": ("hlines", "vlines", "detail"),
}

STILL_LEVEL = 4.0 / 255.0  # below this a pixel "did not change" (H.264 noise at CRF 26 is 1-3)
EDGE_LEVEL = 0.08  # a grey step this large is an edge
LONG_S = 3.0
DECAY_S = 0.5


def _grey(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.float32) * (1.0 / 255.0)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _hann(height: int, width: int) -> np.ndarray:
    return cv2.createHanningWindow((width, height), cv2.CV_32F)


class CueTracker:
    """Streaming cues of one video stream (see the module docstring).

    Parameters
    ----------
    fps : the frame rate frames are pushed at (the model's 8 per second).
    """

    def __init__(self, *, fps: float = MODEL_FPS) -> None:
        self._long = 1.0 - math.exp(-1.0 / (fps * LONG_S))
        self._decay = math.exp(-1.0 / (fps * DECAY_S))
        self._frames_1s = round(fps)
        self._window: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the stream."""
        self._grey: np.ndarray | None = None
        self._still_count: np.ndarray | None = None
        self._still_long = 0.0
        self._shift = np.zeros(2, dtype=np.float32)
        self._shake = 0.0
        self._flash = 0.0

    def push(self, frame: np.ndarray) -> np.ndarray:
        """The cues of the next frame.

        frame : np.ndarray [shape=(h, w, 3), dtype=uint8], RGB (96x72 as the model reads it).
        Returns np.ndarray [shape=(len(CUE_NAMES),), dtype=float32].
        """
        grey = _grey(frame)
        if self._window is None or self._window.shape != grey.shape:
            self._window = _hann(*grey.shape)
            self._grey = None
        previous = self._grey
        if previous is None or previous.shape != grey.shape:
            diff = np.zeros_like(grey)
            still = 0.0
            count = np.zeros(grey.shape, dtype=np.int16)
            shift = np.zeros(2, dtype=np.float32)
            flash = 0.0
        else:
            diff = np.abs(grey - previous)
            unchanged = diff < STILL_LEVEL
            still = float(unchanged.mean())
            assert self._still_count is not None
            count = np.where(unchanged, np.minimum(self._still_count + 1, 1000), 0).astype(np.int16)
            shift = _phase_shift(previous, grey, self._window)
            flash = max(0.0, float(grey.mean() - previous.mean()) * 5.0)
        jerk = float(np.abs(shift - self._shift).sum()) / 8.0 if previous is not None else 0.0
        self._shake = max(min(1.0, jerk), self._shake * self._decay)
        self._flash = max(min(1.0, flash), self._flash * self._decay)
        self._still_long += self._long * (still - self._still_long)
        self._grey, self._still_count, self._shift = grey, count, shift
        edges_h = np.abs(np.diff(grey, axis=0)) > EDGE_LEVEL
        edges_v = np.abs(np.diff(grey, axis=1)) > EDGE_LEVEL
        hlines = float((edges_h.mean(axis=1) > 0.5).sum()) / 6.0
        vlines = float((edges_v.mean(axis=0) > 0.5).sum()) / 6.0
        blur = cv2.blur(grey, (3, 3), borderType=cv2.BORDER_REPLICATE)
        detail = float(np.abs(grey - blur).mean()) * 10.0
        values = (
            min(1.0, float(diff.mean()) * 4.0),
            still,
            self._still_long,
            float((count >= self._frames_1s).mean()),
            min(1.0, float(np.hypot(*shift)) / 8.0),
            self._shake,
            self._flash,
            min(1.0, hlines),
            min(1.0, vlines),
            min(1.0, detail),
        )
        return np.asarray(values, dtype=np.float32)


def _phase_shift(before: np.ndarray, after: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The global (dy, dx) translation from ``before`` to ``after`` (grey frames), in pixels;
    zero when the correlation has no clear peak (no global motion to speak of)."""
    (dx, dy), response = cv2.phaseCorrelate(before, after, window)
    if response < 0.1:
        return np.zeros(2, dtype=np.float32)
    return np.asarray((dy, dx), dtype=np.float32)


def clip_cues(frames: np.ndarray | Sequence[np.ndarray], *, fps: float = MODEL_FPS) -> np.ndarray:
    """Cues of every frame of a clip, as a stream would see them.

    frames : [shape=(n, h, w, 3), dtype=uint8] RGB at ``fps``.
    Returns np.ndarray [shape=(n, len(CUE_NAMES)), dtype=float32].
    """
    tracker = CueTracker(fps=fps)
    rows = [tracker.push(frame) for frame in frames]
    if not rows:
        return np.zeros((0, len(CUE_NAMES)), dtype=np.float32)
    return np.stack(rows)


def cue_columns(names: Sequence[str]) -> list[int]:
    """Indices into :data:`CUE_NAMES` of ``names`` (a model's configured cues)."""
    return [CUE_NAMES.index(name) for name in names]
