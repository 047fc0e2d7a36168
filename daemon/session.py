"""The session: the tasks, the links between the stages, and the ordered shutdown.

Everything is built by the composition root (:mod:`daemon.app`); a session runs it:

    source --frames--> analysis --Mood--> board --> planner (conductor + composer) --BarScore-->
    engine --clock--> outputs           commands --> hub --> router --> conductor / engine

Live and render share every stage; only the source pacing and the engine's server mode differ
(see :mod:`daemon.planner` for how a render stays reproducible). Back-pressure follows the
architecture's table: frames -> analysis keep-newest (live) or lossless (render); analysis ->
conductor latest-wins; composer -> engine never drops; the clock's events reach outputs best
effort and never block the audio thread.

Shutdown is ordered, whatever ended the run (the source, the duration, Ctrl-C, an error):
stop the sources -> drain the composer -> outputs of :attr:`~daemon.outputs.base.Stage.SOUND`
(all-notes-off) -> stop pyo -> :attr:`~daemon.outputs.base.Stage.RECORDING` (finalise
recordings) -> :attr:`~daemon.outputs.base.Stage.PEERS` (close viewers) ->
:attr:`~daemon.outputs.base.Stage.ANNOUNCE` (MQTT "offline"). One ``AsyncExitStack`` holds them
in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from daemon.analysis import AnalysisStage
from daemon.analysis.board import MoodBoard
from daemon.clock import delayed
from daemon.control.hub import ControlHub
from daemon.control.router import Router
from daemon.engine import BackendChoice, Engine
from daemon.errors import EngineError, MoodscoreError
from daemon.messages import BarScore, BarStarted, Mood
from daemon.outputs.base import Output, Stage
from daemon.outputs.delays import Delays
from daemon.planner import BarPlanner
from daemon.sources import FrameSource

log = logging.getLogger("moodscore.session")

LIVE_TAIL_S = 2.0  # seconds of music after a live file source ends


@dataclass
class SessionReport:
    """What a finished session did; the application turns it into timelines and messages."""

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
    # The scores handed on (a render: all of them; live: the last few, see BarPlanner.written).
    scores: list[BarScore] = field(default_factory=list)


class Session:
    """One run of the whole pipeline.

    Parameters
    ----------
    engine : the audio engine (the music clock); started and stopped by the session.
    planner : writes the bars ahead of the engine.
    board : the analysis -> conductor link.
    outputs : every consumer of the music, attached to the engine's clock, started before the
        music and closed in the shutdown order of their :class:`~daemon.outputs.base.Stage`.
    source : the opened frame source (closed by the session); None when the board already holds
        every mood (``compose``).
    analysis : the analysis stage reading ``source``; its window model is closed with it.
    hub : the control hub (live: source switches are routed to this session).
    router : applies commands (live); None in a render or a fixed piece.
    delays : each output's delay by its config section (None: each output's own ``delay_s``).
    open_source : opens a source spec for a ``source`` command (live).
    render : run as fast as possible and reproducibly (vs. live pacing).
    duration : stop after this much audio (seconds); a render defaults to the source's length.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        planner: BarPlanner,
        board: MoodBoard,
        outputs: Sequence[Output] = (),
        source: FrameSource | None = None,
        analysis: AnalysisStage | None = None,
        hub: ControlHub | None = None,
        router: Router | None = None,
        delays: Delays | None = None,
        open_source: Callable[[str], FrameSource] | None = None,
        render: bool,
        duration: float | None = None,
    ) -> None:
        self.engine = engine
        self.planner = planner
        self.board = board
        self.outputs = list(outputs)
        self._source = source
        self.analysis = analysis
        self.control = hub if hub is not None else ControlHub()
        self.router = router
        self.delays = delays
        self._open_source = open_source
        self._render = render
        self._duration = duration
        self._stop = asyncio.Event()
        self._interrupted = False
        self._source_offset = 0.0
        self._mood_offset = 0.0  # source time runs on across source switches
        self._group: asyncio.TaskGroup | None = None
        self._analysis_task: asyncio.Task[None] | None = None
        self._switching = False
        self._model_closed = False
        if source is not None:
            self.control.update(source=source.description)

    @property
    def source(self) -> FrameSource | None:
        """The source now read (a switch replaces it)."""
        return self._source

    def request_stop(self) -> None:
        """Ask for an ordered shutdown (Ctrl-C, SIGTERM, a test)."""
        self._interrupted = True
        self._stop.set()

    async def run(self) -> SessionReport:
        """Run until the source ends (render), the duration passes, the piece ends, or a stop is
        requested; everything is closed in order when this returns or raises."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await self._enter_outputs(stack)
                except BaseException:
                    await self._stop_sources()  # an output that cannot start: nothing plays
                    raise
                stack.push_async_callback(self._stop_sources)
                await self._run_tasks()
        except BaseException as exc:
            # A stage's MoodscoreError reaches the CLI as itself, not wrapped in a TaskGroup's
            # ExceptionGroup, so the user sees one clear line.
            cause = _first_moodscore_error(exc)
            if cause is not None:
                raise cause from None
            raise
        return SessionReport(
            source=self._source.description if self._source is not None else "fixed mood",
            backend=self.engine.backend,
            moods=list(self.board.history),
            bars=list(self.planner.bars),
            audio_seconds=self.engine.audio_time,
            dropped_frames=self.analysis.dropped if self.analysis is not None else 0,
            underruns=self.engine.underruns,
            source_offset=self._source_offset,
            interrupted=self._interrupted,
            scores=list(self.planner.written),
        )

    async def _enter_outputs(self, stack: contextlib.AsyncExitStack) -> None:
        """Attach every output to the clock and start it; its close goes on the stack so that
        the stack unwinds in the shutdown order, with pyo's stop after the SOUND outputs."""
        engine = self.engine
        stopped_engine = False
        for output in sorted(self.outputs, key=lambda output: output.stage, reverse=True):
            if output.stage is Stage.SOUND and not stopped_engine:
                stack.push_async_callback(asyncio.to_thread, engine.stop)
                stopped_engine = True
            if self.delays is not None and output.delay_section is not None:
                output.attach(self.delays.view(engine, output.delay_section, output.delay_s))
            else:
                output.attach(delayed(engine, output.delay_s))
            stack.push_async_callback(output.aclose)
            await output.start()
        if not stopped_engine:
            stack.push_async_callback(asyncio.to_thread, engine.stop)
        # Draining the composer comes before every output: no score after the sources stop.
        stack.callback(self.planner.scores.close)

    async def _run_tasks(self) -> None:
        loop = asyncio.get_running_loop()
        bar_events: asyncio.Queue[BarStarted] = asyncio.Queue()

        def on_bar(event: BarStarted) -> None:  # the audio thread: hand over to the loop
            loop.call_soon_threadsafe(bar_events.put_nowait, event)

        self.engine.add_bar_listener(on_bar)
        async with asyncio.TaskGroup() as group:
            self._group = group
            if self._source is not None:
                self._analysis_task = group.create_task(self._analyse(), name="analysis")
            await self.planner.prefill()
            self._source_offset = 0.0 if self._render else max(0.0, self.board.watermark)
            await asyncio.to_thread(self.engine.start)
            end_time = self._duration
            if end_time is None and self._render and self._source is not None:
                # Known up front for files and a timed demo: the engine may run up to a bar
                # ahead of the analysis, so it must not learn the end only at the end.
                end_time = self._source.duration
            if end_time is not None:
                self.engine.set_end_time(end_time)
            on_bar = self.router.show_bar if self.router is not None else _ignore
            workers = [group.create_task(self.planner.run(bar_events, on_bar), name="planner")]
            if self.router is not None:
                workers.append(group.create_task(self.router.run(), name="control"))
                if not self._render:
                    self.control.set_source_switcher(self)
            engine_done = group.create_task(self._wait_engine(), name="engine")
            stop = group.create_task(self._stop.wait(), name="stop")
            await asyncio.wait({engine_done, stop}, return_when=asyncio.FIRST_COMPLETED)
            self.control.set_source_switcher(None)
            if self._render and not self._interrupted and self._analysis_task is not None:
                # The engine can finish up to a bar ahead of the analysis: let the analysis read
                # the rest of the file, so the timeline covers all of it.
                await asyncio.wait({self._analysis_task})
            await self._stop_sources()
            for task in [*workers, engine_done, stop]:
                task.cancel()

    # -- stages ---------------------------------------------------------------------------

    async def _analyse(self) -> None:
        source = self._source
        assert source is not None and self.analysis is not None
        offset = self._mood_offset
        board = self.board
        try:
            await self.analysis.run(
                source,
                board.put if offset == 0 else lambda m: board.put(_shifted(m, offset)),
                lossless=self._render,
                emit_cue=board.put_cue
                if offset == 0
                else lambda c: board.put_cue(dataclasses.replace(c, time=c.time + offset)),
                reach=board.reach if offset == 0 else lambda t: board.reach(t + offset),
            )
        finally:
            # A source switch cancels this task and starts another: the analysis goes on.
            if not self._switching:
                self.board.finish()
        if self._duration is not None or (self._render and source.duration is not None):
            return
        if self._render:
            latest = self.board.latest
            self.engine.set_end_time(latest.t_end if latest else self.engine.audio_time)
        elif source.duration is not None:
            # A live file that ended (and does not loop): let the last notes ring, then stop.
            log.info("the source ended; stopping after the music rings out")
            self.engine.set_end_time(self.engine.audio_time + LIVE_TAIL_S)
        else:
            # An endless source (a camera) stopped: a stream's music must not stop with it.
            log.warning(
                "%s stopped; the music goes on in the last mood (Ctrl-C to stop, then check "
                "the camera and run again)",
                source.description,
            )

    async def _wait_engine(self) -> None:
        while not await asyncio.to_thread(self.engine.wait, 0.25):
            if self._stop.is_set():
                return
        if self.engine.error is not None:
            raise EngineError(
                f"the audio engine failed: {self.engine.error}"
            ) from self.engine.error

    async def _stop_sources(self) -> None:
        """Stop reading: cancel the analysis, close the source and the analysis model
        (idempotent: the normal end and the exit stack both call it)."""
        task, self._analysis_task = self._analysis_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        source = self._source
        if source is not None:
            with contextlib.suppress(Exception):
                await source.close()
        if self.analysis is not None and not self._model_closed:
            self._model_closed = True
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.analysis.close)

    # -- source switching (live) --------------------------------------------------------------

    async def switch_source(self, spec: str) -> str:
        """Open ``spec``, then replace the running source with it; the music plays on.

        Raises
        ------
        MoodscoreError
            ``spec`` cannot be opened (the old source keeps running), or the session is not
            running.
        """
        self._check_switchable()
        if self._open_source is None:
            raise MoodscoreError("this session cannot open sources")
        new = await asyncio.to_thread(self._open_source, spec)
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
        group, old_task, old = self._group, self._analysis_task, self._source
        assert group is not None and old_task is not None and old is not None
        self._switching = True
        try:
            old_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old_task
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


def _first_moodscore_error(exc: BaseException) -> MoodscoreError | None:
    if isinstance(exc, MoodscoreError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_moodscore_error(inner)
            if found is not None:
                return found
    return None


def _shifted(mood: Mood, offset: float) -> Mood:
    """A switched-in source's window moved on by ``offset`` seconds."""
    return dataclasses.replace(mood, t_start=mood.t_start + offset, t_end=mood.t_end + offset)


def _ignore(event: BarStarted) -> None:
    """No router to tell (a render)."""


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
