"""What the visuals draw from: the engine's bar grids and notes, kept by audio time.

The engine announces every bar's :class:`~daemon.engine.sequencer.BarGrid` (where its beats
fall, its plan) and its notes when the bar starts, before any of it sounds. A
:class:`VisualTimeline` collects both (cheaply, on the engine thread) and answers
:meth:`VisualTimeline.state_at`: the immutable :class:`VisualState` a frame at audio time ``t``
is drawn from.

Only bars that have started by ``t`` are visible in the state. Live, the engine announces a bar
a little before it sounds and the next bar only when that one starts; a render knows every bar
up front. Hiding bars that have not started makes both see the same state at the same ``t``, so
a render's visuals are what a viewer of the live stream would have seen.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from daemon.clock import BarGrid, ScheduledNote
from daemon.messages import Layer

# How much of the past the state carries: notes scroll off the left edge after PAST_S; beats
# older than that no longer pulse.
PAST_S = 1.5
# How far ahead notes are shown (they scroll in from the right), at most to the bar's end.
FUTURE_S = 3.0


class GridSource(Protocol):
    """What a timeline listens to: an :class:`~daemon.engine.Engine`."""

    def add_grid_listener(self, fn: Callable[[BarGrid], None]) -> None: ...

    def add_note_listener(self, fn: Callable[[Sequence[ScheduledNote]], None]) -> None: ...


@dataclass(frozen=True, slots=True)
class BeatMark:
    """One beat: its audio time, whether it is a bar's downbeat, and the beat's length (s)."""

    time: float
    downbeat: bool
    period: float


@dataclass(frozen=True, slots=True)
class NoteMark:
    """One note of one layer on the audio clock (seconds)."""

    layer: Layer
    pitch: int
    velocity: int
    time: float
    end_time: float


@dataclass(frozen=True, slots=True)
class VisualState:
    """Everything a frame at one instant is drawn from.

    beats : the beats at or before the instant within ``PAST_S``, oldest first.
    notes : notes of started bars overlapping ``[t - PAST_S, t + FUTURE_S]``.
    valence, arousal : the mood of the bar in force, in [-1, 1] (eased in over the bar's first
        beat from the previous bar's).
    layers : instrument layers the bar plays (1-5).
    bpm : the bar's tempo.
    bar : the bar number (-1 before the music starts).
    """

    beats: tuple[BeatMark, ...] = ()
    notes: tuple[NoteMark, ...] = ()
    valence: float = 0.0
    arousal: float = 0.0
    layers: int = 1
    bpm: float = 120.0
    bar: int = -1


EMPTY_STATE = VisualState()


@dataclass(frozen=True, slots=True)
class _Bar:
    start: float
    end: float
    beats: tuple[BeatMark, ...]
    valence: float
    arousal: float
    layers: int
    bpm: float
    bar: int


class VisualTimeline:
    """Thread-safe store of bar grids and notes; hand :meth:`on_grid` and :meth:`on_notes` to the
    engine (``add_grid_listener`` / ``add_note_listener``).

    Parameters
    ----------
    keep_s : forget bars that ended more than this many seconds of audio ago (live, so memory
        stays flat); None keeps everything (a render draws its video afterwards).
    """

    def __init__(self, *, keep_s: float | None = 30.0) -> None:
        self._keep_s = keep_s
        self._lock = threading.Lock()
        self._bars: list[_Bar] = []
        self._starts: list[float] = []
        self._notes: dict[int, tuple[NoteMark, ...]] = {}

    def attach(self, engine: GridSource) -> None:
        """Listen to an :class:`~daemon.engine.Engine`'s grids and notes."""
        engine.add_grid_listener(self.on_grid)
        engine.add_note_listener(self.on_notes)

    def on_grid(self, grid: BarGrid) -> None:
        """Engine-thread listener: a bar started (its beats are laid out), or a reaction
        changed it from a beat on (its notes from there are withdrawn; the new ones follow)."""
        if grid.patched_from is not None:
            start = grid.time_at(grid.patched_from)
            with self._lock:
                kept = tuple(
                    n
                    for n in self._notes.get(grid.bar, ())
                    if n.time < start or n.layer is Layer.STINGER
                )
                self._notes[grid.bar] = kept
                for i, held in enumerate(self._bars):
                    if held.bar == grid.bar:
                        plan = grid.plan
                        self._bars[i] = dataclasses.replace(
                            held, valence=plan.valence, arousal=plan.arousal, layers=plan.layers
                        )
            return
        beats = []
        for k in range(grid.beats):
            t = grid.time_at(k)
            beats.append(BeatMark(time=t, downbeat=k == 0, period=grid.time_at(k + 1) - t))
        plan = grid.plan
        bar = _Bar(
            start=grid.start / grid.sample_rate,
            end=grid.end / grid.sample_rate,
            beats=tuple(beats),
            valence=plan.valence,
            arousal=plan.arousal,
            layers=plan.layers,
            bpm=plan.bpm,
            bar=grid.bar,
        )
        with self._lock:
            if self._bars and bar.start <= self._bars[-1].start:
                return  # the engine never re-announces a bar; guard against a replayed one
            self._bars.append(bar)
            self._starts.append(bar.start)
            self._prune(bar.start)

    def on_notes(self, notes: Sequence[ScheduledNote]) -> None:
        """Engine-thread listener: a bar's notes, placed on the clock."""
        if not notes:
            return
        marks = tuple(
            NoteMark(
                layer=n.note.layer,
                pitch=n.note.pitch,
                velocity=n.note.velocity,
                time=n.time,
                end_time=n.end_time,
            )
            for n in notes
        )
        bar = notes[0].bar
        with self._lock:
            self._notes[bar] = self._notes.get(bar, ()) + marks

    def _prune(self, now: float) -> None:
        if self._keep_s is None:
            return
        cut = bisect.bisect_left([b.end for b in self._bars], now - self._keep_s)
        if cut > 0:
            for old in self._bars[:cut]:
                self._notes.pop(old.bar, None)
            del self._bars[:cut]
            del self._starts[:cut]

    @property
    def bars(self) -> int:
        """Bars held (a bounded number live)."""
        with self._lock:
            return len(self._bars)

    def state_at(self, t: float) -> VisualState:
        """The state of audio time ``t`` (seconds); :data:`EMPTY_STATE` before the first bar."""
        with self._lock:
            index = bisect.bisect_right(self._starts, t) - 1
            if index < 0:
                return EMPTY_STATE
            current = self._bars[index]
            visible = self._bars[max(0, index - 8) : index + 1]
            notes_by_bar = [self._notes.get(b.bar, ()) for b in visible]
            previous = self._bars[index - 1] if index > 0 else None
        beats = tuple(beat for bar in visible for beat in bar.beats if t - PAST_S <= beat.time <= t)
        horizon = min(t + FUTURE_S, current.end)
        notes = tuple(
            n
            for bar_notes in notes_by_bar
            for n in bar_notes
            if n.end_time >= t - PAST_S and n.time <= horizon
        )
        valence, arousal = current.valence, current.arousal
        if previous is not None and current.beats:
            # Ease the colour into the new bar's mood over its first beat.
            w = min(max((t - current.start) / max(current.beats[0].period, 1e-3), 0.0), 1.0)
            valence = previous.valence + (valence - previous.valence) * w
            arousal = previous.arousal + (arousal - previous.arousal) * w
        return VisualState(
            beats=beats,
            notes=notes,
            valence=valence,
            arousal=arousal,
            layers=current.layers,
            bpm=current.bpm,
            bar=current.bar,
        )
