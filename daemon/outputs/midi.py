"""MIDI out: the performance mirrored note for note, live to a port with MIDI clock, and to a file.

Both outputs listen to the engine (``Engine.add_grid_listener``, ``Engine.add_note_listener``): at
every bar start they learn where the bar's beats fall on the sample clock (tempo ramp
included) and every note of the bar with its onset and note-off in audio time. The engine calls
them on its audio thread, so they only append to a queue and return.

- :class:`MidiPortOutput` sends to a named port (or a virtual one) through mido, on a thread of its
  own that waits for each event's wall-clock time (``Engine.wall_time`` maps audio time to the
  clock the audio is heard on): notes, note-offs, program changes when a scene changes the sounds,
  and, with ``clock``, MIDI clock at 24 PPQN placed on the beat grid, Song Position Pointer and
  Start at the first bar and Stop at the end. :meth:`MidiPortOutput.close` is the panic: pending
  events are dropped, every sounding note is released and each channel gets All Notes Off.
- :class:`MidiFileWriter` keeps the whole session and writes a Standard MIDI File (type 1: a tempo
  track, then one track per layer) when closed. Its tempo map has one tempo per constant-tempo
  span of the grid, chosen so that the file's time at every span boundary equals the audio's to
  within a microsecond, so beats in a DAW land where the rendered audio has them.

Channels (1-based, as users count them): lead 1, bass 2, pad 3, arp 4, drums 10.
"""

from __future__ import annotations

import bisect
import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.engine.sequencer import BarGrid, ScheduledNote
from daemon.errors import ConfigError, EngineError
from daemon.messages import LAYER_ORDER, Layer, Plan

log = logging.getLogger(__name__)

# 0-based MIDI channels per layer; General MIDI puts drums on channel 10 (index 9).
CHANNELS: dict[Layer, int] = {
    Layer.LEAD: 0,
    Layer.BASS: 1,
    Layer.PAD: 2,
    Layer.ARP: 3,
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
}
TICKS_PER_BEAT = 480
CLOCKS_PER_BEAT = 24  # MIDI clock: 24 pulses per quarter note
SPP_MAX = 16383  # Song Position Pointer is 14 bits of 16th notes
_FLUSH_S = 0.03  # after the panic, before the port closes

BACKENDS = {
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
}
VIRTUAL_PORT = "moodscore"
CLIENT_NAME = "moodscore-midi"  # the JACK/ALSA client (pyo's JACK client is "moodscore")

_KEY_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "Bb", "B")


class GridSource(Protocol):
    """What a MIDI output listens to: the engine (or a test's stand-in)."""

    def add_grid_listener(self, fn: Callable[[BarGrid], None]) -> None: ...

    def add_note_listener(self, fn: Callable[[Sequence[ScheduledNote]], None]) -> None: ...


def program_changes(plan: Plan) -> dict[Layer, int]:
    """The GM program of each pitched layer for the sounds of ``plan``'s scene preset."""
    pitched = (Layer.LEAD, Layer.BASS, Layer.PAD, Layer.ARP)
    return {layer: PROGRAMS.get((layer, plan.preset.sound(layer)), 0) for layer in pitched}


def key_signature(plan: Plan) -> str:
    """The key as mido's key_signature meta message spells it, e.g. ``"D"`` or ``"Bm"``."""
    if plan.mode == "minor":
        return _MINOR_KEY_NAMES[plan.tonic] + "m"
    return _KEY_NAMES[plan.tonic]


# --------------------------------------------------------------------------- the file


@dataclass
class _Recording:
    grids: list[BarGrid] = field(default_factory=list)
    notes: list[ScheduledNote] = field(default_factory=list)


