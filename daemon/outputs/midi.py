"""MIDI out, the shared part and the file: channels, General MIDI programs, and the session as a
Standard MIDI File.

Both MIDI outputs (this file's :class:`MidiFileOutput` and
:class:`~daemon.outputs.midi_port.MidiPortOutput`) listen to the clock's grids and notes: at every
bar start they learn where the bar's beats fall on the sample clock (tempo ramp included) and
every note of the bar with its onset and note-off in audio time. The clock calls them on its
audio thread, so they only append and return.

:class:`MidiFileOutput` keeps the whole session and writes a Standard MIDI File (type 1: a tempo
track, then one track per layer) once the engine has stopped. Its tempo map has one tempo per
constant-tempo span of the grid, chosen so that the file's time at every span boundary equals the
audio's to within a microsecond, so beats in a DAW land where the rendered audio has them.

Channels (1-based, as users count them): lead 1, bass 2, pad 3, arp 4, drums 10.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import logging
import threading
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from daemon.clock import BarGrid, MusicClock, ScheduledNote
from daemon.messages import LAYER_ORDER, Layer, Plan
from daemon.outputs.base import Output, Stage

log = logging.getLogger(__name__)

# 0-based MIDI channels per layer; General MIDI puts drums on channel 10 (index 9).
CHANNELS: dict[Layer, int] = {
    Layer.LEAD: 0,
    Layer.BASS: 1,
    Layer.PAD: 2,
    Layer.ARP: 3,
    Layer.STINGER: 4,
    Layer.DRUMS: 9,
}
# General MIDI programs (0-based) closest to each sound, so a GM synth on the port or a DAW
# opening the file plays something like what moodscore plays.
PROGRAMS: dict[tuple[Layer, str], int] = {
    (Layer.LEAD, "saw"): 81,  # Lead 2 (sawtooth)
    (Layer.LEAD, "square"): 80,  # Lead 1 (square)
    (Layer.LEAD, "flute"): 73,  # Flute
    (Layer.LEAD, "bell"): 4,  # Electric Piano 1
    (Layer.BASS, "saw"): 38,  # Synth Bass 1
    (Layer.BASS, "round"): 33,  # Electric Bass (finger)
    (Layer.BASS, "pluck"): 32,  # Acoustic Bass
    (Layer.PAD, "strings"): 50,  # Synth Strings 1
    (Layer.PAD, "organ"): 16,  # Drawbar Organ
    (Layer.PAD, "glass"): 92,  # Pad 5 (bowed glass)
    (Layer.ARP, "pluck"): 45,  # Pizzicato Strings
    (Layer.ARP, "bell"): 10,  # Music Box
    (Layer.ARP, "marimba"): 12,  # Marimba
    (Layer.STINGER, "stab"): 61,  # Brass Section
}
TICKS_PER_BEAT = 480
_KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


def program_changes(plan: Plan) -> dict[Layer, int]:
    """The GM program of each pitched layer for the sounds of ``plan``'s scene preset."""
    pitched = (Layer.LEAD, Layer.BASS, Layer.PAD, Layer.ARP, Layer.STINGER)
    return {layer: PROGRAMS.get((layer, plan.preset.sound(layer)), 0) for layer in pitched}


def key_signature(plan: Plan) -> str:
    """The key as mido's key_signature meta message spells it, e.g. ``"D"`` or ``"Bm"``."""
    if plan.mode == "minor":
        return _MINOR_KEY_NAMES[plan.tonic] + "m"
    return _KEY_NAMES[plan.tonic]


# --------------------------------------------------------------------------- the file


