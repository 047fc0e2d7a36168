"""The music clock: the engine's sample clock as every consumer of the music sees it.

The engine's sample counter is the one master clock. Bars are laid out on it as
:class:`BarGrid` (tempo ramps included) and notes as :class:`ScheduledNote`, both announced when a
bar starts and before any of it sounds. Everything that must happen *at a musical time* (MIDI
notes and clock, MQTT beats, the WebRTC audio and visuals, a beat map) asks the clock: it
subscribes to the clock's events and schedules work with :meth:`MusicClock.call_at`. Nobody else
converts audio time to wall time, and nobody sleeps by arithmetic of their own.

Two places run scheduled work:

- on an event loop (``call_at(..., loop=loop)``): the loop's own timer, for consumers that live on
  the loop (MQTT, WebRTC tracks, visuals);
- on the clock's thread (``call_at(...)`` without a loop): one ``moodscore-clock`` thread per
  engine runs every call when its audio time is heard, in time order (calls due at the same
  instant run in the order they were made), for consumers that must not wait on a busy event
  loop (MIDI).

In a render there is no wall clock: a call runs as soon as it can.

This module stays whole (about 590 lines): it is the one place that turns audio time into wall
time: the bar grid that lays beats on the sample clock, the subscriptions, and the schedulers
that run work at those times (with the per-output delayed views) share that conversion, and
splitting them would make two places that must agree on it.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, ParamSpec, Protocol

import numpy as np

from daemon.messages import BarStarted, Beat, NoteEvent, Plan

log = logging.getLogger(__name__)

# A tempo ramp moves in 16th-note steps: fine enough to sound continuous, coarse enough that a
# MIDI tempo map of the same steps stays small (16 tempo events for a ramping 4/4 bar).
STEPS_PER_BEAT = 4
# A call run later than this after its time counts as late (see WallScheduler.late).
LATE_S = 0.005

P = ParamSpec("P")

BeatListener = Callable[[Beat], None]
BarListener = Callable[[BarStarted], None]
AudioListener = Callable[[np.ndarray, float], None]


@dataclass(frozen=True, slots=True)
class BarGrid:
    """Where one bar's beats fall on the sample clock, its tempo ramp included.

    The tempo starts at ``bpm_from`` on the downbeat and reaches ``plan.bpm`` after
    ``ramp_steps`` 16th-note steps, each of constant tempo (the linear ramp's value at the step's
    middle); after the ramp it stays at ``plan.bpm``. Positions are in beats from the downbeat;
    positions past the bar's end continue at ``plan.bpm`` (a note held over the bar line).

    Attributes
    ----------
    bar : the bar number.
    start : absolute sample of the downbeat.
    sample_rate : samples per second of the clock.
    plan : the plan in force for the bar.
    first_beat : global index of the downbeat's beat (beats counted from the session start).
    bpm_from : the tempo at the downbeat (the previous bar's final tempo).
    ramp_steps : 16th-note steps over which the tempo moves; 0 for a bar of constant tempo.
    section : the label of the form's section the bar belongs to, None in free form.
    patched_from : None for a bar as it starts; a beat when the bar is announced again because
        a reaction changed it from that beat on (``plan`` is then the new plan, at the bar's
        tempo): listeners withdraw what they hold of the bar from there (its notes come again).
    """

    bar: int
    start: int
    sample_rate: int
    plan: Plan
    first_beat: int
    bpm_from: float
    ramp_steps: int
    _bounds: tuple[float, ...]  # seconds from the downbeat at each ramp step's start, and its end
    section: str | None = None
    patched_from: float | None = None

    @classmethod
    def build(
        cls,
        *,
        bar: int,
        start: int,
        sample_rate: int,
        plan: Plan,
        first_beat: int,
        bpm_from: float | None,
        ramp: float,
        section: str | None = None,
    ) -> BarGrid:
        """Lay out ``bar`` starting at sample ``start``.

        Parameters
        ----------
        bpm_from : the tempo in force before this bar (None for the first bar: no ramp).
        ramp : the fraction of the bar over which a tempo change ramps, in [0, 1]; 0 jumps to
            the new tempo on the downbeat.
        """
        bpm_to = plan.bpm
        if bpm_from is None or math.isclose(bpm_from, bpm_to) or ramp <= 0:
            return cls(bar, start, sample_rate, plan, first_beat, bpm_to, 0, (0.0,), section)
        steps = max(1, round(min(ramp, 1.0) * plan.beats_per_bar * STEPS_PER_BEAT))
        bounds = [0.0]
        step_beats = 1.0 / STEPS_PER_BEAT
        for k in range(steps):
            bpm = bpm_from + (bpm_to - bpm_from) * (k + 0.5) / steps
            bounds.append(bounds[-1] + step_beats * 60.0 / bpm)
        return cls(
            bar, start, sample_rate, plan, first_beat, bpm_from, steps, tuple(bounds), section
        )

    @property
    def bpm(self) -> float:
        """The tempo the bar arrives at (the plan's)."""
        return self.plan.bpm

    @property
    def beats(self) -> int:
        """Beats in the bar."""
        return self.plan.beats_per_bar

    @property
    def ramp_beats(self) -> float:
        """Beats from the downbeat to the end of the tempo ramp (0 without one)."""
        return self.ramp_steps / STEPS_PER_BEAT

    def step_bpm(self, k: int) -> float:
        """The constant tempo of ramp step ``k`` (``plan.bpm`` past the ramp)."""
        if k >= self.ramp_steps:
            return self.plan.bpm
        return self.bpm_from + (self.plan.bpm - self.bpm_from) * (k + 0.5) / self.ramp_steps

    def bpm_at(self, beat: float) -> float:
        """The tempo in force at ``beat`` beats from the downbeat."""
        return self.step_bpm(math.floor(max(beat, 0.0) * STEPS_PER_BEAT + 1e-9))

    def seconds_at(self, beat: float) -> float:
        """Exact seconds from the downbeat to ``beat`` beats into the bar."""
        beat = max(beat, 0.0)
        ramp_end = self.ramp_beats
        if beat >= ramp_end:
            return self._bounds[-1] + (beat - ramp_end) * 60.0 / self.plan.bpm
        k = min(int(beat * STEPS_PER_BEAT), self.ramp_steps - 1)
        into = beat - k / STEPS_PER_BEAT
        return self._bounds[k] + into * 60.0 / self.step_bpm(k)

    def beat_at(self, audio_time: float) -> float:
        """Beats from the downbeat at ``audio_time`` (the inverse of :meth:`time_at`; before the
        downbeat negative at ``bpm_from``, past the bar's end on at ``plan.bpm``)."""
        seconds = audio_time - self.start / self.sample_rate
        if seconds < 0:
            return seconds * self.bpm_from / 60.0
        ramp_end = self._bounds[-1]
        if seconds >= ramp_end:
            return self.ramp_beats + (seconds - ramp_end) * self.plan.bpm / 60.0
        k = max(bisect.bisect_right(self._bounds, seconds) - 1, 0)
        return k / STEPS_PER_BEAT + (seconds - self._bounds[k]) * self.step_bpm(k) / 60.0

    def offset_samples(self, beat: float) -> int:
        """Samples from the downbeat to ``beat`` beats into the bar (rounded once)."""
        return round(self.seconds_at(beat) * self.sample_rate)

    def sample_at(self, beat: float) -> int:
        """Absolute sample of ``beat`` beats into the bar."""
        return self.start + self.offset_samples(beat)

    def time_at(self, beat: float) -> float:
        """Audio time (seconds) of ``beat`` beats into the bar, on the sample grid."""
        return self.sample_at(beat) / self.sample_rate

    @property
    def length(self) -> int:
        """Samples from this downbeat to the next, rounded once per bar so bars never drift."""
        return self.offset_samples(self.beats)

    @property
    def end(self) -> int:
        """Absolute sample of the next bar's downbeat."""
        return self.start + self.length

    def tempo_segments(self) -> list[tuple[float, float, float]]:
        """The bar's spans of constant tempo as ``(first beat, last beat, bpm)``, in order."""
        segments = [
            (k / STEPS_PER_BEAT, (k + 1) / STEPS_PER_BEAT, self.step_bpm(k))
            for k in range(min(self.ramp_steps, self.beats * STEPS_PER_BEAT))
        ]
        if self.ramp_beats < self.beats:
            segments.append((self.ramp_beats, float(self.beats), self.plan.bpm))
        return segments


def bar_length_samples(plan: Plan, sample_rate: int) -> int:
    """Samples from a constant-tempo bar's downbeat to the next."""
    return round(plan.beats_per_bar * 60.0 / plan.bpm * sample_rate)


def follow_tempo(
    *, beat_at_start: float, beats: int, tempo: float, quantum: float, max_shift: float
) -> float:
    """The tempo for a bar of ``beats`` beats that lines it up with an outside beat grid.

    The outside grid (a Link session, a MIDI clock) runs at ``tempo`` and has its bar lines on
    multiples of ``quantum`` beats; the bar starts at the grid's beat ``beat_at_start``. At
    ``tempo`` the bar would end at ``beat_at_start + beats``; the bar ends instead on the grid's
    bar line nearest to that, moving by at most ``max_shift`` beats (a bar far off catches up
    over several bars rather than lurching). A bar already in phase gets ``tempo`` itself.
    """
    end = beat_at_start + beats
    target = round(end / quantum) * quantum
    shift = max(-max_shift, min(max_shift, target - end))
    return tempo * beats / (beats + shift)


@dataclass(frozen=True, slots=True)
class ScheduledNote:
    """A note of the score placed on the sample clock (what MIDI outputs mirror).

    ``onset``/``end`` are absolute samples of its start and its note-off; ``time``/``end_time``
    the same in seconds of audio time.
    """

    note: NoteEvent
    bar: int
    onset: int
    end: int
    time: float
    end_time: float


GridListener = Callable[[BarGrid], None]
NoteListener = Callable[[Sequence[ScheduledNote]], None]


class Listeners(Generic[P]):
    """The callbacks of one of the clock's events: the audio thread calls them all, in the order
    they were added. One that raises is logged (at most every few seconds) and keeps being
    called: a broken output must not stop the music or the other outputs.

    Adding copies the list, so the audio thread iterates without a lock.
    """

    def __init__(self, kind: str) -> None:
        from daemon.logs import RateLimitedLog

        self._kind = kind
        self._fns: tuple[Callable[P, object], ...] = ()
        self._trouble = RateLimitedLog(log)

    def add(self, fn: Callable[P, object]) -> None:
        """Call ``fn`` on every event from now on."""
        self._fns = (*self._fns, fn)

    def __bool__(self) -> bool:
        return bool(self._fns)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> None:
        for fn in self._fns:
            try:
                fn(*args, **kwargs)
            except Exception:
                self._trouble.warning("%s listener %r failed", self._kind, fn, exc_info=True)


class ScheduledCall:
    """A call waiting for its audio time; :meth:`cancel` keeps it from running."""

    __slots__ = ("audio_time", "cancelled", "fn")

    def __init__(self, audio_time: float, fn: Callable[[], object]) -> None:
        self.audio_time = audio_time
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run (any thread; a call already running finishes)."""
        self.cancelled = True

    def run(self) -> None:
        if not self.cancelled:
            self.fn()


class MusicClock(Protocol):
    """The engine's sample clock seen from outside (implemented by :class:`~daemon.engine.Engine`).

    Listeners are called on the engine's audio thread and must return at once: append to a
    queue, or schedule with :meth:`call_at`. Events arrive before they sound (a bar and its notes
    up to a bar ahead, a beat up to one audio block ahead), each with its audio time.
    """

    @property
    def sample_rate(self) -> int:
        """Samples per second the clock really runs at (JACK may impose its own)."""
        ...

    @property
    def audio_time(self) -> float:
        """Seconds of audio computed so far."""
        ...

    @property
    def playing(self) -> bool:
        """Whether the bar now sounding plays (False while the transport is stopped)."""
        ...

    def wall_time(self, audio_time: float) -> float | None:
        """The ``time.perf_counter()`` at which ``audio_time`` is heard; None without a wall clock
        (a render, or before the audio starts)."""
        ...

    def call_at(
        self,
        audio_time: float,
        fn: Callable[[], object],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> ScheduledCall:
        """Run ``fn()`` when ``audio_time`` is heard: on ``loop`` when given, else on the clock's
        thread; at once when that time has passed or there is no wall clock. Any thread."""
        ...

    def add_beat_listener(self, fn: BeatListener) -> None: ...

    def add_bar_listener(self, fn: BarListener) -> None: ...

    def add_grid_listener(self, fn: GridListener) -> None: ...

    def add_note_listener(self, fn: NoteListener) -> None: ...

    def add_audio_listener(self, fn: AudioListener) -> None: ...


class DelayedClock:
    """A view of a clock whose sound arrives ``delay_s`` later (earlier when negative): what an
    output with its own latency to make up attaches to (see :class:`~daemon.outputs.base.Output`'s
    ``delay_s``).

    Events and their audio times pass through unchanged; only the wall clock moves: ``wall_time``
    says ``delay_s`` later and ``call_at`` runs ``delay_s`` later. An output that schedules by
    the clock (every one does) is therefore shifted as a whole against the sound, its lead and
    time stamps included, without knowing it.
    """

    def __init__(self, clock: MusicClock, delay_s: float) -> None:
        self.inner = clock
        self.delay_s = delay_s

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    @property
    def audio_time(self) -> float:
        return self.inner.audio_time

    @property
    def playing(self) -> bool:
        return self.inner.playing

    def wall_time(self, audio_time: float) -> float | None:
        wall = self.inner.wall_time(audio_time)
        return None if wall is None else wall + self.delay_s

    def call_at(
        self,
        audio_time: float,
        fn: Callable[[], object],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> ScheduledCall:
        return self.inner.call_at(audio_time + self.delay_s, fn, loop=loop)

    def add_beat_listener(self, fn: BeatListener) -> None:
        self.inner.add_beat_listener(fn)

    def add_bar_listener(self, fn: BarListener) -> None:
        self.inner.add_bar_listener(fn)

    def add_grid_listener(self, fn: GridListener) -> None:
        self.inner.add_grid_listener(fn)

    def add_note_listener(self, fn: NoteListener) -> None:
        self.inner.add_note_listener(fn)

    def add_audio_listener(self, fn: AudioListener) -> None:
        self.inner.add_audio_listener(fn)


def delayed(clock: MusicClock, delay_s: float) -> MusicClock:
    """``clock`` as an output ``delay_s`` seconds late sees it (``clock`` itself for 0)."""
    return clock if delay_s == 0 else DelayedClock(clock, delay_s)


async def until(clock: MusicClock, audio_time: float) -> None:
    """Wait on the running loop until ``audio_time`` is heard (at once without a wall clock)."""
    loop = asyncio.get_running_loop()
    due: asyncio.Future[None] = loop.create_future()

    def arrive() -> None:
        if not due.done():
            due.set_result(None)

    call = clock.call_at(audio_time, arrive, loop=loop)
    try:
        await due
    finally:
        call.cancel()


def call_on_loop(
    loop: asyncio.AbstractEventLoop,
    call: ScheduledCall,
    wall_time: Callable[[float], float | None],
) -> None:
    """Arm ``call`` on ``loop``'s timer for the wall time of its audio time (from any thread)."""

    def arm() -> None:
        wall = wall_time(call.audio_time)
        delay = 0.0 if wall is None else wall - time.perf_counter()
        if delay > 0:
            loop.call_later(delay, call.run)
        else:
            call.run()

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        arm()
    else:
        loop.call_soon_threadsafe(arm)


class WallScheduler:
    """The clock's thread: runs calls when their audio time is heard on the wall clock.

    Parameters
    ----------
    wall_time : maps audio time to ``time.perf_counter()`` (None: no wall clock, run at once).
    name : the thread's name.

    The wall time of the earliest call is looked up afresh each time the thread wakes, so a
    sound card's clock drifting against the system's is followed. A call that raises is logged
    (rate-limited) and the thread goes on.
    """

    def __init__(
        self, wall_time: Callable[[float], float | None], *, name: str = "moodscore-clock"
    ) -> None:
        from daemon.logs import RateLimitedLog

        self._wall_time = wall_time
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, ScheduledCall]] = []
        self._seq = itertools.count()
        self._closed = False
        self._trouble = RateLimitedLog(log)
        self.ran = 0  # calls run
        self.late = 0  # calls run more than LATE_S after their time
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, audio_time: float, fn: Callable[[], object]) -> ScheduledCall:
        """Queue ``fn`` for ``audio_time`` (any thread); ignored once closed."""
        call = ScheduledCall(audio_time, fn)
        with self._cond:
            if not self._closed:
                heapq.heappush(self._heap, (audio_time, next(self._seq), call))
                self._cond.notify()
        return call

    def close(self) -> None:
        """Drop what is pending and end the thread (idempotent)."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._heap:
                    self._cond.wait()
                if self._closed:
                    return
                audio_time = self._heap[0][0]
                wall = self._wall_time(audio_time)
                delay = 0.0 if wall is None else wall - time.perf_counter()
                if delay > 0:
                    # Woken early when something sooner is queued; the wall time is looked up
                    # again then (a drifting card clock moves it a little).
                    self._cond.wait(min(delay, 0.05))
                    continue
                due = [heapq.heappop(self._heap)[2]]
                while self._heap and self._heap[0][0] <= audio_time + 1e-9:
                    due.append(heapq.heappop(self._heap)[2])
            if delay < -LATE_S:
                self.late += len(due)
            for call in due:
                try:
                    call.run()
                except Exception:
                    self._trouble.warning("a call on the music clock failed", exc_info=True)
                self.ran += 1


class Scheduling:
    """``call_at`` for a clock that knows its :meth:`wall_time` (a mixin of the engine and of any
    stand-in clock): the loop form on the loop's timer, the thread form on one
    :class:`WallScheduler` thread made on first use and ended by :meth:`close_scheduler`."""

    _scheduler: WallScheduler | None = None
    _scheduler_closed = False
    _scheduler_lock = threading.Lock()  # shared by every clock: taken briefly, rarely

    def wall_time(self, audio_time: float) -> float | None:
        raise NotImplementedError

    def call_at(
        self,
        audio_time: float,
        fn: Callable[[], object],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> ScheduledCall:
        """Run ``fn()`` when ``audio_time`` is heard (see :class:`MusicClock`): on ``loop``'s
        timer when given, else on the clock's thread; at once without a wall clock (a render)
        or when the time has passed. Any thread."""
        if loop is not None:
            call = ScheduledCall(audio_time, fn)
            call_on_loop(loop, call, self.wall_time)
            return call
        with self._scheduler_lock:
            if self._scheduler_closed:
                call = ScheduledCall(audio_time, fn)
                call.cancel()  # the clock has stopped: nothing is heard any more
                return call
            if self._scheduler is None:
                self._scheduler = WallScheduler(self.wall_time)
            return self._scheduler.call_at(audio_time, fn)

    def close_scheduler(self) -> None:
        """End the clock's thread (pending calls are dropped); later calls never run."""
        with self._scheduler_lock:
            scheduler, self._scheduler = self._scheduler, None
            self._scheduler_closed = True
        if scheduler is not None:
            scheduler.close()


__all__ = [
    "STEPS_PER_BEAT",
    "AudioListener",
    "BarGrid",
    "BarListener",
    "BeatListener",
    "DelayedClock",
    "GridListener",
    "Listeners",
    "MusicClock",
    "NoteListener",
    "ScheduledCall",
    "ScheduledNote",
    "Scheduling",
    "WallScheduler",
    "bar_length_samples",
    "call_on_loop",
    "delayed",
    "follow_tempo",
    "until",
]
