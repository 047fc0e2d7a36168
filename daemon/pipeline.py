"""The session: sources -> analysis -> conductor -> composer -> engine -> outputs, in asyncio.

Live and render share every stage; only the source pacing and the engine's server mode differ:

- **render** reads every frame as fast as decoding allows and steps the engine as fast as the
  machine allows. The conductor decides bar ``b + lookahead`` when bar ``b`` starts, from exactly
  the mood windows that *ended* before that bar's audio time, so the same input, config and seed
  give the same notes however the threads interleave.
- **live** paces the source at its frame rate, keeps only the newest frame when analysis falls
  behind, and lets the latest mood win.

Back-pressure follows the architecture's table: frames -> analysis keep-newest (live) or lossless
(render); analysis -> conductor latest-wins; composer -> engine never drops (the composer waits
for the engine's bar clock and the engine, in a render, waits for the composer); beat and audio
listeners are best effort and never block the audio thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.analysis import AnalysisStage, make_window_model
from daemon.composer import Composer
from daemon.conductor import Conductor
from daemon.config import Config
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.errors import EngineError, MoodscoreError
from daemon.messages import BarScore, BarStarted, Beat, Frame, Mood
from daemon.outputs.recorder import WavRecorder
from daemon.scenes import load_scene
from daemon.sources import FrameSource

log = logging.getLogger("moodscore.pipeline")

AudioListener = Callable[[np.ndarray, float], None]
BeatListener = Callable[[Beat], None]
FrameTap = Callable[[Frame], Awaitable[None]]

LIVE_TAIL_S = 2.0  # seconds of music after a live file source ends


class MoodBoard:
    """The analysis -> conductor link.

    Keeps every window not yet handed to the conductor (a render needs them all, in order, for
    reproducible smoothing), the watermark (end time of the newest window) and whether the
    analysis has finished.
    """

    def __init__(self) -> None:
        self.history: list[Mood] = []
        self._pending: list[Mood] = []
        self._watermark = float("-inf")
        self._finished = False
        self._changed = asyncio.Event()

    @property
    def watermark(self) -> float:
        return self._watermark

    @property
    def finished(self) -> bool:
        return self._finished

    def put(self, mood: Mood) -> None:
        self.history.append(mood)
        self._pending.append(mood)
        self._watermark = max(self._watermark, mood.t_end)
        self._changed.set()

    def finish(self) -> None:
        self._finished = True
        self._changed.set()

    async def wait_for(self, t: float) -> None:
        """Until a window ending at or after ``t`` arrived, or the analysis finished."""
        while self._watermark < t and not self._finished:
            self._changed.clear()
            await self._changed.wait()

    def take(self, until: float | None) -> list[Mood]:
        """The unseen windows that ended by ``until`` (all of them when None), oldest first."""
        if until is None:
            taken, self._pending = self._pending, []
            return taken
        taken = [m for m in self._pending if m.t_end <= until + 1e-9]
        self._pending = [m for m in self._pending if m.t_end > until + 1e-9]
        return taken


@dataclass
class SessionReport:
    """What a finished session did; the CLI turns it into timelines and messages."""

    source: str
    backend: BackendChoice
    moods: list[Mood]
    bars: list[BarStarted]
    audio_seconds: float
    dropped_frames: int
    underruns: int
    # Source time at audio time 0: 0 in a render; in a live run the source started a little
    # before the engine, and timelines map windows onto the music with this offset.
    source_offset: float = 0.0
    interrupted: bool = False
    scores: list[BarScore] = field(default_factory=list)


class Session:
    """One run of the whole pipeline over one source.

    Parameters
    ----------
    config : the loaded configuration.
    source : an opened frame source (closed by the session).
    backend : the engine backend (``offline`` for renders).
    render : True to run as fast as possible and reproducibly, False for live pacing.
    duration : stop after this much audio (seconds); a render defaults to the source's length.
    record_path : write the session's audio to this WAV file, finalised on shutdown.
    audio_listeners : receive every audio block ``[shape=(n, 2)]`` with its audio time, on the
        engine thread; they must not block (hand the block to another thread).
    beat_listeners : receive every Beat on the event loop, best effort.
    frame_tap : awaited with every frame before analysis (e.g. the render's video writer).
    on_progress : called on the event loop about five times a second with the audio time.
    """

    def __init__(
        self,
        *,
        config: Config,
        source: FrameSource,
        backend: BackendChoice,
        render: bool,
        duration: float | None = None,
        record_path: Path | None = None,
        audio_listeners: tuple[AudioListener, ...] = (),
        beat_listeners: tuple[BeatListener, ...] = (),
        frame_tap: FrameTap | None = None,
        on_progress: Callable[[float], None] | None = None,
    ) -> None:
        self._config = config
        self._source = source
        self._render = render
        self._duration = duration
        self._frame_tap = frame_tap
        self._on_progress = on_progress
        self._beat_listeners = beat_listeners
        self.board = MoodBoard()
        self.conductor = Conductor(
            config=config.conductor, preset=load_scene(config.conductor.scene)
        )
        self.composer = Composer(config=config.composer)
        self.scores = ScoreQueue()
        self.engine = Engine(
            config=config.engine, backend=backend, scores=self.scores, realtime=not render
        )
        self.recorder: WavRecorder | None = None
        self._record_path = record_path
        if record_path is not None:
            self.engine.add_audio_listener(self._record)
        for listener in audio_listeners:
            self.engine.add_audio_listener(listener)
        # The analysis mode's model (frame features, faces, ...); loaded now, so missing model
        # files stop the session before any music starts.
        self._window_model = make_window_model(config)
        self.analysis = AnalysisStage(config=config.analysis, model=self._window_model)
        self._bars: list[BarStarted] = []
        self._scores: list[BarScore] = []
        self._stop = asyncio.Event()
        self._interrupted = False
        self._source_offset = 0.0

    def _record(self, block: np.ndarray, audio_time: float) -> None:
        # Opened on the first block: only then is the server's real sample rate known (JACK
        # imposes its own). One file open on the audio thread, once, at the very start.
        if self.recorder is None:
            assert self._record_path is not None
            self.recorder = WavRecorder(self._record_path, sample_rate=self.engine.sample_rate)
        self.recorder.write(block, audio_time)

    def request_stop(self) -> None:
        """Ask for an ordered shutdown (Ctrl-C, SIGTERM, a test)."""
        self._interrupted = True
        self._stop.set()

    async def run(self) -> SessionReport:
        """Run until the source ends (render), the duration passes, or a stop is requested."""
        loop = asyncio.get_running_loop()
        bar_events: asyncio.Queue[BarStarted] = asyncio.Queue()
        beat_events: asyncio.Queue[Beat] = asyncio.Queue(maxsize=64)

        def on_bar(event: BarStarted) -> None:
            loop.call_soon_threadsafe(bar_events.put_nowait, event)

        def on_beat(beat: Beat) -> None:
            loop.call_soon_threadsafe(_offer, beat_events, beat)

        self.engine.add_bar_listener(on_bar)
        self.engine.add_beat_listener(on_beat)

        try:
            async with asyncio.TaskGroup() as group:
                analysis = group.create_task(self._analyse(), name="analysis")
                await self._prefill()
                self._source_offset = 0.0 if self._render else max(0.0, self.board.watermark)
                await asyncio.to_thread(self.engine.start)
                end_time = self._duration
                if end_time is None and self._render:
                    # Known up front for files and a timed demo: the engine may run up to a
                    # bar ahead of the analysis, so it must not learn the end only at the end.
                    end_time = self._source.duration
                if end_time is not None:
                    self.engine.set_end_time(end_time)
                workers = [
                    group.create_task(self._compose(bar_events), name="composer"),
                    group.create_task(self._fan_out_beats(beat_events), name="beats"),
                ]
                if self._on_progress is not None:
                    workers.append(group.create_task(self._progress(), name="progress"))
                engine_done = group.create_task(self._wait_engine(), name="engine")
                stop = group.create_task(self._stop.wait(), name="stop")
                await asyncio.wait({engine_done, stop}, return_when=asyncio.FIRST_COMPLETED)
                await self._shutdown(analysis, workers, engine_done, stop)
        except BaseException as exc:
            await self._emergency_stop()
            # A stage's MoodscoreError reaches the CLI as itself, not wrapped in a TaskGroup's
            # ExceptionGroup, so the user sees one clear line.
            cause = _first_moodscore_error(exc)
            if cause is not None:
                raise cause from None
            raise
        return SessionReport(
            source=self._source.description,
            backend=self.engine.backend,
            moods=list(self.board.history),
            bars=list(self._bars),
            audio_seconds=self.engine.audio_time,
            dropped_frames=self.analysis.dropped,
            underruns=self.engine.underruns,
            source_offset=self._source_offset,
            interrupted=self._interrupted,
            scores=list(self._scores),
        )

    # -- stages ---------------------------------------------------------------------------

    async def _analyse(self) -> None:
        source: FrameSource = self._source
        if self._frame_tap is not None:
            source = _TappedSource(source, self._frame_tap)
        try:
            await self.analysis.run(source, self.board.put, lossless=self._render)
        finally:
            self.board.finish()
        if self._duration is not None or (self._render and self._source.duration is not None):
            return
        if self._render:
            end = self.board.history[-1].t_end if self.board.history else self.engine.audio_time
            self.engine.set_end_time(end)
        elif self._source.duration is not None:
            # A live file that ended (and does not loop): let the last notes ring, then stop.
            log.info("the source ended; stopping after the music rings out")
            self.engine.set_end_time(self.engine.audio_time + LIVE_TAIL_S)
        else:
            # An endless source (a camera) stopped: a stream's music must not stop with it.
            log.warning(
                "%s stopped; the music goes on in the last mood (Ctrl-C to stop, then check "
                "the camera and run again)",
                self._source.description,
            )

    async def _prefill(self) -> None:
        """Before audio starts, compose the bars ahead of the first lookahead, in the first mood."""
        first_window = self._config.analysis.window_s
        if self._render:
            await self.board.wait_for(first_window)
        else:
            # Live: give the camera a moment so the music starts in the right mood, not neutral.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.board.wait_for(first_window), timeout=2.0)
        # Bar b + lookahead is composed when bar b starts (see _compose), so bars before the
        # lookahead must exist before the first sample plays.
        for bar in range(self._config.composer.lookahead_bars):
            await self._compose_bar(bar, decision_time=first_window)

    async def _compose(self, bar_events: asyncio.Queue[BarStarted]) -> None:
        lookahead = self._config.composer.lookahead_bars
        while True:
            event = await bar_events.get()
            self._bars.append(event)
            await self._compose_bar(event.bar + lookahead, decision_time=event.audio_time)

    async def _compose_bar(self, bar: int, *, decision_time: float) -> None:
        if self._render:
            await self.board.wait_for(decision_time)
            moods = self.board.take(until=decision_time)
        else:
            moods = self.board.take(until=None)
        for mood in moods:
            self.conductor.observe(mood)
        plan = self.conductor.plan_for_bar(bar)
        score = await asyncio.to_thread(self.composer.compose_bar, plan)
        self._scores.append(score)
        self.scores.put(score)

    async def _fan_out_beats(self, beat_events: asyncio.Queue[Beat]) -> None:
        while True:
            beat = await beat_events.get()
            for listener in self._beat_listeners:
                try:
                    listener(beat)
                except Exception:
                    log.exception("beat listener %r failed; it keeps being called", listener)

    async def _wait_engine(self) -> None:
        while not await asyncio.to_thread(self.engine.wait, 0.25):
            if self._stop.is_set():
                return
        if self.engine.error is not None:
            raise EngineError(
                f"the audio engine failed: {self.engine.error}"
            ) from self.engine.error

    async def _progress(self) -> None:
        assert self._on_progress is not None
        while True:
            self._on_progress(self.engine.audio_time)
            await asyncio.sleep(0.2)

    # -- shutdown -------------------------------------------------------------------------

    async def _shutdown(
        self,
        analysis: asyncio.Task[None],
        workers: list[asyncio.Task[None]],
        engine_done: asyncio.Task[None],
        stop: asyncio.Task[bool],
    ) -> None:
        """Ordered: sources, composer, engine (fade and stop pyo), recording, other workers."""
        if self._render and not self._interrupted:
            # The engine can finish up to a bar ahead of the analysis: let the analysis read
            # the rest of the file, so the timeline covers all of it.
            await asyncio.wait({analysis})
        analysis.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await analysis
        await self._source.close()
        await asyncio.to_thread(self._window_model.close)
        self.scores.close()
        await asyncio.to_thread(self.engine.stop)
        self._close_recorder()
        for task in [*workers, engine_done, stop]:
            task.cancel()
        if self._on_progress is not None:
            self._on_progress(self.engine.audio_time)

    def _close_recorder(self) -> None:
        if self.recorder is not None:
            try:
                self.recorder.close()
            except OSError as exc:  # e.g. the disk filled up: the file holds what was written
                raise MoodscoreError(str(exc)) from exc

    async def _emergency_stop(self) -> None:
        self.scores.close()
        await asyncio.to_thread(self.engine.stop)
        self._close_recorder()
        with contextlib.suppress(Exception):
            await self._source.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._window_model.close)


class _TappedSource(FrameSource):
    """A source that hands every frame to an async tap before passing it on."""

    def __init__(self, inner: FrameSource, tap: FrameTap) -> None:
        self._inner = inner
        self._tap = tap
        self.description = inner.description
        self.fps = inner.fps
        self.size = inner.size
        self.duration = inner.duration

    async def recv(self) -> Frame:
        frame = await self._inner.recv()
        await self._tap(frame)
        return frame

    async def close(self) -> None:
        await self._inner.close()


def _first_moodscore_error(exc: BaseException) -> MoodscoreError | None:
    if isinstance(exc, MoodscoreError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_moodscore_error(inner)
            if found is not None:
                return found
    return None


def _offer(queue: asyncio.Queue[Beat], item: Beat) -> None:
    """Best effort: a slow beat consumer loses old beats, never blocks the engine."""
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(item)


def install_signal_handlers(session: Session) -> Callable[[], None]:
    """Ctrl-C / SIGTERM request an ordered shutdown; a second Ctrl-C is left to Python."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def handle(sig: signal.Signals) -> None:
        log.info("%s received: stopping (finalising recordings)", sig.name)
        session.request_stop()
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handle, sig)
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return remove
