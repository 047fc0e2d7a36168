"""The musical clock on the sample grid: bars, beats, tempo ramps and note onsets, block by block.

Pure Python and free of pyo, so the grid arithmetic is testable on its own. The engine calls
:meth:`Sequencer.advance` once per audio block, before that block is computed; the sequencer
takes each bar's score when the bar starts, lays the bar out on the sample clock
(:class:`BarGrid`), emits ``BarStarted`` and ``Beat`` for events inside the block, and hands every
note whose onset falls inside the block to the instrument sink with its exact onset sample.

Tempo changes ramp. A bar whose plan asks for a new tempo moves from the tempo in force at its
downbeat to the new one over its first ``ramp`` bars' worth of beats (at most the whole bar), in
16th-note steps of constant tempo. Every beat, note onset and MIDI clock tick is placed by
integrating that staircase exactly, and a MIDI file's tempo map of the same steps reproduces the
audio's beat times to the microsecond.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon.messages import BarScore, BarStarted, Beat, Chord, Layer, NoteEvent, Plan

log = logging.getLogger(__name__)

# A tempo ramp moves in 16th-note steps: fine enough to sound continuous, coarse enough that a
# MIDI tempo map of the same steps stays small (16 tempo events for a ramping 4/4 bar).
STEPS_PER_BEAT = 4


class Missing(enum.Enum):
    """Why a bar's score is not there when the bar starts."""

    LATE = "late"  # not composed yet (live: an underrun)
    CLOSED = "closed"  # the queue is closed: the music has ended (or the engine is stopping)


ScoreSource = Callable[[int], BarScore | Missing]

# The plan used when live playback must start a bar and no score has ever arrived.
FALLBACK_PLAN = Plan(
    bar=0,
    bpm=120.0,
    layers=1,
    tonic=0,
    mode="major",
    density=0.0,
    valence=0.0,
    arousal=0.0,
)
FALLBACK_CHORD = Chord(root=0, quality="maj", pitches=(60, 64, 67))


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
    """

    bar: int
    start: int
    sample_rate: int
    plan: Plan
    first_beat: int
    bpm_from: float
    ramp_steps: int
    _bounds: tuple[float, ...]  # seconds from the downbeat at each ramp step's start, and its end

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
            return cls(bar, start, sample_rate, plan, first_beat, bpm_to, 0, (0.0,))
        steps = max(1, round(min(ramp, 1.0) * plan.beats_per_bar * STEPS_PER_BEAT))
        bounds = [0.0]
        step_beats = 1.0 / STEPS_PER_BEAT
        for k in range(steps):
            bpm = bpm_from + (bpm_to - bpm_from) * (k + 0.5) / steps
            bounds.append(bounds[-1] + step_beats * 60.0 / bpm)
        return cls(bar, start, sample_rate, plan, first_beat, bpm_from, steps, tuple(bounds))

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


class NoteSink(Protocol):
    """What plays the notes: the pyo band in the engine, a recorder of calls in tests."""

    def note_on(
        self,
        layer: Layer,
        pitch: int,
        velocity: int,
        *,
        block_start: int,
        onset: int,
        duration: float,
    ) -> None: ...

    def bar(self, grid: BarGrid, *, block_start: int, first: bool) -> None: ...


class RateLimitedLog:
    """Log a repeating warning at most once per ``interval`` seconds, with how often it happened."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message % args`` unless the last report was less than ``interval`` ago."""
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last report)"
        self._logger.warning(message, *args, exc_info=exc_info)
        self._last = now
        self._suppressed = 0


