"""MIDI clock in: follow an outside 24 PPQN clock's tempo and its Start, Stop and Continue.

A DAW, a drum machine or a lighting desk that sends MIDI clock leads: the conductor's tempo
yields to the clock's (an internal ``follow_tempo`` command through the control router, which
re-plans the bars composed ahead, so the new tempo lands on the next bar line with the engine's
usual ramp), and Start / Continue / Stop play and stop the music at the next bar line as the
``transport`` command does. Bar lines are not moved onto the sender's: MIDI clock carries tempo
and transport, not where a bar starts.

Timing. rtmidi takes each message in the JACK (or ALSA) thread with the time it arrived and
queues it without Python; a thread of ours reads the queue every few milliseconds (the arrival
times, not the reading, time the pulses), does the arithmetic and hands anything worth saying to
the event loop with ``call_soon_threadsafe``. No rtmidi callback: JACK's process thread would
then wait for Python's GIL, and closing the port (which waits for that thread's cycle) from
Python could deadlock; here the reader stops first, then the port closes.

:class:`TempoFollower` estimates the tempo from the last pulses' arrival times (up to eight
beats) as the median pulse period over pairs half the window apart (Theil-Sen), which shrugs off
the jitter of JACK cycles (2.7 ms at 128 frames) and the bursts of a loaded machine (pulses held
back tens of ms, then delivered together). When the last beat's tempo stays more than 4 % off
the estimate for 8 pulses, the estimate starts afresh from those pulses, so a tempo change is
followed within about two and a half beats, with one new tempo rather than a glide. A new tempo
is passed on only when it moves by more than 0.4 % (each one re-plans).

Bad input. A clock outside 20-300 bpm, or one that stops (no pulse for ``timeout_s``), is one
logged line; the music plays on at its own tempo until a good clock comes again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from daemon.clock import MusicClock
from daemon.control.commands import FollowTempoCommand, TransportCommand
from daemon.control.hub import ControlHub
from daemon.errors import ConfigError, EngineError
from daemon.logs import RateLimitedLog
from daemon.outputs.base import Output, Stage
from daemon.outputs.midi_port import resolve_backend

log = logging.getLogger("moodscore.midi")

PULSES_PER_BEAT = 24
MIN_BPM = 20.0
MAX_BPM = 300.0
CLOCK, START, CONTINUE, STOP = 0xF8, 0xFA, 0xFB, 0xFC
VIRTUAL_PORT = "moodscore-clock-in"
CLIENT_NAME = "moodscore-clock-in"
_WINDOW = 8 * PULSES_PER_BEAT  # pulses the tempo is fitted over (eight beats)
_SHORT = PULSES_PER_BEAT  # pulses the short-term tempo is read from (a beat)
_JUMP = 0.04  # a short-term tempo this far from the estimate ...
_JUMP_PULSES = 8  # ... for this many pulses in a row: the tempo changed
_CLOSE_S = 3.0  # the longest the port's close is waited for
_POLL_S = 0.004  # the reader's sleep when the queue is empty
_REPORT = 0.004  # pass a new tempo on when it moved this far (relative)


class TempoFollower:
    """The tempo of a 24 PPQN clock from its pulses' arrival times (thread-free arithmetic).

    :meth:`pulse` takes each pulse's time (seconds, any origin, increasing) and returns a tempo
    to pass on (bpm), ``0.0`` when the clock went out of range (stop following), or None when
    nothing changed.
    """

    def __init__(self, *, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM) -> None:
        self.min_bpm = min_bpm
        self.max_bpm = max_bpm
        self._times: collections.deque[float] = collections.deque(maxlen=_WINDOW + 1)
        self.reported: float | None = None  # the tempo passed on last (None: not following)
        self.out_of_range: float | None = None  # the absurd tempo seen, while it lasts
        self._off = 0  # pulses in a row whose short-term tempo disagreed with the estimate
        self._absurd = 0  # pulses in a row whose short-term tempo was far out of range

    def reset(self) -> None:
        """Forget the pulses (the clock stopped or restarted); the reported tempo stands."""
        self._times.clear()

    def pulse(self, t: float) -> float | None:
        times = self._times
        if times and t - times[-1] > 60.0 / (PULSES_PER_BEAT * self.min_bpm) * 4:
            times.clear()  # a gap: pulses missing, or a clock that paused
        times.append(t)
        if len(times) <= _SHORT:
            return None
        recent = list(times)
        short = _robust_bpm(recent[-_SHORT - 1 :])
        absurd = not self.min_bpm / 2 <= short <= self.max_bpm * 2
        self._absurd = self._absurd + 1 if absurd else 0
        if self._absurd >= PULSES_PER_BEAT:
            # A beat's worth of pulses far out of range (however jittery): refuse the clock.
            return self._refuse(short)
        bpm = _robust_bpm(recent)
        self._off = self._off + 1 if abs(short - bpm) > _JUMP * bpm else 0
        if self._off >= _JUMP_PULSES:
            # The tempo changed: start afresh from the pulses that disagreed.
            for _ in range(len(times) - _JUMP_PULSES):
                times.popleft()
            self._off = 0
            return None
        if self._off or len(times) <= 2 * PULSES_PER_BEAT:
            return None  # in doubt (a change may be under way), or too few pulses to be sure
        if not self.min_bpm <= bpm <= self.max_bpm:
            return self._refuse(bpm)
        self.out_of_range = None
        if self.reported is None or abs(bpm - self.reported) > _REPORT * self.reported:
            self.reported = round(bpm, 2)
            return self.reported
        return None

    def _refuse(self, bpm: float) -> float | None:
        if self.out_of_range is None:
            self.out_of_range = bpm
            if self.reported is not None:
                self.reported = None
                return 0.0
        return None


def _robust_bpm(times: list[float]) -> float:
    """bpm of pulses at ``times``: the median seconds per pulse over pairs half the list apart
    (Theil-Sen), so a burst of pulses delivered late by a busy machine moves it little."""
    y = np.asarray(times)
    half = len(y) // 2
    seconds = float(np.median((y[half : 2 * half] - y[:half]) / half))
    return 60.0 / (PULSES_PER_BEAT * seconds) if seconds > 0 else float("inf")


def open_clock_input(port: str, backend: str) -> Any:
    """An rtmidi input taking clock messages (read with ``get_message()``): the port named
    ``port`` (exactly, or a unique case-insensitive part), or a virtual port
    ``moodscore-clock-in`` when empty.

    Raises
    ------
    EngineError
        The backend does not work here.
    ConfigError
        No input port matches ``port``; the message lists the ports there are.
    """
    import rtmidi

    module = resolve_backend(backend)
    api = rtmidi.API_UNSPECIFIED
    if module.endswith("UNIX_JACK"):
        api = rtmidi.API_UNIX_JACK
    elif module.endswith("LINUX_ALSA"):
        api = rtmidi.API_LINUX_ALSA
    try:
        midi_in = rtmidi.MidiIn(rtapi=api, name=CLIENT_NAME, queue_size_limit=4096)
        names = midi_in.get_ports()
    except Exception as exc:  # rtmidi raises SystemError, RuntimeError, OSError
        raise EngineError(
            f"MIDI clock in: backend {module} does not work here ({exc}); start a JACK server "
            "(`jackd -d dummy` needs no sound card)"
        ) from exc
    midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
    try:
        if not port:
            midi_in.open_virtual_port(VIRTUAL_PORT)
        else:
            index = _match(port, names)
            if index is None:
                available = ", ".join(repr(n) for n in names) or "none"
                raise ConfigError(
                    f"no MIDI input port {port!r} for the clock; available: {available} "
                    "(or leave midi.clock_in_port empty for a virtual port)"
                )
            midi_in.open_port(index)
    except BaseException:
        midi_in.delete()
        raise
    return midi_in


def _match(wanted: str, names: list[str]) -> int | None:
    if wanted in names:
        return names.index(wanted)
    close = [i for i, n in enumerate(names) if wanted.lower() in n.lower()]
    return close[0] if len(close) == 1 else None


class MidiClockIn(Output):
    """Follows an outside MIDI clock: tempo to the conductor, Start/Stop/Continue to the
    transport, both through the control hub (so the router applies them on the grid).

    Parameters
    ----------
    hub : the session's control hub.
    port : the input port's name (or a unique part); empty opens a virtual port.
    backend : as ``midi.backend``.
    timeout_s : no pulse for this long: stop following (the music keeps its own tempo).

    Attributes
    ----------
    pulses : clock pulses received.
    refused : times the clock was refused (out of range, or stopped).
    """

    stage = Stage.SOUND  # closed before pyo stops: nothing comes in while the music ends
    name = "MIDI clock in"

    def __init__(
        self, *, hub: ControlHub, port: str = "", backend: str = "auto", timeout_s: float = 2.0
    ) -> None:
        self.hub = hub
        self.port_name = port
        self.backend = backend
        self.timeout_s = timeout_s
        self.follower = TempoFollower()
        self.pulses = 0
        self.refused = 0
        self._input: Any = None
        self._reader: threading.Thread | None = None
        self._reading = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None
        self._t = 0.0  # seconds since the first message, from rtmidi's deltas
        self._last_pulse: float | None = None  # time.monotonic() of the last pulse
        self._trouble = RateLimitedLog(log, interval=10.0)

    def _attach(self, clock: MusicClock) -> None:
        pass  # an input: it hears the outside clock, not ours

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._input = await asyncio.to_thread(open_clock_input, self.port_name, self.backend)
        self._reading = True
        self._reader = threading.Thread(target=self._read, args=(self._input,), name=CLIENT_NAME)
        self._reader.start()
        where = self.port_name or f"virtual port {VIRTUAL_PORT!r}"
        log.info("MIDI clock in: following the clock on %s", where)
        self._watch = asyncio.create_task(self._watchdog(), name="midi-clock-in")

    async def _aclose(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        self._reading = False
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.join)
        midi_in, self._input = self._input, None
        if midi_in is not None:
            await _close_input(midi_in)

    # -- the reader thread: arithmetic, and a hand-off to the loop ----------------------------

    def _read(self, midi_in: Any) -> None:
        while self._reading:
            event = midi_in.get_message()
            if event is None:
                time.sleep(_POLL_S)
                continue
            try:
                self._on_message(event)
            except Exception:
                self._trouble.warning("MIDI clock in: a message failed", exc_info=True)

    def _on_message(self, event: Any) -> None:
        message, delta = event
        self._t += delta
        if not message:
            return
        status = message[0]
        if status == CLOCK:
            self.pulses += 1
            self._last_pulse = time.monotonic()
            was_absurd = self.follower.out_of_range is not None
            tempo = self.follower.pulse(self._t)
            if tempo is not None:
                self._post(self._follow, tempo or None)
            if not was_absurd and self.follower.out_of_range is not None:
                self._post(self._refuse_range, self.follower.out_of_range)
        elif status in (START, CONTINUE):
            self._post(self._transport, "play", "Start" if status == START else "Continue")
        elif status == STOP:
            self._post(self._transport, "stop", "Stop")

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to tell
            loop.call_soon_threadsafe(fn, *args)

    # -- the event loop -----------------------------------------------------------------------

    def _follow(self, bpm: float | None) -> None:
        if bpm is not None:
            log.info("MIDI clock in: %.1f bpm", bpm)
        self.hub.submit(FollowTempoCommand(bpm=bpm))

    def _transport(self, action: str, what: str) -> None:
        log.info("MIDI clock in: %s", what)
        self.hub.submit(TransportCommand(action=action))  # type: ignore[arg-type]

    def _refuse_range(self, bpm: float) -> None:
        self.refused += 1
        self._trouble.warning(
            "MIDI clock in: a clock at %.0f bpm is outside %g-%g bpm; ignored, the music keeps "
            "its own tempo",
            bpm,
            MIN_BPM,
            MAX_BPM,
        )

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.timeout_s / 4))
            last = self._last_pulse
            if last is None or self.follower.reported is None:
                continue
            if time.monotonic() - last > self.timeout_s:
                self.follower.reported = None
                self.follower.reset()
                self.refused += 1
                log.warning(
                    "MIDI clock in: no clock for %.1f s; the music keeps its own tempo until "
                    "it comes back",
                    self.timeout_s,
                )
                self.hub.submit(FollowTempoCommand(bpm=None))


async def _close_input(midi_in: Any) -> None:
    """Close the port off the loop (the JACK client's close waits for its process cycle), in a
    daemon thread waited on for at most :data:`_CLOSE_S`: a JACK server that stopped answering
    must not hold up the shutdown (the port then goes with the process)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def closed() -> None:
        if not done.done():
            done.set_result(None)

    def close() -> None:
        try:
            midi_in.close_port()
            midi_in.delete()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop went first
                loop.call_soon_threadsafe(closed)

    threading.Thread(target=close, name="moodscore-clock-in-close", daemon=True).start()
    try:
        await asyncio.wait_for(asyncio.shield(done), _CLOSE_S)
    except TimeoutError:
        log.warning("MIDI clock in: the JACK port did not close within %g s; left open", _CLOSE_S)


__all__ = ["MidiClockIn", "TempoFollower", "open_clock_input"]
