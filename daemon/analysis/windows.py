"""Frame windows -> Mood: the analysis stage, whatever the analysis mode.

Windows are fixed slices of source time, ``[k * window_s, (k + 1) * window_s)``; a window is
complete when a frame at or past its end arrives (or the stream ends). Each frame goes through
the mode's :meth:`~daemon.analysis.base.WindowModel.prepare` as it arrives; a completed window's
prepared frames go to :meth:`~daemon.analysis.base.WindowModel.infer` in one call (one batch for
a network). A window that received no frame (a stalled camera, frames dropped to keep up)
repeats the previous mood with confidence 0, so the conductor holds its course instead of
jumping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

from daemon.analysis.base import WindowModel
from daemon.analysis.cues import CueDetector
from daemon.analysis.features import FrameFeatureModel
from daemon.config import AnalysisConfig
from daemon.errors import EndOfStream
from daemon.messages import Cue, Frame, Mood
from daemon.sources.base import FrameSource

log = logging.getLogger("moodscore.analysis")


class WindowAnalyzer:
    """The synchronous core: frames in, one Mood per completed window out.

    Parameters
    ----------
    config : the ``[analysis]`` section (window length; the frame mode's settings).
    model : the analysis mode's window model (default: the picture-feature ``frame`` mode).
        The analyzer resets it: one analyzer, one stream.
    """

    def __init__(self, *, config: AnalysisConfig, model: WindowModel[Any] | None = None) -> None:
        self._config = config
        self._model: WindowModel[Any] = model or FrameFeatureModel(config=config)
        self._model.reset()
        self._window = 0  # index of the window being filled
        self._prepared: list[Any] = []
        self._last_mood: Mood | None = None

    @property
    def model(self) -> WindowModel[Any]:
        return self._model

    def push(self, frame: Frame) -> list[Mood]:
        """Add one frame; return the moods of the windows it completed (oldest first)."""
        window = max(0, math.floor(frame.pts / self._config.window_s + 1e-9))
        moods: list[Mood] = []
        while window > self._window:
            moods.append(self._close_window())
        self._prepared.append(self._model.prepare(frame))
        return moods

    def flush(self, end_time: float) -> list[Mood]:
        """At the end of the stream: the last, possibly partial, window (ending at ``end_time``)."""
        if not self._prepared:
            return []
        w = self._config.window_s
        start = self._window * w
        end = min(max(end_time, start + 1e-3), start + w)
        return [self._close_window(end=end)]

    def _close_window(self, end: float | None = None) -> Mood:
        w = self._config.window_s
        start = self._window * w
        end = (self._window + 1) * w if end is None else end
        self._window += 1
        if self._prepared:
            mood = self._model.infer(self._prepared, start, end)
        elif self._last_mood is not None:
            mood = _retimed(self._last_mood, start, end, confidence=0.0)
        else:
            mood = Mood(t_start=start, t_end=end, valence=0.0, arousal=0.0, confidence=0.0)
        self._prepared = []
        self._last_mood = mood
        return mood


def _retimed(mood: Mood, start: float, end: float, *, confidence: float | None = None) -> Mood:
    return dataclasses.replace(
        mood,
        t_start=start,
        t_end=end,
        confidence=mood.confidence if confidence is None else confidence,
    )


class AnalysisStage:
    """The async stage: pulls a source, analyses off the event loop, emits moods.

    Parameters
    ----------
    config : the ``[analysis]`` section.
    model : the analysis mode's window model (default: the ``frame`` mode); see
        :func:`daemon.analysis.make_window_model`. :meth:`close` closes it.
    cue_threshold : look for cues in every frame (:mod:`daemon.analysis.cues`) with this jump in
        intensity; None looks for none.

    Attributes
    ----------
    dropped : frames skipped to keep up (live only).
    frames : frames analysed.
    """

    def __init__(
        self,
        *,
        config: AnalysisConfig,
        model: WindowModel[Any] | None = None,
        cue_threshold: float | None = None,
    ) -> None:
        self._config = config
        self._model = model
        self._cue_threshold = cue_threshold
        self.dropped = 0
        self.frames = 0

    async def run(
        self,
        source: FrameSource,
        emit: Callable[[Mood], None],
        *,
        lossless: bool,
        emit_cue: Callable[[Cue], None] | None = None,
        reach: Callable[[float], None] | None = None,
    ) -> int:
        """Analyse ``source`` until it ends; return the number of frames analysed.

        ``lossless`` (render, analyze) analyses every frame in order; otherwise (live) only the
        newest frame is kept when analysis falls behind, and skipped frames are counted.
        ``emit_cue`` receives the cues found in the frames, ``reach`` the time of every frame
        once everything up to it was emitted.
        """
        analyzer = WindowAnalyzer(config=self._config, model=self._model)
        detector = (
            CueDetector(config=self._config, threshold=self._cue_threshold)
            if self._cue_threshold is not None
            else None
        )

        def push(frame: Frame) -> tuple[list[Mood], list[Cue]]:
            moods = analyzer.push(frame)
            return moods, detector.push(frame) if detector is not None else []

        last_pts = 0.0
        frame_period = 1.0 / source.fps if source.fps > 0 else 0.0
        frames = self._every_frame(source) if lossless else self._newest_frames(source)
        async for frame in frames:
            moods, cues = await asyncio.to_thread(push, frame)
            for mood in moods:
                emit(mood)
            if emit_cue is not None:
                for cue in cues:
                    emit_cue(cue)
            if reach is not None:
                reach(frame.pts)
            self.frames += 1
            last_pts = frame.pts
        end = last_pts + frame_period
        if source.duration is not None:
            end = min(end, source.duration) if self.frames else source.duration
        for mood in analyzer.flush(end):
            emit(mood)
        return self.frames

    def close(self) -> None:
        """Release the window model (mediapipe, torch); blocking, so call it off the loop."""
        if self._model is not None:
            self._model.close()

    async def _every_frame(self, source: FrameSource) -> AsyncIterator[Frame]:
        while True:
            try:
                yield await source.recv()
            except EndOfStream:
                return

    async def _newest_frames(self, source: FrameSource) -> AsyncIterator[Frame]:
        """Frames as analysis can take them: a reader task keeps only the newest one."""
        slot: list[Frame] = []
        ready = asyncio.Event()
        ended = False

        async def read() -> None:
            nonlocal ended
            try:
                while True:
                    frame = await source.recv()
                    if slot:
                        self.dropped += 1
                        slot[0] = frame
                    else:
                        slot.append(frame)
                    ready.set()
            except EndOfStream:
                pass
            finally:
                ended = True
                ready.set()

        reader = asyncio.create_task(read(), name="frame-reader")
        try:
            while True:
                # Look before waiting: the reader may have stored the last frame and ended
                # while the previous frame was being analysed.
                if slot:
                    yield slot.pop()
                elif ended:
                    return
                else:
                    await ready.wait()
                    ready.clear()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
