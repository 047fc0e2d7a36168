"""OSC (Open Sound Control): the music's beats, bars, phase, mood, scene and cues out; commands in.

Out, over UDP to ``osc.host:osc.port``, every address under ``osc.prefix`` (``/moodscore``):

- ``/moodscore/beat`` ``i`` beat index (from the session's start), ``i`` bar, ``i`` beat in the
  bar (0 = downbeat), ``f`` bpm: every beat;
- ``/moodscore/bar`` ``i`` bar, ``f`` bpm, ``i`` beats per bar, ``s`` scene, ``s`` key, ``s``
  mode, ``i`` layers; and ``/moodscore/mood`` ``f`` valence, ``f`` arousal: every bar;
- ``/moodscore/scene`` ``s`` scene, ``s`` previous (``""`` at the start): at the bar a new scene
  starts; ``/moodscore/transport`` ``s`` ``play``/``stop``: at the bar line the transport changes;
- ``/moodscore/phase`` ``f`` bar phase, ``f`` beat phase (each 0-1, a ramp): ``phase_hz`` times
  a second, each value for the moment its bundle's time tag names;
- ``/moodscore/cue`` ``s`` kind (rise, fall, scene), ``f`` strength, ``s`` scene: when the music
  answers a sudden change at once.

Beats and bars go out as bundles time-tagged with the moment they sound (plus ``delay_ms``), sent
``lead_ms`` ahead through the clock's ``call_at`` (on its own thread, as MIDI is, so a busy event
loop cannot make them late). Beats are scheduled from the bar's grid as the bar starts, the next
bar's downbeat with them (withdrawn if that bar is stopped), so a stall of the audio thread at a
bar line cannot make a beat late either. A receiver that honours
time tags (TouchDesigner, Max, SuperCollider) acts on the exact moment whatever the network did
on the way; one that does not acts on arrival, ``lead_ms`` early. A bundle that can no longer go
out before its moment is dropped, not sent late.

In, with ``osc.listen`` (UDP): ``/moodscore/cmd/<name> [args]`` is the command ``<name>`` of MQTT's
``cmd/<name>`` and the panel's ``/api/<name>``, through the same :class:`ControlHub` and router:
one argument is the bare payload (``/moodscore/cmd/tempo 123``, ``/moodscore/cmd/scene
"combat"``, a JSON object as a string), several are joined by commas (``/moodscore/cmd/mood 0.5
-0.2 30``), none is an empty payload (``/moodscore/cmd/stinger``). The answer goes back to the
sender as ``/moodscore/cmd/<name>/result`` ``i`` ok (1/0), ``s`` message. A packet that is not
OSC, an address outside ``/moodscore/cmd/`` or arguments of no use are refused with one logged
line (rate-limited); the music plays on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from daemon.clock import BarGrid, MusicClock, ScheduledCall
from daemon.config import OscConfig
from daemon.control.commands import COMMAND_NAMES, CommandError
from daemon.control.hub import ControlHub
from daemon.control.net import parse_host_port, unix_time
from daemon.errors import ConfigError
from daemon.logs import RateLimitedLog
from daemon.messages import KEY_NAMES, BarStarted, Beat
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.osc")

# A bundle that would arrive after its moment is dropped (lights flashing off the beat are worse
# than one missed flash).
LATE_DROP_S = 0.0
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_.-]+)+$")
# OSC argument types a command can use: numbers, strings, true/false.
_SCALARS = (str, int, float, bool)


@dataclass
class OscStats:
    """What the bridge did: counts, and each beat's lead (ms between sending and its moment)."""

    beats_sent: int = 0
    beats_late: int = 0
    bars_sent: int = 0
    phases_sent: int = 0
    commands: int = 0
    refused: int = 0
    send_errors: int = 0
    beat_leads_ms: list[float] = field(default_factory=list)


def osc_payload(name: str, params: Sequence[Any]) -> str:
    """The command payload an OSC message's arguments stand for (see the module docstring).

    Raises
    ------
    CommandError
        An argument that is not a number, a string or true/false (a blob, MIDI, nil).
    """
    for value in params:
        if not isinstance(value, _SCALARS):
            raise CommandError(
                f"{name}: OSC arguments must be numbers, strings or true/false, not "
                f"{type(value).__name__}"
            )
    if len(params) == 1 and isinstance(params[0], str):
        return params[0]
    return ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in params)


