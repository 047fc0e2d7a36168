"""On-screen text in game mode: one frame a second measured in a worker, fused per window.

:class:`GameTextCues` is what :class:`~daemon.analysis.game.GameModel` hands a frame to when
one is due (:meth:`GameTextCues.due`, :meth:`GameTextCues.offer`: every :data:`EVERY_S` of
source time) and asks once per window (:meth:`GameTextCues.fuse`). The frame is shrunk to the
detector's size (about 6 ms at 1280x720) and read by the detector (:mod:`models.text_cues`,
about 90 ms on one core) in a worker thread of its own, off the window's 10 ms budget: the
analysis thread only hands the frame over.

In step (files: ``render``, ``analyze``) a window waits for the measurement of the latest frame
handed over, so a file reads the same every time; live (``run``) a window never waits: it uses
the latest measurement that is done, and a frame due while the worker is still busy is skipped.
A measurement older than :data:`MAX_AGE_S` no longer speaks.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable

import numpy as np

from models.text_cues import CUE_SPEAKS, TextCues, fuse, shrink_for_text

log = logging.getLogger("moodscore.analysis.game_text")

EVERY_S = 1.0  # source seconds between two frames measured
MAX_AGE_S = 2.5  # a measurement older than this (source time) is not used
MIN_WIDTH = 320  # narrower frames (a 96x72 footage clip) show no text the detector can find


class GameTextCues:
    """The text side of game mode (see the module docstring).

    Parameters
    ----------
    measure : the text cues of an RGB frame (already at the detector's size); run in the worker.
    in_step : wait for each measurement (files); False: live, never wait.
    every_s : source seconds between two frames measured.
    """

    def __init__(
        self,
        *,
        measure: Callable[[np.ndarray], TextCues],
        in_step: bool = True,
        every_s: float = EVERY_S,
    ) -> None:
        self._measure = measure
        self.in_step = in_step
        self._every = every_s
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="game-text")
        self._pending: tuple[float, concurrent.futures.Future[TextCues]] | None = None
        self._latest: tuple[float, TextCues] | None = None
        self._next_due: float | None = None
        self.measured = 0
        """Frames measured so far."""

    def reset(self) -> None:
        self._next_due = None
        self._latest = None
        self._pending = None

    def due(self, pts: float) -> bool:
        """Whether a frame at ``pts`` should be measured (then :meth:`offer` it)."""
        due = self._next_due
        if due is not None and pts < due - 2 * self._every:
            due = None  # time went backwards: a looped file or a new stream
        if due is not None and pts + 1e-6 < due:
            return False
        if not self.in_step and self._pending is not None and not self._pending[1].done():
            return False  # live and still busy with the last one: skip this frame
        self._next_due = pts + self._every
        return True

    def offer(self, image: np.ndarray, pts: float) -> None:
        """Hand a due frame [shape=(h, w, 3), RGB uint8] at ``pts`` to the worker (a frame
        narrower than :data:`MIN_WIDTH` is not measured)."""
        self._collect()
        if image.shape[1] < MIN_WIDTH:
            return
        # Shrunk in the worker too: frames are never written to once made (a source makes a new
        # array for each), so the worker may read this one while the next frames come.
        self._pending = (pts, self._worker.submit(self._shrink_and_measure, image))

    def _shrink_and_measure(self, image: np.ndarray) -> TextCues:
        return self._measure(np.ascontiguousarray(shrink_for_text(image)))

    def _collect(self) -> None:
        pending = self._pending
        if pending is None:
            return
        pts, future = pending
        if self.in_step or future.done():
            try:
                self._latest = (pts, future.result())
                self.measured += 1
            except Exception as exc:  # a failed measurement: the picture alone reads it
                log.error("on-screen text cue failed (%s); this frame is not read for text", exc)
            self._pending = None

    def reading(self, t_end: float) -> TextCues | None:
        """The latest measurement at ``t_end`` (waiting for it in step), None when too old."""
        self._collect()
        latest = self._latest
        if latest is None or t_end - latest[0] > MAX_AGE_S:
            return None
        return latest[1]

    def fuse(
        self, classes: tuple[str, ...] | list[str], probs: np.ndarray, t_end: float
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The window's probabilities moved by the text on screen, and the features to record:
        ``text.<cue>`` (area, lines, block) when the evidence reaches :data:`CUE_SPEAKS`,
        ``text_to.<class>`` for the evidence that moved a class."""
        cues = self.reading(t_end)
        if cues is None:
            return probs, {}
        fused, moved = fuse(classes, probs, cues)
        features: dict[str, float] = {}
        if cues.evidence >= CUE_SPEAKS or moved:
            features = {f"text.{k}": round(v, 4) for k, v in cues.as_dict().items()}
        features.update((f"text_to.{name}", round(v, 4)) for name, v in moved.items())
        return fused, features

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