class _Notes:
    """Every note of a session as columns of machine numbers, about 35 bytes a note where a
    :class:`ScheduledNote` with its :class:`NoteEvent` takes ten times that: a daemon recording
    MIDI all day keeps its size. Rows are ``(bar, onset, end, layer, pitch, velocity, offset)``.
    """

    _LAYERS = tuple(Layer)

    def __init__(self) -> None:
        self.bar = array("q")
        self.onset = array("q")
        self.end = array("q")
        self.offset = array("d")
        self.layer = array("B")
        self.pitch = array("B")
        self.velocity = array("B")

    def __len__(self) -> int:
        return len(self.bar)

    def extend(self, notes: Iterable[ScheduledNote]) -> None:
        for scheduled in notes:
            note = scheduled.note
            self.bar.append(scheduled.bar)
            self.onset.append(scheduled.onset)
            self.end.append(scheduled.end)
            self.offset.append(note.offset)
            self.layer.append(self._LAYERS.index(note.layer))
            self.pitch.append(note.pitch)
            self.velocity.append(note.velocity)

    def withdraw(self, bar: int, from_sample: int) -> None:
        """Drop ``bar``'s notes from ``from_sample`` on, stingers apart (a patch plays them again).
        Only the tail is looked at: the patched bar is the latest or the one before."""
        first = len(self.bar)
        while first > 0 and self.bar[first - 1] >= bar - 1:
            first -= 1
        kept = [
            row
            for row in self.rows(first)
            if row[0] != bar or row[1] < from_sample or row[3] is Layer.STINGER
        ]
        for column in self._columns():
            del column[first:]
        for row in kept:
            self._append(row)

    def rows(self, first: int = 0) -> Iterator[_NoteRow]:
        layers = self._LAYERS
        for i in range(first, len(self.bar)):
            yield (
                self.bar[i], self.onset[i], self.end[i], layers[self.layer[i]],
                self.pitch[i], self.velocity[i], self.offset[i],
            )  # fmt: skip

    def copy(self) -> _Notes:
        copied = _Notes()
        for mine, theirs in zip(self._columns(), copied._columns(), strict=True):
            theirs.extend(mine)
        return copied

    def _columns(self) -> tuple[array[Any], ...]:
        return (self.bar, self.onset, self.end, self.offset, self.layer, self.pitch, self.velocity)

    def _append(self, row: _NoteRow) -> None:
        bar, onset, end, layer, pitch, velocity, offset = row
        self.bar.append(bar)
        self.onset.append(onset)
        self.end.append(end)
        self.offset.append(offset)
        self.layer.append(self._LAYERS.index(layer))
        self.pitch.append(pitch)
        self.velocity.append(velocity)


# (bar, onset sample, note-off sample, layer, pitch, velocity, offset in beats from the downbeat)
_NoteRow = tuple[int, int, int, Layer, int, int, float]


def _note_rows(notes: Iterable[ScheduledNote]) -> Iterator[_NoteRow]:
    for scheduled in notes:
        note = scheduled.note
        yield (
            scheduled.bar, scheduled.onset, scheduled.end, note.layer, note.pitch, note.velocity,
            note.offset,
        )  # fmt: skip


class MidiFileOutput(Output):
    """Records the performance and writes it as a Standard MIDI File (type 1) once the engine
    has stopped (notes cut at the end of the audio).

    Parameters
    ----------
    path : where the file goes (its folder is made before the music starts).
    ticks_per_beat : the file's time resolution.

    Attributes
    ----------
    written : the path once the file was written; None while running, or when nothing played.
    """

    stage = Stage.RECORDING
    name = "MIDI file"

    def __init__(self, path: Path, *, ticks_per_beat: int = TICKS_PER_BEAT) -> None:
        self.path = Path(path)
        self.ticks_per_beat = ticks_per_beat
        self.written: Path | None = None
        self._lock = threading.Lock()
        self._grids: list[BarGrid] = []
        self._notes = _Notes()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self._on_grid)
        clock.add_note_listener(self._on_notes)

    def _on_grid(self, grid: BarGrid) -> None:
        with self._lock:  # the audio thread: an append (a patch also drops what it replaces)
            if self._grids and grid.plan.preset == self._grids[-1].plan.preset:
                # From an engine process each grid's plan is a copy of its own: one preset
                # object for the run, not one per bar.
                plan = dataclasses.replace(grid.plan, preset=self._grids[-1].plan.preset)
                grid = dataclasses.replace(grid, plan=plan)
            self._grids.append(grid)
            if grid.patched_from is not None:
                self._notes.withdraw(grid.bar, grid.sample_at(grid.patched_from))

    def _on_notes(self, notes: Sequence[ScheduledNote]) -> None:
        with self._lock:
            self._notes.extend(notes)

    async def _aclose(self) -> None:
        end_time = self.clock.audio_time
        self.written = await asyncio.to_thread(self.write, end_time=end_time)
        if self.written is not None:
            log.info("MIDI: %s", self.written)

    def write(self, *, end_time: float | None = None) -> Path | None:
        """Write the file now; notes are cut at ``end_time`` (seconds of audio) when given.

        Returns the path, or None when nothing was played (no file is written then).
        """
        with self._lock:
            grids, notes = list(self._grids), self._notes.copy()
        if not grids:
            return None
        midi = _midi_file(
            grids, notes.rows(), end_time=end_time, ticks_per_beat=self.ticks_per_beat
        )
        midi.save(str(self.path))
        return self.path


