"""The planner: conductor and composer bar by bar, ahead of the engine, and the reactions inside.

Bars. When bar ``b`` starts, the planner has the conductor decide the plan of bar
``b + lookahead`` and has it written (by the composer, or in the library mode by the track
chooser) off the event loop, then hands the score to the engine's
:class:`~daemon.engine.ScoreQueue`. Model latency never reaches the speakers.

Items. Every mood window goes to the conductor as it comes, every cue (from the frames, or from
the conductor's own reading of a window) to the :class:`~daemon.reactions.Reactor`, which may
change the bars already written (a transition rule's exit: the next 16th, beat or bar line, or N
bar lines on) and add stingers. The planner knows where every beat falls: it lays out each bar
it writes exactly as the engine will (:class:`~daemon.clock.BarGrid`), and live takes the
engine's own grid when the bar starts.

- **render**: time is the source's; the planner walks it in order. Before the decision for bar
  ``b + lookahead`` (at the start of bar ``b``) it takes exactly the items up to that time,
  answers each at its own time, and then *clears* that time for the engine, which waits at every
  bar line and beat until it is cleared. So a render answers a cue where a live run would, and
  the same input, config and seed give the same notes however the threads interleave;
- **live**: items are taken as they come and answered at the engine's present (plus a margin for
  writing); bars are written when the engine starts the bar before; a command re-plans the bars
  written but not started whose downbeat is at least :data:`REPLAN_MARGIN_S` away.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

from daemon.analysis.board import MoodBoard
from daemon.clock import BarGrid, MusicClock
from daemon.conductor import Conductor
from daemon.engine import ScoreQueue
from daemon.messages import BarPatch, BarScore, BarStarted, Cue, Mood, Plan


class CueAnswer(Protocol):
    """What answers a cue between bar lines: :class:`~daemon.reactions.Reactor` (which sits
    above the planner: it writes through it, so the planner only knows this much of it)."""

    async def answer(self, cue: Cue, *, confirmed: bool, now: float | None) -> None: ...


# A command re-plans a bar already composed when its downbeat is at least this far ahead of the
# engine (composing a bar takes a few ms; the margin covers a busy machine and a tempo ramp's
# shorter bar).
REPLAN_MARGIN_S = 0.3
# Live, a reaction starts no earlier than this after the engine's present (which is already
# engine.live_ahead_s ahead of what is heard): a note the audio thread gets a block late is
# played at once.
REACT_MARGIN_S = 0.01
# Live, the scores handed on are kept for this many bars only: a render's report holds them all
# (its tests compare them), a daemon left running all day must not (each bar holds its notes).
LIVE_SCORES_KEPT = 64

BarWriter = Callable[[Plan], BarScore]


class BarPlanner:
    """Plans and writes the bars ahead of the engine, and changes them when a cue calls for it.

    Parameters
    ----------
    conductor : decides each bar's plan.
    write : writes a bar's score from its plan (the composer's ``compose_bar``, or the library
        mode's ``bar``); blocking, so it runs in a worker thread.
    board : the analysis -> conductor link.
    scores : the engine's score queue.
    lookahead : bars composed ahead of the one sounding.
    render : walk source time in order and clear it for the engine (reproducible renders).
    first_window : the end time of the first analysis window (the first plans wait for it).
    clock : the engine (its present, and its grids as bars start).
    sample_rate, ramp : the engine's clock rate and tempo-ramp fraction (to lay bars out as it
        will).
    last_bar : the last bar to write (a fixed-length piece); the score queue closes after it.
    """

    def __init__(
        self,
        *,
        conductor: Conductor,
        write: BarWriter,
        board: MoodBoard,
        scores: ScoreQueue,
        lookahead: int,
        render: bool,
        first_window: float,
        clock: MusicClock,
        sample_rate: int,
        ramp: float,
        last_bar: int | None = None,
    ) -> None:
        self.conductor = conductor
        self._write = write
        self._board = board
        self.scores = scores
        self._lookahead = lookahead
        self._render = render
        self._first_window = first_window
        self._clock = clock
        self._sample_rate = sample_rate
        self._ramp = ramp
        self._last_bar = last_bar
        self.reactor: CueAnswer | None = None
        # One composition at a time (the composer keeps state from bar to bar).
        self.lock = asyncio.Lock()
        self._scores: dict[int, BarScore] = {}  # the latest score written for each bar
        self._grids: dict[int, BarGrid] = {}  # where each written bar's beats fall
        self._started: dict[int, asyncio.Event] = {}
        self.sounding: BarStarted | None = None
        self.bars: list[BarStarted] = []  # every bar as it started (the timeline's)
        # Every score handed on, re-plans included (live: the last LIVE_SCORES_KEPT).
        self.written: deque[BarScore] = deque(maxlen=None if render else LIVE_SCORES_KEPT)

    # -- what the reactions ask --------------------------------------------------------------

    @property
    def render(self) -> bool:
        return self._render

    def present(self) -> float:
        """Live: the earliest audio time a change can still land on."""
        return self._clock.audio_time + REACT_MARGIN_S

    def grid(self, bar: int) -> BarGrid | None:
        """Where bar ``bar``'s beats fall, if it has been written."""
        return self._grids.get(bar)

    def score(self, bar: int) -> BarScore | None:
        """The latest score written for ``bar``."""
        return self._scores.get(bar)

    def bar_at(self, t: float) -> int | None:
        """The written bar sounding at audio time ``t`` (None beyond what is written)."""
        for bar in sorted(self._grids):
            grid = self._grids[bar]
            if grid.start / grid.sample_rate <= t + 1e-9 < grid.end / grid.sample_rate:
                return bar
        return None

    def last_written(self) -> int:
        return max(self._scores, default=-1)

    def started(self, bar: int) -> bool:
        return self.sounding is not None and self.sounding.bar >= bar

    async def write_bar(self, bar: int, *, at: float | None, ramp: float | None = None) -> BarScore:
        """Plan ``bar`` from the conductor's present view and hand its score on (``ramp``: the
        fraction of the bar a tempo change ramps over, when not the engine's); the caller
        holds :attr:`lock`."""
        plan = self.conductor.plan_for_bar(bar, at=at)
        if ramp is not None:
            plan = dataclasses.replace(plan, ramp=ramp)
        score = await asyncio.to_thread(self._write, plan)
        self._hand_on(score)
        return score

    async def write_plan(self, plan: Plan) -> BarScore:
        """Write a score for ``plan`` without handing it on (a patch's source); caller holds
        :attr:`lock`."""
        return await asyncio.to_thread(self._write, plan)

    def patch(self, patch: BarPatch) -> None:
        """Hand a patch to the engine (a replacing one also becomes the bar's latest plan)."""
        if patch.replace:
            old = self._scores.get(patch.bar)
            if old is not None:
                self._scores[patch.bar] = BarScore(
                    bar=patch.bar, plan=patch.plan, chord=old.chord, notes=old.notes,
                    section=old.section,
                )  # fmt: skip
        self.scores.patch(patch)

    def _hand_on(self, score: BarScore) -> None:
        self._scores[score.bar] = score
        self.written.append(score)
        self._grids[score.bar] = self._lay_out(score)
        self.scores.put(score)
        if self._last_bar is not None and score.bar >= self._last_bar:
            # A piece of fixed length: after its last bar the engine lets the notes ring.
            self.scores.close()

    def _lay_out(self, score: BarScore) -> BarGrid:
        """The bar's grid as the engine will build it (it follows the bar before)."""
        before = self._grids.get(score.bar - 1)
        return BarGrid.build(
            bar=score.bar,
            start=0 if before is None else before.end,
            sample_rate=self._sample_rate if before is None else before.sample_rate,
            plan=score.plan,
            first_beat=0 if before is None else before.first_beat + before.beats,
            bpm_from=None if before is None else before.bpm,
            ramp=self._ramp if score.plan.ramp is None else score.plan.ramp,
            section=score.section,
        )

    def on_grid(self, grid: BarGrid) -> None:
        """The engine's own grid of a bar as it starts (its audio thread): it replaces the one
        laid out here (JACK's rate, a bar replayed after an underrun)."""
        if grid.patched_from is None:
            self._grids[grid.bar] = grid

    # -- bars ----------------------------------------------------------------------------------

    async def prefill(self, *, live_wait_s: float = 2.0) -> None:
        """Before the audio starts: wait for the first mood window (live: at most
        ``live_wait_s``, so the music starts in the right mood rather than neutral), take what
        the analysis has seen, then write the bars before the first look-ahead."""
        if self._render:
            await self._board.wait_for(self._first_window)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._board.wait_for(self._first_window), live_wait_s)
        async with self.lock:
            until = self._first_window if self._render else None
            for item in self._board.take(until=until):
                if isinstance(item, Mood):
                    self.conductor.observe(item)  # no reaction before the music starts
            # Bar b + lookahead is written when bar b starts, so the bars before the
            # look-ahead must exist before the first sample plays.
            for bar in range(self._lookahead):
                if self._last_bar is None or bar <= self._last_bar:
                    await self.write_bar(bar, at=self._first_window)

    async def run(
        self, bar_events: asyncio.Queue[BarStarted], on_bar: Callable[[BarStarted], None]
    ) -> None:
        """The planner's task: bars as the engine starts them (``on_bar`` hears each), items as
        the analysis finds them."""
        loop = asyncio.get_running_loop()

        def hand_over(grid: BarGrid) -> None:  # the audio thread
            loop.call_soon_threadsafe(self.on_grid, grid)

        self._clock.add_grid_listener(hand_over)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow(bar_events, on_bar), name="bars")
            if self._render:
                group.create_task(self._walk(), name="render planner")
            else:
                group.create_task(self._react_live(), name="reactions")

    async def _follow(
        self, bar_events: asyncio.Queue[BarStarted], on_bar: Callable[[BarStarted], None]
    ) -> None:
        while True:
            event = self._sharing_plan(await bar_events.get())
            self.bars.append(event)
            self.sounding = event
            on_bar(event)
            self._started.setdefault(event.bar, asyncio.Event()).set()
            for old in [b for b in self._started if b < event.bar - 4]:
                del self._started[old]
            for old in [b for b in self._scores if b < event.bar - 4]:
                del self._scores[old]
                self._grids.pop(old, None)
            if not self._render:
                async with self.lock:
                    await self.write_bar(event.bar + self._lookahead, at=event.audio_time)

    def _sharing_plan(self, event: BarStarted) -> BarStarted:
        """``event`` holding the plan (or at least the preset) of the score written for its bar
        when they are equal: from an engine process every bar's plan arrives as a copy of its
        own, and :attr:`bars` keeps one per bar for the whole run."""
        written = self._scores.get(event.bar)
        if written is None or event.plan is written.plan:
            return event
        if event.plan == written.plan:
            return dataclasses.replace(event, plan=written.plan)
        if event.plan.preset == written.plan.preset:
            plan = dataclasses.replace(event.plan, preset=written.plan.preset)
            return dataclasses.replace(event, plan=plan)
        return event

    async def _react_live(self) -> None:
        while True:
            await self._board.wait_new()
            items = self._board.take(until=None)
            if not items and self._board.finished:
                return
            async with self.lock:
                for item in items:
                    await self._take(item, now=None)

    async def _walk(self) -> None:
        """A render: decisions and answers in source-time order (see the module docstring)."""
        bar = self._lookahead
        while self._last_bar is None or bar <= self._last_bar:
            decided_at = self._grids[bar - self._lookahead].start / self._sample_rate
            await self._board.wait_for(decided_at)
            async with self.lock:
                for item in self._board.take(until=decided_at):
                    await self._take(item, now=_item_time(item))
            self.scores.clear(decided_at)
            if self._board.finished and not self._board.pending:
                self.scores.clear(math.inf)  # nothing more can happen: let the engine run
            # Write no further ahead than a live run would: after the engine started the bar.
            await self._started.setdefault(bar - self._lookahead, asyncio.Event()).wait()
            async with self.lock:
                await self.write_bar(bar, at=decided_at)
            bar += 1
        self.scores.clear(math.inf)

    async def _take(self, item: Mood | Cue, *, now: float | None) -> None:
        """One item from the board; the caller holds :attr:`lock`."""
        if isinstance(item, Mood):
            for cue in self.conductor.observe(item):
                if self.reactor is not None:
                    await self.reactor.answer(cue, confirmed=True, now=now)
        elif self.reactor is not None:
            await self.reactor.answer(item, confirmed=False, now=now)

    async def replan(self, *, from_bar: int | None = None, now: float | None = None) -> None:
        """Plan and write again the bars written but not started (live only; a command), from
        ``from_bar`` when given, whose downbeat is at least :data:`REPLAN_MARGIN_S` away."""
        if self._render and now is None:
            return
        async with self.lock:
            await self.rewrite(from_bar=from_bar, now=now)

    async def rewrite(
        self, *, from_bar: int | None, now: float | None, ramp: float | None = None
    ) -> None:
        """:meth:`replan` for a caller that holds :attr:`lock`; the first bar written again
        ramps a tempo change over ``ramp`` of the bar when given."""
        present = self._clock.audio_time if now is None else now
        margin = REPLAN_MARGIN_S if now is None else 0.0
        first = (
            from_bar if from_bar is not None else (self.sounding.bar + 1 if self.sounding else 0)
        )
        for bar in range(first, self.last_written() + 1):
            grid = self._grids.get(bar)
            if grid is None or self.started(bar):
                continue
            if grid.start / grid.sample_rate - present >= margin:
                await self.write_bar(bar, at=None, ramp=ramp)
                ramp = None


def _item_time(item: Mood | Cue) -> float:
    return item.t_end if isinstance(item, Mood) else item.time
