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
import dataclasses
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
from daemon.control.commands import (
    KEY_NAMES,
    Command,
    ControlHub,
    KeyCommand,
    LayersCommand,
    MoodCommand,
    MuteCommand,
    SceneCommand,
    TempoCommand,
    TransportCommand,
    layer_names,
)
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.errors import EngineError, MoodscoreError
from daemon.library.live import LibraryMode
from daemon.messages import BarScore, BarStarted, Beat, Frame, Mood, Plan
from daemon.outputs.recorder import WavRecorder
from daemon.scenes import get_scene, load_scene
from daemon.sources import FrameSource, open_source

log = logging.getLogger("moodscore.pipeline")

AudioListener = Callable[[np.ndarray, float], None]
BeatListener = Callable[[Beat], None]
FrameTap = Callable[[Frame], Awaitable[None]]

LIVE_TAIL_S = 2.0  # seconds of music after a live file source ends
# A live command re-plans the bars already composed but not yet started when their downbeat is
# at least this far ahead of the engine, so it lands on the very next bar line (composing a
# bar takes a few ms; the margin covers a busy machine and a tempo ramp's shorter bar).
REPLAN_MARGIN_S = 0.3


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

    Attributes
    ----------
    control : the :class:`~daemon.control.ControlHub` front ends (MQTT, the web panel) steer
        the session through; its commands apply on the grid (see :mod:`daemon.control`).
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
        if config.library.seed_track:
            from daemon.library.seed import load_seed_phrase, prime_composer

            phrase = load_seed_phrase(
                Path(config.library.seed_track).expanduser(), notes=config.library.seed_notes
            )
            prime_composer(self.composer, phrase)
        self.scores = ScoreQueue()
        # The library mode's bar clock follows each track's tempo: no ramps between tracks.
        engine_config = (
            dataclasses.replace(config.engine, tempo_ramp=0.0)
            if config.library.play
            else config.engine
        )
        self.engine = Engine(
            config=engine_config, backend=backend, scores=self.scores, realtime=not render
        )
        # The library mode (``--library``) plays indexed tracks instead of composed bars.
        self.library: LibraryMode | None = None
        if config.library.play:
            self.library = LibraryMode(
                config=config.library, engine=self.engine, gain=config.engine.master_gain
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
        # Live control: the hub front ends talk to, and the analysis task a source switch
        # replaces (with the source-time offset that keeps mood time running on).
        self.control = ControlHub(switch_source=None if render else self._switch_source)
        self.control.update(source=source.description)
        self._group: asyncio.TaskGroup | None = None
        self._analysis_task: asyncio.Task[None] | None = None
        self._switching = False
        self._mood_offset = 0.0
        self._hold_until: float | None = None
        # One composition at a time (the composer keeps state from bar to bar); the plans
        # composed so far by bar, and the bar now sounding, for re-planning on a command.
        self._compose_lock = asyncio.Lock()
        self._planned: dict[int, Plan] = {}
        self._sounding: BarStarted | None = None

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
                self._group = group
                analysis = group.create_task(self._analyse(), name="analysis")
                self._analysis_task = analysis
                await self._prefill()
                self._source_offset = 0.0 if self._render else max(0.0, self.board.watermark)
                await asyncio.to_thread(self.engine.start)
                end_time = self._duration
                if end_time is None and self._render:
                    # Known up front for files and a timed demo: the engine may run up to a
                    # bar ahead of the analysis, so it must not learn the end only at the end.
                    end_time = self._source.duration
                if end_time is not None:
                    self._set_end_time(end_time)
                workers = [
                    group.create_task(self._compose(bar_events), name="composer"),
                    group.create_task(self._fan_out_beats(beat_events), name="beats"),
                    group.create_task(self._apply_commands(), name="control"),
                ]
                if self._on_progress is not None:
                    workers.append(group.create_task(self._progress(), name="progress"))
                engine_done = group.create_task(self._wait_engine(), name="engine")
                stop = group.create_task(self._stop.wait(), name="stop")
                await asyncio.wait({engine_done, stop}, return_when=asyncio.FIRST_COMPLETED)
                self.control.set_source_switcher(None)
                await self._shutdown(self._analysis_task or analysis, workers, engine_done, stop)
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
        offset = self._mood_offset
        emit = self.board.put if offset == 0 else _shifted(self.board.put, offset)
        try:
            await self.analysis.run(source, emit, lossless=self._render)
        finally:
            # A source switch cancels this task and starts another: the analysis goes on.
            if not self._switching:
                self.board.finish()
        if self._duration is not None or (self._render and self._source.duration is not None):
            return
        if self._render:
            end = self.board.history[-1].t_end if self.board.history else self.engine.audio_time
            self._set_end_time(end)
        elif self._source.duration is not None:
            # A live file that ended (and does not loop): let the last notes ring, then stop.
            log.info("the source ended; stopping after the music rings out")
            self._set_end_time(self.engine.audio_time + LIVE_TAIL_S)
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
            self._sounding = event
            for old in [b for b in self._planned if b < event.bar]:
                del self._planned[old]
            self._show_bar(event)
            await self._compose_bar(event.bar + lookahead, decision_time=event.audio_time)

    async def _compose_bar(self, bar: int, *, decision_time: float) -> None:
        async with self._compose_lock:
            await self._compose_bar_locked(bar, decision_time=decision_time)

    async def _compose_bar_locked(self, bar: int, *, decision_time: float) -> None:
        if self._render:
            await self.board.wait_for(decision_time)
            moods = self.board.take(until=decision_time)
        else:
            moods = self.board.take(until=None)
        for mood in moods:
            self.conductor.observe(mood)
        if self._hold_until is not None and decision_time >= self._hold_until:
            self._hold_until = None
            self.conductor.release_mood()
            self._show_overrides()
        await self._plan_and_queue(bar)

    async def _plan_and_queue(self, bar: int) -> None:
        """Plan ``bar`` from the conductor's present view, write its score, hand it on."""
        plan = self.conductor.plan_for_bar(bar)
        score = await self._write_bar(plan)
        self._scores.append(score)
        self._planned[bar] = plan
        self.scores.put(score)

    async def _write_bar(self, plan: Plan) -> BarScore:
        """The bar's score: composed, or in the library mode the chosen track's (no notes)."""
        if self.library is not None:
            return await asyncio.to_thread(self.library.bar, plan)
        return await asyncio.to_thread(self.composer.compose_bar, plan)

    def _set_end_time(self, seconds: float) -> None:
        self.engine.set_end_time(seconds)
        if self.library is not None:
            self.library.end_at(seconds)

    async def _replan(self) -> None:
        """Re-plan and re-compose the bars composed but not started yet (live only), so a
        command lands on the next bar line rather than after the look-ahead."""
        if self._render:
            return
        async with self._compose_lock:
            sounding = self._sounding
            if sounding is None:
                return
            downbeat = sounding.audio_time + _bar_seconds(sounding.plan)
            for bar in range(sounding.bar + 1, max(self._planned, default=-1) + 1):
                if downbeat - self.engine.audio_time >= REPLAN_MARGIN_S:
                    await self._plan_and_queue(bar)
                downbeat += _bar_seconds(self._planned[bar])

    # -- live control -----------------------------------------------------------------------

    async def _apply_commands(self) -> None:
        """Take commands off the hub's queue as they come and hand each to the stage that
        applies it on the grid: the conductor (next planned bar) or the engine (mute on the
        next beat, transport at the next bar line)."""
        while True:
            first = await self.control.next_command()
            # Apply what has gathered in one go, then re-plan once: a burst of commands costs
            # one re-composition, not one each.
            replan = False
            for command in [first, *self.control.take_all()]:
                try:
                    replan |= self._apply(command)
                except Exception:
                    log.exception("control: applying %r failed; the music goes on", command)
            if replan:
                await self._replan()

    def _apply(self, command: Command) -> bool:
        """Apply one command; True when the plan of the coming bars changes."""
        conductor = self.conductor
        replan = True
        if isinstance(command, MoodCommand):
            if command.hold_s > 0:
                conductor.hold_mood(command.valence, command.arousal)
                self._hold_until = self.engine.audio_time + command.hold_s
            else:
                conductor.release_mood()
                conductor.nudge_mood(command.valence, command.arousal)
                self._hold_until = None
        elif isinstance(command, SceneCommand):
            conductor.force_scene(None if command.scene is None else get_scene(command.scene))
        elif isinstance(command, TempoCommand):
            conductor.fix_tempo(command.bpm)
        elif isinstance(command, LayersCommand):
            conductor.fix_layers(command.layers)
        elif isinstance(command, KeyCommand):
            conductor.fix_key(command.tonic_mode)
        elif isinstance(command, MuteCommand):
            self.engine.set_muted(command.layer, command.muted)
            self.control.update(muted=layer_names(self.engine.muted))
            replan = False
        elif isinstance(command, TransportCommand):
            self.engine.set_playing(command.action == "play")
            replan = False
        self._show_overrides()
        return replan

    def _show_overrides(self) -> None:
        overrides = self.conductor.overrides
        key = overrides.get("key")
        if key is not None:
            overrides["key"] = f"{KEY_NAMES[key['tonic']]} {key['mode']}"
        if "mood" in overrides and self._hold_until is not None:
            overrides["mood"]["until_audio_time"] = round(self._hold_until, 3)
        self.control.update(overrides=overrides)

    def _show_bar(self, event: BarStarted) -> None:
        plan = event.plan
        self.control.update(
            valence=round(plan.valence, 3),
            arousal=round(plan.arousal, 3),
            scene=plan.scene,
            bpm=plan.bpm,
            layers=plan.layers,
            key=KEY_NAMES[plan.tonic],
            mode=plan.mode,
            playing=self.engine.playing,
            muted=layer_names(self.engine.muted),
            bar=event.bar,
        )

    async def _switch_source(self, spec: str) -> str:
        """Open ``spec``, then replace the running source with it; the music plays on.

        Raises
        ------
        MoodscoreError
            ``spec`` cannot be opened (the old source keeps running), or the session is not
            running.
        """
        self._check_switchable()
        new = await asyncio.to_thread(open_source, spec, self._config.source, paced=True)
        return await self.use_source(new)

    def _check_switchable(self) -> None:
        running = self._group is not None and self._analysis_task is not None
        if self._render or not running or self._stop.is_set():
            raise MoodscoreError("the session is not running; switch sources while it plays")

    async def use_source(self, new: FrameSource) -> str:
        """Replace the running source with ``new``, an opened source (a browser's camera over
        WebRTC); the session closes it from now on. The music plays on. Returns its
        description.

        Raises
        ------
        MoodscoreError
            The session is not running (``new`` is closed).
        """
        try:
            self._check_switchable()
        except MoodscoreError:
            await new.close()
            raise
        group, old_task = self._group, self._analysis_task
        assert group is not None and old_task is not None
        self._switching = True
        try:
            old_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old_task
            old = self._source
            self._source = new
            # Source time starts again at 0 with the new source; moods keep counting on from
            # the last window, so smoothing and the board's watermark never go back in time.
            self._mood_offset = max(self.board.watermark, self._mood_offset, 0.0)
            self._analysis_task = group.create_task(self._analyse(), name="analysis")
        finally:
            self._switching = False
        with contextlib.suppress(Exception):
            await old.close()
        self.control.update(source=new.description)
        return new.description

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
        if self.library is not None:
            self.library.fade_out()
        await asyncio.to_thread(self.engine.stop)
        if self.library is not None:
            self.library.close()
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
        if self.library is not None:
            self.library.fade_out()
        await asyncio.to_thread(self.engine.stop)
        if self.library is not None:
            self.library.close()
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


def _bar_seconds(plan: Plan) -> float:
    return plan.beats_per_bar * 60.0 / plan.bpm


def _shifted(emit: Callable[[Mood], None], offset: float) -> Callable[[Mood], None]:
    """``emit`` for a switched-in source: its windows moved on by ``offset`` seconds."""

    def shifted(mood: Mood) -> None:
        emit(dataclasses.replace(mood, t_start=mood.t_start + offset, t_end=mood.t_end + offset))

    return shifted


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