class _TempoMap:
    """Audio samples <-> beats over a session's grids, and the tempo events that reproduce them."""

    def __init__(self, grids: Sequence[BarGrid]) -> None:
        self.grids = sorted(grids, key=lambda g: g.start)
        self._starts = [g.start for g in self.grids]
        self.sample_rate = self.grids[0].sample_rate

    def beat_at_sample(self, sample: int) -> float:
        """Global beat position of an absolute sample (linear within a constant-tempo span)."""
        i = max(bisect.bisect_right(self._starts, sample) - 1, 0)
        grid = self.grids[i]
        for first, last, _ in grid.tempo_segments():
            s0, s1 = grid.sample_at(first), grid.sample_at(last)
            if sample < s1 or last >= grid.beats:
                fraction = (sample - s0) / max(s1 - s0, 1)
                return grid.first_beat + first + fraction * (last - first)
        return float(grid.first_beat + grid.beats)

    def tempo_events(self, ticks_per_beat: int) -> list[tuple[int, int]]:
        """``(tick, microseconds per beat)`` changes; the file's clock meets the audio's at every
        span boundary to within a microsecond (each tempo absorbs the rounding of the last)."""
        events: list[tuple[int, int]] = []
        file_us = self.grids[0].start / self.sample_rate * 1e6
        current: int | None = None
        for grid in self.grids:
            for first, last, _ in grid.tempo_segments():
                beats = last - first
                target_us = grid.sample_at(last) / self.sample_rate * 1e6
                tempo = max(1, min(round((target_us - file_us) / beats), 0xFFFFFF))
                if current is not None and abs(file_us + current * beats - target_us) < 20.0:
                    tempo = current  # still within 20 us: no event needed
                if tempo != current:
                    tick = round((grid.first_beat + first) * ticks_per_beat)
                    events.append((tick, tempo))
                    current = tempo
                file_us += tempo * beats
        return events


def build_midi_file(
    grids: Sequence[BarGrid],
    notes: Iterable[ScheduledNote],
    *,
    end_time: float | None = None,
    ticks_per_beat: int = TICKS_PER_BEAT,
) -> Any:
    """The session as a ``mido.MidiFile`` (type 1): track 0 holds tempo, metre, key and scene
    markers; then one track per layer, in the layers' order, each on its own channel."""
    return _midi_file(grids, _note_rows(notes), end_time=end_time, ticks_per_beat=ticks_per_beat)


