"""The planner: conductor and composer bar by bar, ahead of the engine.

When bar ``b`` starts, the planner has the conductor decide the plan of bar ``b + lookahead`` and
has it written (by the composer, or in the library mode by the track chooser) off the event loop,
then hands the score to the engine's :class:`~daemon.engine.ScoreQueue`. Model latency never
reaches the speakers, and every change lands on a bar line.

- **render**: the plan of a bar is made from exactly the mood windows that *ended* before the
  decision time (the audio time of the bar that triggered it), so the same input, config and
  seed give the same notes however the threads interleave;
- **live**: every window seen so far counts (the latest mood wins);
- **re-plan** (live, on a command): the bars composed but not started yet are planned and written
  again when their downbeat is at least :data:`REPLAN_MARGIN_S` away, so a command lands on the
  very next bar line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from daemon.analysis.board import MoodBoard
from daemon.conductor import Conductor
from daemon.engine import ScoreQueue
from daemon.messages import BarScore, BarStarted, Plan

# A command re-plans a bar already composed when its downbeat is at least this far ahead of the
# engine (composing a bar takes a few ms; the margin covers a busy machine and a tempo ramp's
# shorter bar).
REPLAN_MARGIN_S = 0.3

BarWriter = Callable[[Plan], BarScore]


class BarPlanner:
    """Plans and writes the bars ahead of the engine.

    Parameters
    ----------
    conductor : decides each bar's plan.
    write : writes a bar's score from its plan (the composer's ``compose_bar``, or the library
        mode's ``bar``); blocking, so it runs in a worker thread.
    board : the analysis -> conductor link.
    scores : the engine's score queue.
    lookahead : bars composed ahead of the one sounding.
    render : plan from exactly the windows that ended before each decision (reproducible).
    first_window : the end time of the first analysis window (the first plans wait for it).
    clock : the engine's audio time, for re-planning (live).
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
        clock: Callable[[], float],
        last_bar: int | None = None,
    ) -> None:
        self.conductor = conductor
        self._write = write
        self._board = board
        self.scores = scores
        self._lookahead = lookahead
        self._render = render
        self._first_window = first_window
        self._audio_time = clock
        self._last_bar = last_bar
        # One composition at a time (the composer keeps state from bar to bar).
        self._lock = asyncio.Lock()
        self._planned: dict[int, Plan] = {}  # bars written but not started, by bar
        self.sounding: BarStarted | None = None
        self.bars: list[BarStarted] = []  # every bar as it started
        self.written: list[BarScore] = []  # every score handed on, re-plans included

    async def prefill(self, *, live_wait_s: float = 2.0) -> None:
        """Before the audio starts: wait for the first mood window (live: at most
        ``live_wait_s``, so the music starts in the right mood rather than neutral), then write
        the bars before the first look-ahead."""
        if self._render:
            await self._board.wait_for(self._first_window)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._board.wait_for(self._first_window), live_wait_s)
        # Bar b + lookahead is written when bar b starts, so the bars before the look-ahead
        # must exist before the first sample plays.
        for bar in range(self._lookahead):
            await self._plan_bar(bar, decision_time=self._first_window)

    async def bar_started(self, event: BarStarted) -> None:
        """Bar ``event.bar`` began: write the bar ``lookahead`` ahead of it."""
        self.bars.append(event)
        self.sounding = event
        for old in [b for b in self._planned if b < event.bar]:
            del self._planned[old]
        await self._plan_bar(event.bar + self._lookahead, decision_time=event.audio_time)

    async def replan(self) -> None:
        """Plan and write again the bars written but not started (live only; see the module
        docstring)."""
        if self._render:
            return
        async with self._lock:
            sounding = self.sounding
            if sounding is None:
                return
            downbeat = sounding.audio_time + _bar_seconds(sounding.plan)
            for bar in range(sounding.bar + 1, max(self._planned, default=-1) + 1):
                if downbeat - self._audio_time() >= REPLAN_MARGIN_S:
                    await self._write_and_queue(bar, decision_time=None)
                downbeat += _bar_seconds(self._planned[bar])

    async def _plan_bar(self, bar: int, *, decision_time: float) -> None:
        async with self._lock:
            if self._last_bar is not None and bar > self._last_bar:
                # A piece of fixed length: after its last bar the engine lets the notes ring.
                self.scores.close()
                return
            if self._render:
                await self._board.wait_for(decision_time)
                moods = self._board.take(until=decision_time)
            else:
                moods = self._board.take(until=None)
            for mood in moods:
                self.conductor.observe(mood)
            await self._write_and_queue(bar, decision_time=decision_time)
            if self._last_bar is not None and bar == self._last_bar:
                self.scores.close()

    async def _write_and_queue(self, bar: int, *, decision_time: float | None) -> None:
        plan = self.conductor.plan_for_bar(bar, at=decision_time)
        score = await asyncio.to_thread(self._write, plan)
        self.written.append(score)
        self._planned[bar] = plan
        self.scores.put(score)


def _bar_seconds(plan: Plan) -> float:
    return plan.beats_per_bar * 60.0 / plan.bpm
