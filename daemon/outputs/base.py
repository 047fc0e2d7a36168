"""The output seam: everything that consumes the music is an :class:`Output`.

An output attaches to the :class:`~daemon.clock.MusicClock` (it subscribes to the beats, bars,
notes or audio it needs, and schedules with ``call_at``), may start something on the event loop
(a server, a connection) and is closed once, in the session's documented shutdown order:

    stop sources -> drain the composer -> all-notes-off -> stop pyo -> finalise recordings
    -> close peers -> publish MQTT "offline"

Each output names its :class:`Stage` in that order; the session enters every output in one
``AsyncExitStack`` sorted by stage, with the engine's stop between :attr:`Stage.SOUND` and
:attr:`Stage.RECORDING`. Adding an output (OSC, Link, a beat map) is a new class here and one line
in the composition root (:mod:`daemon.app`).

The base class does the bookkeeping (as mido's ``BaseOutput`` does for ports): it remembers the
clock, refuses a second attach, and makes :meth:`Output.aclose` run once however often it is
called. Subclasses implement :meth:`Output._attach` and :meth:`Output._aclose`, and may override
:meth:`Output.start`.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from daemon.clock import MusicClock


class Stage(enum.IntEnum):
    """When an output closes, in the shutdown order (lower closes first)."""

    SOUND = 0  # while pyo still runs: MIDI all-notes-off, fades of sounds outside the band
    RECORDING = 1  # after pyo stopped: WAV, MIDI file, beat map, decoded scratch files
    PEERS = 2  # the web page's viewers and the HTTP server
    ANNOUNCE = 3  # last: MQTT "offline" (lighting rigs see the daemon go only once it has gone)


class Output:
    """A consumer of the music: attach to the clock, start, close once.

    Attributes
    ----------
    stage : when :meth:`aclose` runs in the shutdown order.
    name : a short name for logs.
    delay_s : how much later than the sound this output acts (negative: earlier), to make up
        for its own latency (lights over Wi-Fi, a browser source, a sound card); the session
        attaches it to the clock seen that much later (:func:`~daemon.clock.delayed`), so
        everything it schedules and stamps moves with it.
    delay_section : the config section whose ``delay_ms`` this output follows (``midi``,
        ``mqtt``, ``osc``, ``os2l``, ``web``); with one, the session's
        :class:`~daemon.outputs.delays.Delays` sets the delay (``engine.delay_ms`` included) and
        a ``delay`` command moves it while playing. None: ``delay_s`` alone.
    """

    stage: ClassVar[Stage] = Stage.RECORDING
    name: ClassVar[str] = "output"
    delay_s: float = 0.0
    delay_section: ClassVar[str | None] = None

    _clock: MusicClock | None = None
    _closed: bool = False

    @property
    def clock(self) -> MusicClock:
        """The clock this output is attached to."""
        if self._clock is None:
            raise RuntimeError(f"{self.name} is not attached to a clock")
        return self._clock

    def attach(self, clock: MusicClock) -> None:
        """Subscribe to ``clock`` (before the engine starts)."""
        if self._clock is not None:
            raise RuntimeError(f"{self.name} is already attached")
        self._clock = clock
        self._attach(clock)

    async def start(self) -> None:
        """Start what runs beside the music (a server, a connection) before the first sample.

        Raises a :class:`~daemon.errors.MoodscoreError` the user can act on, before any music.
        """

    async def aclose(self) -> None:
        """Finish: flush, finalise, disconnect (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._closed

    def _attach(self, clock: MusicClock) -> None:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError
