"""The musical clock on the sample grid: bars, beats and note onsets, block by block.

Pure Python and free of pyo, so the grid arithmetic is testable on its own. The engine calls
:meth:`Sequencer.advance` once per audio block, before that block is computed; the sequencer
takes each bar's score when the bar starts, emits ``BarStarted`` and ``Beat`` for events inside
the block, and hands every note whose onset falls inside the block to the instrument sink with
its exact onset sample.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import logging
import time
from collections.abc import Callable
from typing import Protocol

from daemon.messages import BarScore, BarStarted, Beat, Chord, Layer, Plan

log = logging.getLogger(__name__)


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
    scene="default",
    valence=0.0,
    arousal=0.0,
)
FALLBACK_CHORD = Chord(root=0, quality="maj", pitches=(60, 64, 67))


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

    def bar(self, plan: Plan, *, first: bool) -> None: ...


def bar_length_samples(plan: Plan, sample_rate: int) -> int:
    """Samples from a bar's downbeat to the next, rounded once per bar so bars never drift."""
    return round(plan.beats_per_bar * 60.0 / plan.bpm * sample_rate)


def beat_offset_samples(plan: Plan, beat: float, sample_rate: int) -> int:
    """Samples from a bar's downbeat to ``beat`` beats into it."""
    return round(beat * 60.0 / plan.bpm * sample_rate)


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
    ) -> None:
        self.sample_rate = sample_rate
        self._scores = scores
        self._sink = sink
        self._on_bar = on_bar
        self._on_beat = on_beat
        self._on_end = on_end
        self.underruns = 0
        self.bar = -1  # the bar now playing
        self.plan: Plan | None = None
        self._next_bar_sample = 0
        self._previous: BarScore | None = None
        self._ended = False
        self._beats: list[tuple[int, Beat]] = []  # this bar's beats still to emit, in order
        self._beat_index = 0
        self._notes: list[tuple[int, int, Layer, int, int, float]] = []  # heap by onset sample
        self._seq = 0
        self._underrun_log = RateLimitedLog(log)

    def advance(self, start: int, frames: int, *, limit: int | None = None) -> None:
        """Handle everything in samples ``[start, start + frames)``, before the block computes.

        ``limit`` (the end of the audio) suppresses bars, beats and notes at or after it.
        """
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
        self._sink.bar(plan, first=self.plan is None)
        self.bar = bar
        self.plan = plan
        self._previous = score
        self._on_bar(BarStarted(bar=bar, audio_time=downbeat / self.sample_rate, plan=plan))
        self._next_bar_sample = downbeat + bar_length_samples(plan, self.sample_rate)
        self._beats = []
        for i in range(plan.beats_per_bar):
            sample = downbeat + beat_offset_samples(plan, i, self.sample_rate)
            beat = Beat(
                index=self._beat_index,
                bar=bar,
                beat_in_bar=i,
                bpm=plan.bpm,
                audio_time=sample / self.sample_rate,
            )
            self._beat_index += 1
            self._beats.append((sample, beat))
        beat_s = 60.0 / plan.bpm
        for note in score.notes:
            onset = downbeat + beat_offset_samples(plan, max(note.offset, 0.0), self.sample_rate)
            self._seq += 1
            heapq.heappush(
                self._notes,
                (
                    onset,
                    self._seq,
                    note.layer,
                    note.pitch,
                    note.velocity,
                    max(note.duration, 0.0) * beat_s,
                ),
            )

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