def _message(address: str, *args: Any) -> Any:
    builder = OscMessageBuilder(address=address)
    for value in args:
        if isinstance(value, bool):
            builder.add_arg(value)
        elif isinstance(value, int):
            builder.add_arg(value, OscMessageBuilder.ARG_TYPE_INT)
        elif isinstance(value, float):
            builder.add_arg(value, OscMessageBuilder.ARG_TYPE_FLOAT)
        else:
            builder.add_arg(str(value), OscMessageBuilder.ARG_TYPE_STRING)
    return builder.build()


def bundle(timetag: float | int, messages: Sequence[Any]) -> bytes:
    """An OSC bundle datagram of ``messages`` with ``timetag`` (Unix seconds, or IMMEDIATELY)."""
    builder = OscBundleBuilder(timetag)  # type: ignore[arg-type]  # python-osc says int
    for message in messages:
        builder.add_content(message)
    return bytes(builder.build().dgram)


class OscBridge(Output):
    """OSC out (time-tagged bundles ahead of the sound) and OSC commands in.

    Parameters
    ----------
    config : the ``[osc]`` section: ``enabled`` sends, a ``listen`` address takes commands.
    hub : the session's control hub: commands go to it, its cues come out.

    Raises
    ------
    ConfigError
        A prefix that is not an OSC address, or a ``listen`` that is not ``[HOST:]PORT``.
    """

    stage = Stage.PEERS
    name = "OSC"
    delay_section = "osc"

    def __init__(self, *, config: OscConfig, hub: ControlHub) -> None:
        if not _PREFIX_RE.match(config.prefix):
            raise ConfigError(
                f"osc.prefix {config.prefix!r} must be an OSC address such as /moodscore"
            )
        self.config = config
        self.hub = hub
        self.delay_s = config.delay_ms / 1000.0
        self.prefix = config.prefix
        self.listen: tuple[str, int] | None = None
        if config.listen:
            self.listen = parse_host_port(
                config.listen, what="osc.listen", default_host="127.0.0.1", listen=True
            )
        self._lead_s = config.lead_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._target: Any = None
        self._server: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._grids: collections.deque[BarGrid] = collections.deque(maxlen=4)
        self._next_downbeat: tuple[ScheduledCall, int] | None = None
        self._scene: str | None = None
        self._playing = True
        self._refuse_log = RateLimitedLog(log)
        self._send_log = RateLimitedLog(log, interval=30.0)
        self.stats = OscStats()

    @property
    def listening(self) -> tuple[str, int] | None:
        """The (host, port) commands are taken on, once started."""
        if self._server is None:
            return None
        host, port = self._server.get_extra_info("sockname")[:2]
        return str(host), int(port)

    # -- lifecycle -------------------------------------------------------------------------

    def _attach(self, clock: MusicClock) -> None:
        if self.config.enabled:
            clock.add_bar_listener(self._bar_from_clock)
            clock.add_grid_listener(self._grid_from_clock)
            self.hub.add_event_listener(self._event)

    async def start(self) -> None:
        """Resolve the target, open the sending socket and the command listener."""
        self._loop = asyncio.get_running_loop()
        if self.config.enabled:
            await self._open_target()
        if self.listen is not None:
            await self._open_listener()

    async def _open_target(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.host, self.config.port
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ConfigError(f"osc.host {host!r} does not resolve ({exc}); check --osc") from exc
        family, kind, proto, _, self._target = found[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self._sock = sock
        log.info("OSC: sending to %s:%d under %s", host, port, self.prefix)
        if self.config.phase_hz > 0:
            self._spawn(self._phase_loop(), name="osc-phase")

    async def _open_listener(self) -> None:
        assert self.listen is not None
        loop = asyncio.get_running_loop()
        host, port = self.listen
        try:
            self._server, _ = await loop.create_datagram_endpoint(
                lambda: _CommandProtocol(self), local_addr=(host, port)
            )
        except OSError as exc:
            if self._sock is not None:
                self._sock.close()
            raise ConfigError(
                f"cannot take OSC commands on {host}:{port} ({exc}); pick another --osc-listen port"
            ) from exc
        where = self.listening or self.listen
        log.info("OSC: taking commands on %s:%d at %s/cmd/<name>", *where, self.prefix)

    async def _aclose(self) -> None:
        self.hub.remove_event_listener(self._event)
        if self._next_downbeat is not None:
            self._next_downbeat[0].cancel()  # a bar that will not come
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
        if self._sock is not None:
            self._sock.close()

    # -- out -------------------------------------------------------------------------------

    def _beats_of(self, grid: BarGrid) -> list[Beat]:
        """The beats of ``grid``'s bar and the next bar's downbeat, as the engine will count
        them (the next bar line is where this bar ends, whatever comes after)."""
        beats = [
            Beat(
                index=grid.first_beat + k,
                bar=grid.bar,
                beat_in_bar=k,
                bpm=grid.bpm_at(k),
                audio_time=grid.time_at(k),
            )
            for k in range(grid.beats)
        ]
        beats.append(
            Beat(
                index=grid.first_beat + grid.beats,
                bar=grid.bar + 1,
                beat_in_bar=0,
                bpm=grid.bpm_at(grid.beats),
                audio_time=grid.time_at(grid.beats),
            )
        )
        return beats

    def _schedule_beats(self, grid: BarGrid) -> None:
        """At a bar's start (the clock's audio thread, at most ``live_ahead_s`` before it):
        schedule its beats, and the next bar's downbeat, which is known now, so that a stall of
        the audio thread when that bar begins cannot make its first beat late. The downbeat is
        withdrawn when its bar turns out silent (a transport stop)."""
        beats = self._beats_of(grid)
        playing = self.clock.playing
        downbeat, self._next_downbeat = self._next_downbeat, None
        if downbeat is not None and (downbeat[1] != grid.first_beat or not playing):
            downbeat[0].cancel()
        elif downbeat is not None:
            beats = beats[1:]  # already on its way
        for beat in beats:
            if beat.bar == grid.bar and not playing:
                continue
            call = self._at_sound(beat.audio_time, self._send_beat, beat)
            if beat.bar != grid.bar and call is not None:
                self._next_downbeat = (call, beat.index)

    def _bar_from_clock(self, started: BarStarted) -> None:
        self._at_sound(started.audio_time, self._send_bar, (started, self.clock.playing))

    def _grid_from_clock(self, grid: BarGrid) -> None:
        if grid.patched_from is None:
            self._grids.append(grid)
            self._schedule_beats(grid)

    def _at_sound(self, audio_time: float, fn: Any, item: Any) -> ScheduledCall | None:
        """``fn(item, wall)`` ``lead_ms`` before ``audio_time`` sounds (at once in a render or
        when that has passed); ``wall`` is its ``perf_counter`` moment, or None.

        On the clock's own thread, as MIDI is: a UDP send needs no event loop, and a loop busy
        with composing or a slow viewer must not make a beat late."""
        if self._sock is None:
            return None
        clock = self.clock

        def send() -> None:
            fn(item, clock.wall_time(audio_time))

        return clock.call_at(audio_time - self._lead_s, send)

    def _timetag(self, wall: float | None) -> tuple[float | int, float | None]:
        """(time tag, lead in seconds) for a moment; the lead is None without a wall clock."""
        if wall is None:
            return IMMEDIATELY, None
        lead = wall - time.perf_counter()
        return unix_time(wall), lead

    def _send_beat(self, beat: Beat, wall: float | None) -> None:
        tag, lead = self._timetag(wall)
        if lead is not None and lead < -LATE_DROP_S:
            self.stats.beats_late += 1
            return
        message = _message(
            self.prefix + "/beat", beat.index, beat.bar, beat.beat_in_bar, float(beat.bpm)
        )
        if self._send(bundle(tag, [message])):
            self.stats.beats_sent += 1
            if lead is not None:
                self.stats.beat_leads_ms.append(round(lead * 1000.0, 2))

    def _send_bar(self, item: tuple[BarStarted, bool], wall: float | None) -> None:
        started, playing = item
        plan = started.plan
        tag, lead = self._timetag(wall)
        if lead is not None and lead < -LATE_DROP_S:
            return  # too late: a scene or transport change goes with the next bar
        messages = []
        if playing != self._playing:
            self._playing = playing
            messages.append(_message(self.prefix + "/transport", "play" if playing else "stop"))
        if playing:
            messages.append(
                _message(
                    self.prefix + "/bar",
                    started.bar,
                    float(plan.bpm),
                    plan.beats_per_bar,
                    plan.scene,
                    KEY_NAMES[plan.tonic],
                    plan.mode,
                    plan.layers,
                )
            )
            messages.append(
                _message(self.prefix + "/mood", float(plan.valence), float(plan.arousal))
            )
            if plan.scene != self._scene:
                previous, self._scene = self._scene, plan.scene
                messages.append(_message(self.prefix + "/scene", plan.scene, previous or ""))
        if messages and self._send(bundle(tag, messages)):
            self.stats.bars_sent += 1

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        """A cue (on the loop, as the planner decides it): sent at once, tagged with its moment."""
        if name != "cue":
            return
        wall = self.clock.wall_time(float(payload.get("audio_time", 0.0)))
        tag, _ = self._timetag(wall)
        message = _message(
            self.prefix + "/cue",
            str(payload.get("kind", "")),
            float(payload.get("strength", 0.0)),
            str(payload.get("scene", "")),
        )
        self._send(bundle(tag, [message]))

    async def _phase_loop(self) -> None:
        """``/phase`` at ``phase_hz``: each value for the moment ``lead_ms`` ahead, so it is
        tagged and sent like the beats."""
        period = 1.0 / self.config.phase_hz
        due = time.perf_counter()
        while True:
            due += period
            now = time.perf_counter()
            if due < now - period:
                due = now  # a stalled loop: no burst of stale phases
            await asyncio.sleep(max(0.0, due - now))
            offset = self.clock.wall_time(0.0)
            if offset is None or not self.clock.playing:
                continue
            audio_time = time.perf_counter() - offset + self._lead_s
            grid = next(
                (g for g in reversed(self._grids) if g.start / g.sample_rate <= audio_time), None
            )
            if grid is None:
                continue
            beat = grid.beat_at(audio_time)
            bar_phase = min(max(beat / grid.beats, 0.0), 0.999999)
            message = _message(self.prefix + "/phase", bar_phase, beat % 1.0)
            if self._send(bundle(unix_time(offset + audio_time), [message])):
                self.stats.phases_sent += 1

    def _send(self, datagram: bytes) -> bool:
        sock = self._sock
        if sock is None or self.closed:
            return False
        try:
            sock.sendto(datagram, self._target)
        except OSError as exc:
            # Unreachable, no route, a full buffer: best effort, the music plays on.
            self.stats.send_errors += 1
            self._send_log.warning("OSC: could not send to %s (%s)", self._target, exc)
            return False
        return True

    # -- in --------------------------------------------------------------------------------

    def received(self, data: bytes, sender: tuple[Any, ...]) -> None:
        """A datagram on the command port (the loop): each command in it goes to the hub."""
        where = f"{sender[0]}:{sender[1]}"
        try:
            packet = OscPacket(data)
        except Exception as exc:  # python-osc raises ParseError, and worse on some garbage
            self._refuse(f"a malformed packet of {len(data)} bytes from {where}", exc)
            return
        command_prefix = self.prefix + "/cmd/"
        for timed in packet.messages:
            address = timed.message.address
            if not address.startswith(command_prefix):
                self._refuse(
                    f"{address[:60]!r} from {where}", f"commands are {command_prefix}<name>"
                )
                continue
            name = address[len(command_prefix) :]
            self.stats.commands += 1
            try:
                payload = osc_payload(name, timed.message.params)
            except CommandError as exc:
                self._refuse(f"{address[:60]!r} from {where}", exc)
                self._reply(sender, name, False, str(exc))
                continue
            self._spawn(self._execute(sender, name, payload), name="osc-command")

    async def _execute(self, sender: tuple[Any, ...], name: str, payload: str) -> None:
        result = await self.hub.execute(name, payload)
        self._reply(sender, name, result.ok, result.message)

    def _reply(self, sender: tuple[Any, ...], name: str, ok: bool, text: str) -> None:
        server = self._server
        if server is None or server.is_closing():
            return
        leaf = name if name in COMMAND_NAMES else "_invalid"
        message = _message(f"{self.prefix}/cmd/{leaf}/result", int(ok), text)
        with contextlib.suppress(OSError):
            server.sendto(message.dgram, sender[:2])

    def _refuse(self, what: str, reason: object) -> None:
        self.stats.refused += 1
        text = str(reason).replace("\n", " ")[:160]
        self._refuse_log.warning("OSC: refused %s (%s); the music plays on", what, text)

    def _spawn(self, coro: Any, *, name: str) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _CommandProtocol(asyncio.DatagramProtocol):
    def __init__(self, bridge: OscBridge) -> None:
        self._bridge = bridge

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._bridge.received(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("OSC: socket error %s", exc)
