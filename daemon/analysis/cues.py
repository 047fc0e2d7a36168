"""Cues: sudden, confident changes in the picture, found frame by frame.

The mood is read per window (half a second) and smoothed, so the music follows a scene, not a
blink. A cut from a calm picture to a fight must be answered at once, though, the way a game's
own score answers on the next beat. The cue detector looks at every frame, whatever the analysis
mode, and reports a :class:`~daemon.messages.Cue` as soon as a change is confirmed:

- each frame is measured cheaply (the frame mode's picture features at 64 px wide, and a 16x9
  grey thumbnail);
- its **instant intensity** is the frame mode's arousal over the last ~0.15 s of frames, its
  **level** a slow average of that (time constant ``LEVEL_S``);
- a frame that departs from the reference (the thumbnail moves by more than ``CUT_DISTANCE``, or
  the instant intensity leaves the level by more than the threshold) opens a candidate; the
  candidate becomes a cue once the new picture has held for ``PERSIST_S``: ``rise`` or ``fall``
  by the intensity's jump, ``cut`` when the picture changed to a new, steady one but its
  intensity did not (a picture still on the move, a camera pan, is no cue); a candidate
  whose picture goes back before that was a **flash** (one frame of lightning, a muzzle flash):
  reported once as ``flash``, which may at most earn a stinger, never a change of tempo or layers;
- after a cue the level and the reference start again from the new picture, and no second cue
  comes within ``REFRACTORY_S``, so a flickering picture gives at most one cue a second; the
  first ``WARMUP_S`` of a stream only sets the level.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import cv2
import numpy as np

from daemon.analysis.features import Previous, frame_features, mood_from_features
from daemon.config import AnalysisConfig
from daemon.messages import Cue, Frame

DETECT_WIDTH = 64  # frames are measured at this width
THUMB_SIZE = (16, 9)  # grey thumbnail (width, height) the picture change is judged on
INSTANT_S = 0.15  # the instant intensity spans the frames of this long
LEVEL_S = 1.0  # time constant of the level the instant intensity is compared with
REFERENCE_S = 0.5  # time constant of the reference thumbnail
CUT_DISTANCE = 0.12  # mean absolute thumbnail change (0..1) that makes a candidate
PERSIST_S = 0.1  # a new picture must hold this long to be a cut, not a flash
REFRACTORY_S = 1.0  # at least this long between two cues
WARMUP_S = 1.0  # the level settles on the first picture this long before any cue


@dataclass(slots=True)
class _Candidate:
    time: float
    thumb: np.ndarray
    flash_seen: bool = False


class CueDetector:
    """Frames in, cues out (see the module docstring).

    Parameters
    ----------
    config : the ``[analysis]`` section (the frame features' mapping).
    threshold : the jump in instant intensity (arousal units) that is a cue by itself.
    """

    def __init__(self, *, config: AnalysisConfig, threshold: float) -> None:
        self._config = config
        self._threshold = threshold
        self._previous: Previous | None = None
        self._recent: collections.deque = collections.deque()
        self._level: float | None = None
        self._reference: np.ndarray | None = None
        self._last_time: float | None = None
        self._candidate: _Candidate | None = None
        self._last_cue = -float("inf")
        self._first: float | None = None

    def push(self, frame: Frame) -> list[Cue]:
        """Measure one frame; the cue it confirms, if any."""
        features, self._previous = frame_features(
            frame.image, frame.pts, self._previous, analysis_width=DETECT_WIDTH
        )
        self._recent.append(features)
        while self._recent and self._recent[0].pts < frame.pts - INSTANT_S:
            self._recent.popleft()
        instant = mood_from_features(list(self._recent), self._config, frame.pts, frame.pts).arousal
        thumb = (
            cv2.resize(
                cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY),
                THUMB_SIZE,
                interpolation=cv2.INTER_AREA,
            ).astype(np.float32)
            / 255.0
        )
        dt = 0.0 if self._last_time is None else max(frame.pts - self._last_time, 0.0)
        self._last_time = frame.pts
        if self._first is None:
            self._first = frame.pts
        if self._level is None or self._reference is None:
            self._level, self._reference = instant, thumb
            return []
        warming = frame.pts - self._first < WARMUP_S
        cues = [] if warming else self._judge(frame.pts, instant, thumb)
        if self._candidate is None:
            # Follow the picture slowly while nothing is happening.
            self._level += (1.0 - np.exp(-dt / LEVEL_S)) * (instant - self._level)
            self._reference += (1.0 - np.exp(-dt / REFERENCE_S)) * (thumb - self._reference)
        return cues

    def _judge(self, pts: float, instant: float, thumb: np.ndarray) -> list[Cue]:
        assert self._level is not None and self._reference is not None
        moved = float(np.abs(thumb - self._reference).mean())
        jump = instant - self._level
        candidate = self._candidate
        if candidate is None:
            if moved > CUT_DISTANCE or abs(jump) > self._threshold:
                self._candidate = _Candidate(time=pts, thumb=thumb)
            return []
        back = float(np.abs(thumb - self._reference).mean()) <= CUT_DISTANCE / 2
        if back and pts - candidate.time < PERSIST_S + 1e-9:
            # The picture came back: a flash, not a cut.
            self._candidate = None
            return self._cue(pts, "flash", min(1.0, moved + abs(jump)))
        if pts - candidate.time < PERSIST_S - 1e-9:
            return []
        self._candidate = None
        settled = float(np.abs(thumb - candidate.thumb).mean()) < CUT_DISTANCE
        if not settled and abs(jump) <= self._threshold:
            # A picture still on the move (a camera pan, a busy fight) is not a cut.
            self._reference = thumb.copy()
            return []
        kind = ("rise" if jump > 0 else "fall") if abs(jump) > self._threshold else "cut"
        cues = self._cue(pts, kind, min(1.0, max(abs(jump), moved * 2)))
        # Start again from the new picture.
        self._level, self._reference = instant, thumb.copy()
        return cues

    def _cue(self, pts: float, kind: str, strength: float) -> list[Cue]:
        if pts - self._last_cue < REFRACTORY_S:
            return []
        self._last_cue = pts
        return [Cue(time=pts, kind=kind, strength=round(strength, 3))]  # type: ignore[arg-type]
