"""The musical clock on the sample grid: bars, beats, tempo ramps and note onsets, block by block.

Pure Python and free of pyo, so the grid arithmetic is testable on its own. The engine calls
:meth:`Sequencer.advance` once per audio block, before that block is computed; the sequencer
takes each bar's score when the bar starts, lays the bar out on the sample clock
(:class:`BarGrid`), emits ``BarStarted`` and ``Beat`` for events inside the block, and hands every
note whose onset falls inside the block to the instrument sink with its exact onset sample.

Tempo changes ramp (see :class:`daemon.clock.BarGrid`): every beat, note onset and MIDI clock tick
is placed by integrating the grid's staircase exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from daemon.clock import BarGrid, ScheduledNote
from daemon.logs import RateLimitedLog
from daemon.messages import BarPatch, BarScore, BarStarted, Beat, Chord, Layer, NoteEvent, Plan

log = logging.getLogger(__name__)


class Missing(enum.Enum):
    """Why a bar's score is not there when the bar starts."""

    LATE = "late"  # not composed yet (live: an underrun)
    CLOSED = "closed"  # the queue is closed: the music has ended (or the engine is stopping)


ScoreSource = Callable[[int], BarScore | Missing]
# An outside tempo (a Link session): (bar, audio time of its downbeat, its plan) -> its tempo.
BarTempo = Callable[[int, float, Plan], float]

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

    def change(self, plan: Plan, *, block_start: int, at: int, fade_s: float) -> None: ...


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
    patches : returns the bar patches that arrived since the last call (reactions inside a bar,
        stingers); polled every block.
    gate : called with the audio time of every bar start and beat before it is laid out (a
        render waits there until the analysis has seen that far, so that a reaction to what
        happened before it lands on it); None live.
    tempo : an outside tempo source (see :meth:`set_tempo`); None: every bar keeps its plan's.
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
        patches: Callable[[], list[BarPatch]] | None = None,
        gate: Callable[[float], None] | None = None,
        tempo: BarTempo | None = None,
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
        self._patch_source = patches
        self._gate = gate
        self._tempo = tempo
        self._tempo_log = RateLimitedLog(log)
        self._future: dict[int, list[BarPatch]] = {}  # patches of bars not started yet
        self._changes: list[tuple[int, int, BarPatch]] = []  # (sample, seq, patch), a heap
        self.underruns = 0
        self.bar = -1  # the bar now playing
        self.plan: Plan | None = None
        self.grid: BarGrid | None = None
        self._next_bar_sample = 0
        self._previous: BarScore | None = None
        self._ended = False
        self._beats: list[tuple[int, Beat]] = []  # this bar's beats still to emit, in order
        self._beat_index = 0
        # (onset sample, seq, layer, pitch, velocity, seconds, bar, patch-proof), a heap by onset;
        # a replacing patch withdraws the bar's notes it covers, never a stinger's.
        self._notes: list[tuple[int, int, Layer, int, int, float, int, bool]] = []
        self._seq = 0
        self._block_start = 0
        self._limit: int | None = None
        self._underrun_log = RateLimitedLog(log)
        self._gated_bar = False
        self._gated = -1  # the index of the last beat the gate was asked about

    def advance(self, start: int, frames: int, *, limit: int | None = None) -> None:
        """Handle everything in samples ``[start, start + frames)``, before the block computes.

        ``limit`` (the end of the audio) suppresses bars, beats and notes at or after it.
        """
        self._block_start = start
        self._limit = limit
        end = start + frames if limit is None else min(start + frames, limit)
        self._take_patches()
        while True:
            next_beat = self._beats[0][0] if self._beats else None
            next_change = self._changes[0][0] if self._changes else None
            if (
                next_change is not None
                and next_change < end
                and (next_beat is None or next_change <= next_beat)
                and next_change < self._next_bar_sample
            ):
                self._change(heapq.heappop(self._changes)[2], next_change)
            elif next_beat is not None and next_beat < self._next_bar_sample:
                if next_beat >= end:
                    break
                beat = self._beats[0][1]
                if self._gate is not None and beat.beat_in_bar > 0 and self._gated != beat.index:
                    self._gated = beat.index
                    self._gate(next_beat / self.sample_rate)
                    self._take_patches()
                    continue  # a patch may have brought a change before this beat
                self._on_beat(self._beats.pop(0)[1])
            elif self._next_bar_sample < end:
                if self._gate is not None and not self._gated_bar:
                    self._gated_bar = True
                    self._gate(self._next_bar_sample / self.sample_rate)
                    self._take_patches()
                    continue
                self._gated_bar = False
                self._start_bar(self._next_bar_sample)
            else:
                break
        while self._notes and self._notes[0][0] < end:
            onset, _, layer, pitch, velocity, duration, _, _ = heapq.heappop(self._notes)
            self._sink.note_on(
                layer,
                pitch,
                velocity,
                block_start=start,
                onset=max(onset, start),
                duration=duration,
            )

    # -- patches -------------------------------------------------------------------------------

    def _take_patches(self) -> None:
        if self._patch_source is None:
            return
        for patch in self._patch_source():
            if patch.bar > self.bar:
                self._future.setdefault(patch.bar, []).append(patch)
            elif patch.bar == self.bar:
                self._apply_patch(patch)
            # A patch for a bar that has ended came too late: it is dropped.

    def _apply_patch(self, patch: BarPatch) -> None:
        """Place ``patch`` on the bar now playing: its notes on the clock (a replacing patch
        first withdraws the bar's notes from its start on), and its plan at its first beat."""
        grid = self.grid
        if grid is None:
            return
        start = grid.sample_at(max(patch.from_beat, 0.0))
        at = max(start, self._block_start)
        if patch.replace:
            self._notes = [
                entry for entry in self._notes if entry[6] != patch.bar or entry[0] < at or entry[7]
            ]
            heapq.heapify(self._notes)
            self._seq += 1
            heapq.heappush(self._changes, (at, self._seq, patch))
        # A stinger that arrives a block late still plays (its first notes at once); what a
        # replacing patch covers starts where it can.
        floor = at if patch.replace else start
        self._schedule(patch.notes, grid, patch.bar, proof=not patch.replace, not_before=floor)

    def _change(self, patch: BarPatch, at: int) -> None:
        """The band takes a replacing patch's sounds and layers at sample ``at``; the grid (and
        its tempo) stays; listeners learn of it as a patched grid of the bar."""
        grid = self.grid
        if grid is None or patch.bar != self.bar:
            return
        beat_s = grid.offset_samples(1) / self.sample_rate
        self._sink.change(
            patch.plan,
            block_start=self._block_start,
            at=at,
            fade_s=max(patch.fade_beats, 0.0) * beat_s,
        )
        # The bar keeps its tempo until the next bar line; the rest of the plan changes now.
        plan = dataclasses.replace(patch.plan, bpm=grid.plan.bpm, bar=grid.bar)
        self.plan = plan
        if self._on_grid is not None:
            self._on_grid(dataclasses.replace(grid, plan=plan, patched_from=patch.from_beat))

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
        if self._tempo is not None:
            plan = self._outside_tempo(bar, downbeat, plan)
            score = dataclasses.replace(score, plan=plan)
        grid = BarGrid.build(
            bar=bar,
            start=downbeat,
            sample_rate=self.sample_rate,
            plan=plan,
            first_beat=self._beat_index,
            bpm_from=None if self.grid is None else self.grid.bpm,
            ramp=self._ramp if plan.ramp is None else plan.ramp,
            section=score.section,
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
        self._schedule(score.notes, grid, bar, proof=False)
        for patch in self._future.pop(bar, []):
            self._apply_patch(patch)

    def _outside_tempo(self, bar: int, downbeat: int, plan: Plan) -> Plan:
        """The plan at the outside source's tempo, jumping on the downbeat (a ramp would move the
        beats off the outside grid); the plan's own tempo when the source fails."""
        assert self._tempo is not None
        bpm = plan.bpm
        try:
            bpm = float(self._tempo(bar, downbeat / self.sample_rate, plan))
            if not 20.0 <= bpm <= 999.0:
                raise ValueError(f"tempo {bpm!r} out of range")
        except Exception as exc:
            self._tempo_log.warning("bar %d: the outside tempo failed (%s); keeping %g bpm", bar,
                                    exc, plan.bpm)  # fmt: skip
            bpm = plan.bpm
        return dataclasses.replace(plan, bpm=bpm, ramp=0.0)

    def _schedule(
        self,
        notes: Sequence[NoteEvent],
        grid: BarGrid,
        bar: int,
        *,
        proof: bool,
        not_before: int = 0,
    ) -> None:
        """Put ``notes`` of ``bar`` on the clock (those before ``not_before`` or the end of the
        audio are left out) and tell the note listeners."""
        scheduled: list[ScheduledNote] = []
        limit = self._limit
        for note in notes:
            offset = max(note.offset, 0.0)
            onset = grid.sample_at(offset)
            end = max(grid.sample_at(offset + max(note.duration, 0.0)), onset)
            if (limit is not None and onset >= limit) or onset < not_before:
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
                    bar,
                    proof,
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