def _midi_file(
    grids: Sequence[BarGrid],
    notes: Iterable[_NoteRow],
    *,
    end_time: float | None,
    ticks_per_beat: int,
) -> Any:
    import mido

    # Patched grids (a reaction that changed a bar from a beat on) change the plan, not time.
    tempo_map = _TempoMap([g for g in grids if g.patched_from is None])
    sample_rate = tempo_map.sample_rate
    end_sample = None if end_time is None else round(end_time * sample_rate)
    by_bar = {g.bar: g for g in tempo_map.grids}

    conductor: list[tuple[int, int, Any]] = []  # (tick, order, message)
    for tick, tempo in tempo_map.tempo_events(ticks_per_beat):
        conductor.append((tick, 1, mido.MetaMessage("set_tempo", tempo=tempo)))
    changes = sorted(
        (
            (round((g.first_beat + (g.patched_from or 0.0)) * ticks_per_beat), g)
            for g in grids
            if g.patched_from is None or g.bar in by_bar
        ),
        key=lambda change: change[0],
    )
    previous: Plan | None = None
    programs: list[tuple[int, dict[Layer, int]]] = []
    for tick, grid in changes:
        plan = grid.plan
        if grid.patched_from is None and (
            previous is None or plan.beats_per_bar != previous.beats_per_bar
        ):
            meta = mido.MetaMessage("time_signature", numerator=plan.beats_per_bar, denominator=4)
            conductor.append((tick, 0, meta))
        if previous is None or (plan.tonic, plan.mode) != (previous.tonic, previous.mode):
            meta = mido.MetaMessage("key_signature", key=key_signature(plan))
            conductor.append((tick, 2, meta))
        chosen = program_changes(plan)
        if previous is None or plan.scene != previous.scene:
            conductor.append((tick, 3, mido.MetaMessage("marker", text=f"scene: {plan.scene}")))
        if previous is None or plan.scene != previous.scene or chosen != programs[-1][1]:
            # A new scene, or its preset edited while the music played.
            programs.append((tick, chosen))
        previous = plan
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    # The tempo track lasts as long as the audio (its reverb tail included), so the file and a
    # recording of the same session line up end to end in a DAW.
    end_tick = None
    if end_sample is not None:
        end_tick = round(tempo_map.beat_at_sample(end_sample) * ticks_per_beat)
    midi.tracks.append(_track("moodscore", conductor, end_tick=end_tick))

    per_layer: dict[Layer, list[tuple[int, int, int, int]]] = {
        layer: [] for layer in (*LAYER_ORDER, Layer.STINGER)
    }
    for bar, onset, end, layer, pitch, velocity, offset in notes:
        bar_grid = by_bar.get(bar)
        if bar_grid is None:
            continue
        if end_sample is not None:
            if onset >= end_sample:
                continue
            end = min(end, end_sample)
        on = round((bar_grid.first_beat + max(offset, 0.0)) * ticks_per_beat)
        off = max(round(tempo_map.beat_at_sample(end) * ticks_per_beat), on + 1)
        per_layer[layer].append((on, off, pitch, velocity))
    # A stinger track only when stingers played.
    tracks = (*LAYER_ORDER, Layer.STINGER) if per_layer[Layer.STINGER] else LAYER_ORDER
    for layer in tracks:
        channel = CHANNELS[layer]
        events: list[tuple[int, int, Any]] = []
        if layer is not Layer.DRUMS:
            for tick, chosen in programs:
                msg = mido.Message("program_change", channel=channel, program=chosen[layer])
                events.append((tick, 0, msg))
        for on, off, pitch, velocity in _untangle(per_layer[layer]):
            events.append((off, 1, mido.Message("note_off", channel=channel, note=pitch)))
            events.append(
                (on, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity))
            )
        midi.tracks.append(_track(layer.value, events))
    return midi


def _untangle(notes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Cut a note short where the same pitch starts again before it ends: on one channel a
    second note-on of a sounding pitch would otherwise be ended by the first one's note-off."""
    result = []
    notes = sorted(notes, key=lambda n: (n[2], n[0]))
    for pitch, group in itertools.groupby(notes, key=lambda n: n[2]):
        same = list(group)
        for i, (on, off, _, velocity) in enumerate(same):
            if i + 1 < len(same):
                off = min(off, same[i + 1][0])
            if off > on:
                result.append((on, off, pitch, velocity))
    return result


def _track(name: str, events: list[tuple[int, int, Any]], *, end_tick: int | None = None) -> Any:
    import mido

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name))
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    end = now if end_tick is None else max(end_tick, now)
    track.append(mido.MetaMessage("end_of_track", time=end - now))
    return track
