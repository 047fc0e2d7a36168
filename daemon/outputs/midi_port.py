"""MIDI out, live: the performance mirrored note for note to a port, with MIDI clock.

:class:`MidiPortOutput` sends to a named port (or a virtual one) through mido. It listens to the
clock's grids and notes and schedules every message with the clock's ``call_at`` (the clock's own
thread waits for each message's wall-clock time, so a busy event loop cannot delay MIDI): notes,
note-offs, program changes when a scene or an edited preset changes the sounds, and, with
``clock``, MIDI clock at 24 PPQN placed on the beat grid, Song Position Pointer and Start at the
first bar, and the transport: Stop at the bar a transport stop silences, Song Position Pointer and
Continue at the bar it plays again. Closing it is the panic, before pyo stops: pending messages
are dropped, every sounding note is released, each channel gets All Notes Off, and the clock gets
Stop.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from daemon.clock import BarGrid, MusicClock, ScheduledNote
from daemon.errors import ConfigError, EngineError
from daemon.messages import Layer
from daemon.outputs.base import Output, Stage
from daemon.outputs.midi import CHANNELS, program_changes

log = logging.getLogger(__name__)

CLOCKS_PER_BEAT = 24  # MIDI clock: 24 pulses per quarter note
SPP_MAX = 16383  # Song Position Pointer is 14 bits of 16th notes
_FLUSH_S = 0.03  # after the panic, before the port closes

BACKENDS = {
    "jack": "mido.backends.rtmidi/UNIX_JACK",
    "alsa": "mido.backends.rtmidi/LINUX_ALSA",
}
VIRTUAL_PORT = "moodscore"
CLIENT_NAME = "moodscore-midi"  # the JACK/ALSA client (pyo's JACK client is "moodscore")


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


class MidiPortOutput(Output):
    """Mirrors the performance to a MIDI port in step with the audio, with MIDI clock.

    Parameters
    ----------
    port : an open mido output port (see :func:`open_port`), or anything with ``send(msg)``
        and ``close()``.
    clock : send MIDI clock (24 PPQN), Song Position Pointer, Start and Stop.
    delay_s : send every message this much later (positive) or earlier (negative) than the
        audio, to match a receiver's latency (``midi.delay_ms``; the session attaches the output
        to the clock seen that much later).

    Attributes
    ----------
    sent : messages sent so far.
    """

    stage = Stage.SOUND
    name = "MIDI port"
    delay_section = "midi"

    def __init__(self, *, port: Any, clock: bool = True, delay_s: float = 0.0) -> None:
        self.port = port
        self.send_clock = clock
        self.delay_s = delay_s
        self.sent = 0
        # Sends happen on the clock's thread, the panic on another: one at a time, and none
        # after the panic began.
        self._lock = threading.Lock()
        self._stopped = False
        self._sounding: collections.Counter[tuple[int, int]] = collections.Counter()
        self._channels: set[int] = set()
        self._clock_started = False
        self._transport_playing = True
        self._scene: str | None = None
        self._programs: dict[Layer, int] = {}
        # Notes a reaction withdrew before they sounded (ids), and the notes not sounded yet
        # per bar: (id, onset time, patch-proof), so a patch knows what to withdraw.
        self._withdrawn: set[int] = set()
        self._pending: dict[int, list[tuple[int, float, bool]]] = {}
        self._ids = itertools.count()

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self._on_grid)
        clock.add_note_listener(self._on_notes)

    # -- the clock's audio thread: schedule and return -------------------------------------

    def _schedule(self, events: list[tuple[float, Any, int]]) -> None:
        """One call on the clock per instant; at one instant note-offs go first, so a repeated
        pitch sounds again. Each message carries the id of its note (-1: not a note)."""
        by_time: dict[float, list[tuple[Any, int]]] = {}
        for audio_time, message, note_id in events:
            by_time.setdefault(audio_time, []).append((message, note_id))
        for audio_time, messages in by_time.items():
            messages.sort(key=lambda m: m[0].type != "note_off")
            self.clock.call_at(audio_time, functools.partial(self._send_all, messages))

    def _on_grid(self, grid: BarGrid) -> None:
        """The bar's clock pulses (and Start, program changes)."""
        import mido

        events: list[tuple[float, Any, int]] = []
        start = grid.time_at(0)
        if grid.patched_from is not None:
            # A reaction changed the bar from a beat on: its notes from there give way to the
            # patch's (which come next), its sounds may change there. Stingers stay.
            start = grid.time_at(grid.patched_from)
            for note_id, onset, proof in self._pending.get(grid.bar, []):
                if onset >= start and not proof:
                    self._withdrawn.add(note_id)
        for bar in [b for b in self._pending if b < grid.bar - 2]:
            # Long sounded: forget them (and that any was withdrawn).
            self._withdrawn.difference_update(note_id for note_id, _, _ in self._pending.pop(bar))
        chosen = program_changes(grid.plan)
        if grid.plan.scene != self._scene or chosen != self._programs:
            # A new scene, or its preset edited while the music plays.
            self._scene, self._programs = grid.plan.scene, chosen
            for layer, program in chosen.items():
                message = mido.Message("program_change", channel=CHANNELS[layer], program=program)
                events.append((start - 0.002, message, -1))
        if grid.patched_from is not None:
            self._schedule(events)
            return
        if self.send_clock:
            # The transport of the bar (the engine decides it as the bar begins): Start at the
            # first bar, Stop at the bar a transport stop silences, Song Position and Continue
            # at the bar it plays again. The clock pulses run on while stopped, as the music's
            # clock does, so a follower keeps the tempo.
            playing = self.clock.playing
            position = min(grid.first_beat * 4, SPP_MAX)
            if not self._clock_started:
                self._clock_started = True
                self._transport_playing = True
                events.append((start - 0.002, mido.Message("songpos", pos=position), -1))
                events.append(
                    (start - 0.001, mido.Message("start" if position == 0 else "continue"), -1)
                )
            if playing != self._transport_playing:
                self._transport_playing = playing
                if playing:
                    events.append((start - 0.002, mido.Message("songpos", pos=position), -1))
                    events.append((start - 0.001, mido.Message("continue"), -1))
                else:
                    events.append((start - 0.001, mido.Message("stop"), -1))
            pulse = mido.Message("clock")
            for k in range(grid.beats * CLOCKS_PER_BEAT):
                events.append((grid.time_at(k / CLOCKS_PER_BEAT), pulse, -1))
        self._schedule(events)

    def _on_notes(self, notes: Sequence[ScheduledNote]) -> None:
        """The bar's note-ons and note-offs at their audio times."""
        import mido

        events: list[tuple[float, Any, int]] = []
        for scheduled in notes:
            note = scheduled.note
            channel = CHANNELS[note.layer]
            note_id = next(self._ids)
            proof = note.layer is Layer.STINGER
            self._pending.setdefault(scheduled.bar, []).append((note_id, scheduled.time, proof))
            on = mido.Message("note_on", channel=channel, note=note.pitch, velocity=note.velocity)
            events.append((scheduled.time, on, note_id))
            off = mido.Message("note_off", channel=channel, note=note.pitch)
            events.append((scheduled.end_time, off, note_id))
        self._schedule(events)

    # -- the clock's thread: send ---------------------------------------------------------------

    def _send_all(self, messages: list[tuple[Any, int]]) -> None:
        with self._lock:
            if self._stopped:
                return
            for message, note_id in messages:
                if note_id in self._withdrawn:
                    continue
                self._send(message)

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

    # -- shutdown -------------------------------------------------------------------------------

    async def _aclose(self) -> None:
        await asyncio.to_thread(self.panic)

    def panic(self) -> None:
        """Drop what is pending, release sounding notes, All Notes Off on every channel used,
        Stop the clock, close the port. Idempotent; any thread."""
        import mido

        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            try:
                if self.send_clock and self._clock_started and self._transport_playing:
                    self.port.send(mido.Message("stop"))
                for channel, note in sorted(self._sounding):
                    self.port.send(mido.Message("note_off", channel=channel, note=note))
                self._sounding.clear()
                for channel in sorted(self._channels | set(CHANNELS.values())):
                    for control in (64, 123):  # sustain off, All Notes Off
                        self.port.send(
                            mido.Message(
                                "control_change", channel=channel, control=control, value=0
                            )
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