class Sequencer:
    """Bars, beats and notes on the sample clock.

    Parameters
    ----------
    sample_rate : samples per second of the clock.
    scores : returns the score of a bar, or why it is missing; called once per bar, on the
        engine thread, at the bar's start (it may block in a render).
    sink : plays notes and applies each bar's plan.
    on_bar, on_beat : called for every ``BarStarted`` / ``Beat`` (on the engine thread).
    on_end : called once with the downbeat sample of the first bar after the queue closed.
    on_grid : called with every bar's :class:`BarGrid`, right after the bar starts.
    on_notes : called at every bar start with the bar's notes placed on the clock (those before
        the end of the audio), before any of them sounds.
    ramp : fraction of a bar over which a tempo change ramps (0: the tempo jumps).
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        scores: ScoreSource,
        sink: NoteSink,
        on_bar: Callable[[BarStarted], None],
        on_beat: Callable[[Beat], None],
        on_end: Callable[[int], None],
        on_grid: Callable[[BarGrid], None] | None = None,
        on_notes: Callable[[Sequence[ScheduledNote]], None] | None = None,
        ramp: float = 1.0,
    ) -> None:
        self.sample_rate = sample_rate
        self._scores = scores
        self._sink = sink
        self._on_bar = on_bar
        self._on_beat = on_beat
        self._on_end = on_end
        self._on_grid = on_grid
        self._on_notes = on_notes
        self._ramp = ramp
        self.underruns = 0
        self.bar = -1  # the bar now playing
        self.plan: Plan | None = None
        self.grid: BarGrid | None = None
        self._next_bar_sample = 0
        self._previous: BarScore | None = None
        self._ended = False
        self._beats: list[tuple[int, Beat]] = []  # this bar's beats still to emit, in order
        self._beat_index = 0
        self._notes: list[tuple[int, int, Layer, int, int, float]] = []  # heap by onset sample
        self._seq = 0
        self._block_start = 0
        self._limit: int | None = None
        self._underrun_log = RateLimitedLog(log)

    def advance(self, start: int, frames: int, *, limit: int | None = None) -> None:
        """Handle everything in samples ``[start, start + frames)``, before the block computes.

        ``limit`` (the end of the audio) suppresses bars, beats and notes at or after it.
        """
        self._block_start = start
        self._limit = limit
        end = start + frames if limit is None else min(start + frames, limit)
        while True:
            next_beat = self._beats[0][0] if self._beats else None
            if next_beat is not None and next_beat < self._next_bar_sample:
                if next_beat >= end:
                    break
                self._on_beat(self._beats.pop(0)[1])
            elif self._next_bar_sample < end:
                self._start_bar(self._next_bar_sample)
            else:
                break
        while self._notes and self._notes[0][0] < end:
            onset, _, layer, pitch, velocity, duration = heapq.heappop(self._notes)
            self._sink.note_on(
                layer,
                pitch,
                velocity,
                block_start=start,
                onset=max(onset, start),
                duration=duration,
            )

    def _start_bar(self, downbeat: int) -> None:
        bar = self.bar + 1
        got = Missing.CLOSED if self._ended else self._scores(bar)
        if isinstance(got, BarScore):
            score = got
            if score.bar != bar:
                score = dataclasses.replace(score, bar=bar)
        elif got is Missing.LATE:
            self.underruns += 1
            self._underrun_log.warning(
                "bar %d: no score in time; replaying the previous bar (%d underruns so far)",
                bar,
                self.underruns,
            )
            score = self._replay(bar, keep_notes=True)
        else:
            if not self._ended:
                self._ended = True
                self._on_end(downbeat)
            score = self._replay(bar, keep_notes=False)
        plan = score.plan
        grid = BarGrid.build(
            bar=bar,
            start=downbeat,
            sample_rate=self.sample_rate,
            plan=plan,
            first_beat=self._beat_index,
            bpm_from=None if self.grid is None else self.grid.bpm,
            ramp=self._ramp,
        )
        self._sink.bar(grid, block_start=self._block_start, first=self.plan is None)
        self.bar = bar
        self.plan = plan
        self.grid = grid
        self._previous = score
        self._on_bar(BarStarted(bar=bar, audio_time=downbeat / self.sample_rate, plan=plan))
        if self._on_grid is not None:
            self._on_grid(grid)
        self._next_bar_sample = grid.end
        self._beats = []
        for i in range(plan.beats_per_bar):
            sample = grid.sample_at(i)
            beat = Beat(
                index=self._beat_index,
                bar=bar,
                beat_in_bar=i,
                bpm=grid.bpm_at(i),
                audio_time=sample / self.sample_rate,
            )
            self._beat_index += 1
            self._beats.append((sample, beat))
        scheduled: list[ScheduledNote] = []
        limit = self._limit
        for note in score.notes:
            offset = max(note.offset, 0.0)
            onset = grid.sample_at(offset)
            end = max(grid.sample_at(offset + max(note.duration, 0.0)), onset)
            if limit is not None and onset >= limit:
                continue
            self._seq += 1
            heapq.heappush(
                self._notes,
                (
                    onset,
                    self._seq,
                    note.layer,
                    note.pitch,
                    note.velocity,
                    (end - onset) / self.sample_rate,
                ),
            )
            if self._on_notes is not None:
                if limit is not None:
                    end = min(end, limit)
                scheduled.append(
                    ScheduledNote(
                        note, bar, onset, end, onset / self.sample_rate, end / self.sample_rate
                    )
                )
        if scheduled and self._on_notes is not None:
            self._on_notes(scheduled)

    def _replay(self, bar: int, *, keep_notes: bool) -> BarScore:
        previous = self._previous
        if previous is None:
            return BarScore(
                bar=bar,
                plan=dataclasses.replace(FALLBACK_PLAN, bar=bar),
                chord=FALLBACK_CHORD,
                notes=(),
            )
        return BarScore(
            bar=bar,
            plan=dataclasses.replace(previous.plan, bar=bar),
            chord=previous.chord,
            notes=previous.notes if keep_notes else (),
        )