class MidiFileWriter:
    """Records the performance and writes it as a Standard MIDI File (type 1) on :meth:`close`.

    Parameters
    ----------
    path : where the file goes (written on close; its folder must exist).
    ticks_per_beat : the file's time resolution.
    """

    def __init__(self, path: Path, *, ticks_per_beat: int = TICKS_PER_BEAT) -> None:
        self.path = path
        self.ticks_per_beat = ticks_per_beat
        self._lock = threading.Lock()
        self._recording = _Recording()
        self._closed = False

    def attach(self, engine: GridSource) -> None:
        """Listen to ``engine``'s bars and notes."""
        engine.add_grid_listener(self.on_grid)
        engine.add_note_listener(self.on_notes)

    def on_grid(self, grid: BarGrid) -> None:
        """Engine thread: remember a bar's grid (an append)."""
        with self._lock:
            self._recording.grids.append(grid)

    def on_notes(self, notes: Sequence[ScheduledNote]) -> None:
        """Engine thread: remember a bar's notes (an append)."""
        with self._lock:
            self._recording.notes.extend(notes)

    def close(self, *, end_time: float | None = None) -> Path | None:
        """Write the file; notes are cut at ``end_time`` (seconds of audio) when given.

        Returns the path, or None when nothing was played (no file is written then). A second
        call does nothing.
        """
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            recording = self._recording
        if not recording.grids:
            return None
        midi = build_midi_file(
            recording.grids,
            recording.notes,
            end_time=end_time,
            ticks_per_beat=self.ticks_per_beat,
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
    import mido

    tempo_map = _TempoMap(grids)
    sample_rate = tempo_map.sample_rate
    end_sample = None if end_time is None else round(end_time * sample_rate)
    by_bar = {g.bar: g for g in tempo_map.grids}

    conductor: list[tuple[int, int, Any]] = []  # (tick, order, message)
    for tick, tempo in tempo_map.tempo_events(ticks_per_beat):
        conductor.append((tick, 1, mido.MetaMessage("set_tempo", tempo=tempo)))
    previous: Plan | None = None
    programs: list[tuple[int, dict[Layer, int]]] = []
    for grid in tempo_map.grids:
        plan = grid.plan
        tick = grid.first_beat * ticks_per_beat
        if previous is None or plan.beats_per_bar != previous.beats_per_bar:
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

    per_layer: dict[Layer, list[tuple[int, int, int, int]]] = {layer: [] for layer in LAYER_ORDER}
    for scheduled in notes:
        bar_grid = by_bar.get(scheduled.bar)
        if bar_grid is None:
            continue
        end = scheduled.end if end_sample is None else min(scheduled.end, end_sample)
        if end_sample is not None and scheduled.onset >= end_sample:
            continue
        note = scheduled.note
        on = round((bar_grid.first_beat + max(note.offset, 0.0)) * ticks_per_beat)
        off = max(round(tempo_map.beat_at_sample(end) * ticks_per_beat), on + 1)
        per_layer[note.layer].append((on, off, note.pitch, note.velocity))
    for layer in LAYER_ORDER:
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


# --------------------------------------------------------------------------- the port


def resolve_backend(name: str) -> str:
    """The mido backend module string for ``midi.backend``: ``auto`` (JACK when a JACK server
    runs, else rtmidi's default, ALSA on Linux), ``jack``, ``alsa``, or a mido backend string
    such as ``mido.backends.rtmidi/UNIX_JACK``.

    Raises
    ------
    ConfigError
        The name is none of those.
    """
    if name == "auto":
        from daemon.engine.backends import jack_running

        return BACKENDS["jack"] if jack_running() else "mido.backends.rtmidi"
    if name in BACKENDS:
        return BACKENDS[name]
    if name.startswith("mido.backends."):
        return name
    raise ConfigError(
        f"unknown MIDI backend {name!r}; use auto, jack, alsa or a mido backend such as "
        "mido.backends.rtmidi/UNIX_JACK"
    )


def open_port(port: str, backend: str) -> Any:
    """Open a mido output port.

    Parameters
    ----------
    port : a port name, matched exactly or as a unique case-insensitive part of a name; empty
        for a virtual port called ``moodscore`` that other programs connect to.
    backend : as for :func:`resolve_backend`.

    Raises
    ------
    EngineError
        The backend does not work here (e.g. ALSA without ``/dev/snd/seq``).
    ConfigError
        No output port matches ``port``; the message lists the ports there are.
    """
    import mido

    module = resolve_backend(backend)
    try:
        mido_backend = mido.Backend(module, load=True)
        if not port:
            return mido_backend.open_output(VIRTUAL_PORT, virtual=True, client_name=CLIENT_NAME)
        names = list(mido_backend.get_output_names())
    except Exception as exc:  # rtmidi raises SystemError, RuntimeError, OSError, ImportError
        if "JACK" in module:
            hint = "start a JACK server (`jackd -d dummy` needs no sound card)"
        elif "ALSA" in module or module == "mido.backends.rtmidi":
            hint = "start a JACK server and use --midi-backend jack"
        else:
            hint = "check that backend is installed"
        raise EngineError(f"MIDI backend {module} does not work here ({exc}); {hint}") from exc
    chosen = _match_port(port, names)
    if chosen is None:
        available = ", ".join(repr(n) for n in names) or "none"
        raise ConfigError(
            f"no MIDI output port {port!r} on {module}; available: {available} "
            "(or leave midi.port empty for a virtual port)"
        )
    try:
        return mido_backend.open_output(chosen)
    except Exception as exc:
        raise EngineError(f"could not open MIDI port {chosen!r}: {exc}") from exc


def _match_port(wanted: str, names: Sequence[str]) -> str | None:
    if wanted in names:
        return wanted
    close = [n for n in names if wanted.lower() in n.lower()]
    return close[0] if len(close) == 1 else None


class MidiPortOutput:
    """Mirrors the performance to a MIDI port in step with the audio, with MIDI clock.

    Parameters
    ----------
    port : an open mido output port (see :func:`open_port`), or anything with ``send(msg)``
        and ``close()``.
    wall_time : maps audio time to the ``time.perf_counter()`` at which it is heard
        (``Engine.wall_time``); None while unknown, and events wait.
    clock : send MIDI clock (24 PPQN), Song Position Pointer, Start and Stop.
    offset_s : shift every event later (positive) or earlier (negative) than the audio, to
        match a receiver's latency.
    """

    def __init__(
        self,
        *,
        port: Any,
        wall_time: Callable[[float], float | None],
        clock: bool = True,
        offset_s: float = 0.0,
    ) -> None:
        self.port = port
        self.clock = clock
        self.offset_s = offset_s
        self.sent = 0
        self.late = 0  # events sent more than 5 ms after their time
        self._wall_time = wall_time
        self._inbox: collections.deque[tuple[float, int, Any]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._seq = itertools.count()
        self._sounding: collections.Counter[tuple[int, int]] = collections.Counter()
        self._channels: set[int] = set()
        self._clock_started = False
        self._scene: str | None = None
        self._programs: dict[Layer, int] = {}
        self._thread = threading.Thread(target=self._run, name="moodscore-midi", daemon=True)
        self._thread.start()

    def attach(self, engine: GridSource) -> None:
        """Listen to ``engine``'s bars and notes."""
        engine.add_grid_listener(self.on_grid)
        engine.add_note_listener(self.on_notes)

    # -- engine thread: append and return ---------------------------------------------------

    def _push(self, audio_time: float, message: Any) -> None:
        self._inbox.append((audio_time, next(self._seq), message))

    def on_grid(self, grid: BarGrid) -> None:
        """Engine thread: queue the bar's clock pulses (and Start, program changes)."""
        import mido

        start = grid.time_at(0)
        chosen = program_changes(grid.plan)
        if grid.plan.scene != self._scene or chosen != self._programs:
            # A new scene, or its preset edited while the music plays.
            self._scene, self._programs = grid.plan.scene, chosen
            for layer, program in chosen.items():
                channel = CHANNELS[layer]
                self._push(
                    start - 0.002, mido.Message("program_change", channel=channel, program=program)
                )
        if self.clock:
            if not self._clock_started:
                self._clock_started = True
                position = min(grid.first_beat * 4, SPP_MAX)
                self._push(start - 0.002, mido.Message("songpos", pos=position))
                self._push(start - 0.001, mido.Message("start" if position == 0 else "continue"))
            pulse = mido.Message("clock")
            for k in range(grid.beats * CLOCKS_PER_BEAT):
                self._push(grid.time_at(k / CLOCKS_PER_BEAT), pulse)
        self._wake.set()

    def on_notes(self, notes: Sequence[ScheduledNote]) -> None:
        """Engine thread: queue the bar's note-ons and note-offs at their audio times."""
        import mido

        for scheduled in notes:
            note = scheduled.note
            channel = CHANNELS[note.layer]
            self._push(
                scheduled.time,
                mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity),
            )
            # A note-off sorts before a note-on at the same time (its sequence number is later,
            # but _run sends note-offs of a batch first).
            self._push(
                scheduled.end_time, mido.Message("note_off", channel=channel, note=note.pitch)
            )
        self._wake.set()

    # -- the sender thread ----------------------------------------------------------------------

    def _run(self) -> None:
        heap: list[tuple[float, int, Any]] = []
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                while self._inbox:
                    heapq.heappush(heap, self._inbox.popleft())
                if not heap:
                    self._wake.wait(0.25)
                    continue
                wall = self._wall_time(heap[0][0])
                if wall is None:
                    self._wake.wait(0.005)
                    continue
                delay = wall + self.offset_s - time.perf_counter()
                if delay > 0:
                    # Wakes early when the engine queues something sooner.
                    self._wake.wait(min(delay, 0.05))
                    continue
                due = [heapq.heappop(heap)]
                while heap and heap[0][0] <= due[0][0] + 1e-6:
                    due.append(heapq.heappop(heap))
                if delay < -0.005:
                    self.late += len(due)
                # At one instant: note-offs before note-ons, so a repeated pitch sounds again.
                for _, _, message in sorted(due, key=lambda e: e[2].type != "note_off"):
                    self._send(message)
        except Exception:
            log.exception("the MIDI sender failed; MIDI output stopped")

    def _send(self, message: Any) -> None:
        if message.type == "note_on":
            key = (message.channel, message.note)
            if self._sounding[key]:
                # The same pitch again while it sounds: strike it anew. It ends with the last
                # of its note-offs.
                self.port.send(message.copy(type="note_off", velocity=0))
            self._sounding[key] += 1
            self._channels.add(message.channel)
        elif message.type == "note_off":
            key = (message.channel, message.note)
            if self._sounding[key] == 0:
                return
            self._sounding[key] -= 1
            if self._sounding[key]:
                return
            del self._sounding[key]
        self.port.send(message)
        self.sent += 1

    # -- shutdown ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Panic and close: drop what is pending, release sounding notes, All Notes Off on every
        channel used, Stop the clock, close the port. Idempotent."""
        import mido

        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=2.0)
        try:
            if self.clock and self._clock_started:
                self.port.send(mido.Message("stop"))
            for channel, note in sorted(self._sounding):
                self.port.send(mido.Message("note_off", channel=channel, note=note))
            self._sounding.clear()
            for channel in sorted(self._channels | set(CHANNELS.values())):
                self.port.send(mido.Message("control_change", channel=channel, control=64, value=0))
                self.port.send(
                    mido.Message("control_change", channel=channel, control=123, value=0)
                )
            # JACK and ALSA ports hand messages over in their next cycle; closing at once
            # could drop the panic.
            time.sleep(_FLUSH_S)
        except Exception:
            log.warning("MIDI panic failed", exc_info=True)
        finally:
            try:
                self.port.close()
            except Exception:
                log.warning("closing the MIDI port failed", exc_info=True)
