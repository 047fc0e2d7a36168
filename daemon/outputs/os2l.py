"""OS2L: beats for DMX lighting programs (QLC+, SoundSwitch), as DJ software sends them.

The lighting program listens on TCP (``os2l.host:os2l.port``, or wherever it announces
``_os2l._tcp`` by DNS-SD when ``os2l.host`` is empty: :func:`discover`, with zeroconf, as VirtualDJ
finds QLC+ or SoundSwitch); :class:`Os2lOutput` connects to it and sends a JSON object per beat,
``os2l.lead_ms`` before it sounds (OS2L has no time stamps: the receiver acts on arrival;
``os2l.delay_ms`` moves the beats later for lights that answer late)::

    {"evt": "beat", "change": false, "pos": 17, "bpm": 120.0, "strength": 1.0}

``pos`` counts beats from the session's start; ``change`` is true on the first beat after
(re)connecting and when the tempo changes; ``strength`` is 1 on a downbeat, else 0.5. No beats
while the transport is stopped. A program that is not there, or goes away, is retried with backoff
while the music plays on. What the program sends back (buttons, commands) is read and logged; a
message that is not OS2L JSON is refused with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import socket
import threading
from typing import Any

from daemon.clock import BarGrid, MusicClock
from daemon.config import Os2lConfig
from daemon.logs import RateLimitedLog
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.os2l")

RETRY_MAX_S = 5.0
SERVICE = "_os2l._tcp.local."
DISCOVER_S = 5.0  # one browse for the service before saying it is not there (and browsing on)


def discover(timeout: float, *, stop: threading.Event | None = None) -> tuple[str, int] | None:
    """The (address, port) of the first lighting program that announces ``_os2l._tcp`` by
    DNS-SD (multicast on the local network) within ``timeout`` seconds, or None. Blocking."""
    import queue
    import time

    from zeroconf import IPVersion, ServiceBrowser, ServiceListener, Zeroconf

    names: queue.Queue[str] = queue.Queue()

    class Found(ServiceListener):
        def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            names.put(name)

        def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            names.put(name)

        def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
            pass

    zeroconf = Zeroconf(ip_version=IPVersion.V4Only)
    browser = ServiceBrowser(zeroconf, SERVICE, Found())
    try:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if stop is not None and stop.is_set():
                return None
            try:
                name = names.get(timeout=min(left, 0.25))
            except queue.Empty:
                continue
            info = zeroconf.get_service_info(SERVICE, name, timeout=2000)
            if info is not None and info.port and info.parsed_addresses():
                return info.parsed_addresses()[0], int(info.port)
        return None
    finally:
        browser.cancel()
        zeroconf.close()


class Os2lOutput(Output):
    """Sends OS2L beat messages to a lighting program over TCP.

    Parameters
    ----------
    config : the ``[os2l]`` section (an empty ``host``: find the program by DNS-SD).

    Attributes
    ----------
    sent : beat messages written so far.
    refused : incoming messages refused as not OS2L.
    """

    stage = Stage.PEERS
    name = "OS2L"
    delay_section = "os2l"

    def __init__(self, *, config: Os2lConfig) -> None:
        self.config = config
        self.delay_s = config.delay_ms / 1000.0
        self._lead_s = config.lead_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._change = True
        self._bpm: float | None = None
        self.sent = 0
        self.refused = 0
        self._refuse_log = RateLimitedLog(log)
        self._down_log = RateLimitedLog(log, interval=30.0)

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self._grid)

    async def start(self) -> None:
        """Start connecting (on a thread of its own: the music does not wait for the lights)."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._connect_forever, name="os2l", daemon=True)
        self._thread.start()

    def _connect_forever(self) -> None:
        """Connect, read what the program sends, reconnect with backoff when it goes away.

        Blocking sockets on this thread, and beats sent from the clock's thread, so that a busy
        event loop cannot make a beat late (OS2L receivers act on arrival)."""
        delay = 0.5
        host, port = self.config.host, self.config.port
        while not self._stop.is_set():
            if not self.config.host:
                found = discover(DISCOVER_S, stop=self._stop)
                if found is None:
                    self._down_log.warning(
                        "OS2L: no lighting program announces %s on the network yet; still "
                        "looking (or give --os2l HOST:PORT)",
                        SERVICE,
                    )
                    continue
                host, port = found
                log.info("OS2L: found a lighting program at %s:%d by DNS-SD", host, port)
            try:
                sock = socket.create_connection((host, port), timeout=5.0)
            except OSError as exc:
                self._down_log.warning(
                    "OS2L: no lighting program at %s:%d (%s); retrying", host, port, exc
                )
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a beat now, not later
            log.info("OS2L: sending beats to %s:%d", host, port)
            delay = 0.5
            with self._lock:
                self._change = True
                self._sock = sock
            try:
                self._read(sock)
            except OSError:
                pass
            finally:
                with self._lock:
                    self._sock = None
                sock.close()
            if not self._stop.is_set():
                self._down_log.warning("OS2L: %s:%d went away; reconnecting", host, port)

    def _read(self, sock: socket.socket) -> None:
        decoder = json.JSONDecoder()
        buffer = ""
        while True:
            data = sock.recv(4096)
            if not data:
                return
            buffer += data.decode("utf-8", errors="replace")
            while buffer.strip():
                text = buffer.lstrip()
                try:
                    message, end = decoder.raw_decode(text)
                except json.JSONDecodeError:
                    if len(text) > 4096 or not text.startswith("{"):
                        # Skip to the next object, if one follows.
                        start = text.find("{", 1)
                        self._refuse(text[: start if start > 0 else 60][:60], "not OS2L JSON")
                        buffer = text[start:] if start > 0 else ""
                        continue
                    buffer = text  # the rest of it is still on its way
                    break
                buffer = text[end:]
                if not isinstance(message, dict) or "evt" not in message:
                    self._refuse(text[:60], 'no "evt"')
                else:
                    log.info("OS2L: the lighting program sent %s", json.dumps(message)[:120])

    def _refuse(self, what: str, reason: str) -> None:
        self.refused += 1
        self._refuse_log.warning("OS2L: refused %r (%s); the music plays on", what, reason)

    # -- beats -----------------------------------------------------------------------------

    def _grid(self, grid: BarGrid) -> None:
        # The audio thread, as the bar begins: every beat of the bar goes out lead_ms ahead.
        if grid.patched_from is not None or not self.clock.playing or self._loop is None:
            return
        for k in range(grid.beats):
            beat = (grid.first_beat + k, grid.bpm_at(k), k == 0)
            audio_time = grid.time_at(k)
            self.clock.call_at(audio_time - self._lead_s, functools.partial(self._send, *beat))

    def _send(self, pos: int, bpm: float, downbeat: bool) -> None:
        # The clock's thread, lead_ms before the beat sounds.
        with self._lock:
            sock = self._sock
            change = self._change or (self._bpm is not None and abs(bpm - self._bpm) > 0.01)
            self._change, self._bpm = False, bpm
        if sock is None or self.closed:
            return
        message: dict[str, Any] = {
            "evt": "beat",
            "change": change,
            "pos": pos,
            "bpm": round(bpm, 3),
            "strength": 1.0 if downbeat else 0.5,
        }
        try:
            sock.sendall(json.dumps(message).encode())
        except OSError as exc:
            self._down_log.warning("OS2L: could not send (%s)", exc)
            return
        self.sent += 1

    async def _aclose(self) -> None:
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
