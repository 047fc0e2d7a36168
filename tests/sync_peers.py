"""Independent peers for the sync tests, each run as its own process (``python -m
tests.sync_peers KIND ...``), so their timing is their own and not the daemon's event loop's.

- ``osc PORTS OUT``: python-osc's threading UDP server on each port; every datagram's arrival and
  every message as python-osc's dispatcher hands it over (it honours bundle time tags) is a JSON
  line in OUT.
- ``midi-in CLIENT OUT``: a JACK MIDI input (client ``CLIENT``, port ``in``); every message, with
  the time rtmidi took it in JACK's process cycle, is a JSON line in OUT. Its own process, so
  the daemon's Python cannot hold up its JACK cycle.
- ``midi-clock CLIENT``: a JACK MIDI output (client ``CLIENT``, port ``out``) that sends MIDI
  clock as a DAW does, due on the wall clock and placed in the JACK cycle it falls in; each
  line on stdin is a JSON command: ``{"bpm": 100}`` (pulses at that tempo; 0 stops them),
  ``"start"``, ``"stop"``, ``"continue"``.
- ``os2l OUT [ADDRESS]``: a TCP server as a lighting program runs one (on a free port, printed
  first); every chunk that arrives, with its arrival time, is a JSON line in OUT; to the first
  client it sends a line that is not OS2L and a button press that is. With ADDRESS it listens
  there and announces itself as ``_os2l._tcp`` by DNS-SD (zeroconf), as QLC+ does: run it only
  inside a network namespace the test made (multicast).
- ``link OUT BPM|- [OSC_HOST:PORT,...] [MQTT_HOST:PORT]``: an Ableton Link peer (aalink), as a
  DJ app or another installation runs one; run it only inside a network namespace the test
  made. With ``BPM`` it starts the session at that tempo (send ``play`` once it has company:
  a play state set alone is lost when sessions meet). Every 5 ms its view of the
  session is a JSON line in OUT (``kind: "link"``: Unix time, beat at quantum 4, tempo, playing,
  peers); lines on its stdin change it (``tempo 130``, ``play``, ``stop``). On each
  ``OSC_HOST:PORT`` it also receives moodscore's OSC: each bundle's time tag and messages are a
  line (``kind: "osc"``, ``at``: which address). With a broker it reads ``moodscore/#`` (``kind:
  "mqtt"``) and publishes what stdin asks (``pub TOPIC PAYLOAD``).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class Lines:
    """JSON lines appended to a file as they come (any thread)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def write(self, **record: Any) -> None:
        text = json.dumps(record)
        with self._lock:
            self._file.write(text + "\n")


def osc(ports: list[int], out: Path) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    lines = Lines(out)
    bound = []
    for index, port in enumerate(ports):

        class Recording(ThreadingOSCUDPServer):
            which = index

            def process_request(self, request: Any, client_address: Any) -> None:
                # The moment the datagram arrived, before python-osc waits for its time tag.
                lines.write(kind="arrival", port=self.which, t=time.time(), data=request[0].hex())
                super().process_request(request, client_address)

        dispatcher = Dispatcher()

        def handle(address: str, *args: Any, which: int = index) -> None:
            lines.write(kind="dispatch", port=which, t=time.time(), address=address, args=args)

        dispatcher.set_default_handler(handle)
        server = Recording(("127.0.0.1", port), dispatcher)
        bound.append(server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps(bound), flush=True)
    sys.stdin.read()  # until the test closes our stdin


def midi_in(client: str, out: Path) -> None:
    import mido

    lines = Lines(out)
    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    port = backend.open_input("in", virtual=True, client_name=client)
    clock = [0.0]

    def on_message(event: tuple[list[int], float], data: object) -> None:
        clock[0] += event[1]
        lines.write(t=clock[0], data=event[0])

    port._rt.set_callback(on_message)
    print(json.dumps("ready"), flush=True)
    sys.stdin.read()
    port.close()


def midi_clock(client_name: str) -> None:
    import jack

    client = jack.Client(client_name, no_start_server=True)
    port = client.midi_outports.register("out")
    rate = client.samplerate
    # Pulses are due on the wall clock (a loaded dummy JACK server runs its frames slower than
    # real time; a hardware clock would not); each goes out in the cycle it falls in.
    state: dict[str, Any] = {"period": 0.0, "next": None, "pending": []}
    lock = threading.Lock()

    @client.set_process_callback
    def process(frames: int) -> None:
        port.clear_buffer()
        now = time.monotonic()
        with lock:
            for status in state["pending"]:
                port.write_midi_event(0, bytes([status]))
            state["pending"].clear()
            period = state["period"]
            if period <= 0:
                state["next"] = None
                return
            if state["next"] is None:
                state["next"] = now
            end = now + frames / rate
            while state["next"] < end:
                offset = min(max(round((state["next"] - now) * rate), 0), frames - 1)
                port.write_midi_event(offset, bytes([0xF8]))
                state["next"] += period

    with client:
        print(json.dumps("ready"), flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            with lock:
                if isinstance(command, dict):
                    bpm = float(command["bpm"])
                    state["period"] = 60.0 / (24 * bpm) if bpm > 0 else 0.0
                else:
                    status = {"start": 0xFA, "continue": 0xFB, "stop": 0xFC}[command]
                    state["pending"].append(status)


def os2l(out: Path, address: str | None = None) -> None:
    import socket

    lines = Lines(out)
    server = socket.create_server((address or "127.0.0.1", 0))
    port = server.getsockname()[1]
    if address is not None:
        from zeroconf import IPVersion, ServiceInfo, Zeroconf

        zeroconf = Zeroconf(interfaces=[address], ip_version=IPVersion.V4Only)
        zeroconf.register_service(
            ServiceInfo(
                "_os2l._tcp.local.",
                "lights._os2l._tcp.local.",
                addresses=[socket.inet_aton(address)],
                port=port,
                server="lights.local.",
            )
        )
    print(json.dumps(port), flush=True)

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b'hello, not OS2L\n{"evt": "btn", "name": "strobe", "state": "on"}')
        while data := conn.recv(65536):
            lines.write(t=time.time(), data=data.decode())

    threading.Thread(target=serve, daemon=True).start()
    sys.stdin.read()


def link(out: Path, bpm: float | None, osc_at: list[str], broker: str | None) -> None:
    import asyncio

    lines = Lines(out)
    for at in osc_at:
        _osc_bundles(at, lines)
    publish = _mqtt(broker, lines) if broker else None

    async def peer() -> None:
        from aalink import Link

        loop = asyncio.get_running_loop()
        session = Link(bpm or 120.0)
        session.quantum = 4
        session.start_stop_sync_enabled = True
        session.enabled = True
        if bpm is not None:
            session.tempo = bpm

        def command(text: str) -> None:
            word, _, value = text.strip().partition(" ")
            if word == "tempo":
                session.tempo = float(value)
            elif word in ("play", "stop"):
                session.playing = word == "play"
            elif word == "pub" and publish is not None:
                topic, _, payload = value.partition(" ")
                publish(topic, payload)
                lines.write(kind="pub", t=time.time(), topic=topic, payload=payload)

        def read_stdin() -> None:
            for text in sys.stdin:
                loop.call_soon_threadsafe(command, text)
            loop.call_soon_threadsafe(done.set)

        done = asyncio.Event()
        threading.Thread(target=read_stdin, daemon=True).start()
        print(json.dumps("ready"), flush=True)
        while not done.is_set():
            t0 = time.time()
            beat, tempo = session.beat, session.tempo
            t1 = time.time()
            lines.write(
                kind="link", t=(t0 + t1) / 2, dt=t1 - t0, beat=beat, tempo=tempo,
                playing=session.playing, peers=session.num_peers,
            )  # fmt: skip
            await asyncio.sleep(0.005)
        session.enabled = False

    asyncio.run(peer())


def _osc_bundles(at: str, lines: Lines) -> None:
    """Record every OSC bundle arriving at ``at`` (HOST:PORT): its time tag and messages."""
    import socket

    from pythonosc.osc_bundle import OscBundle
    from pythonosc.osc_message import OscMessage

    host, _, port = at.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))

    def serve() -> None:
        while True:
            data = sock.recv(65536)
            if not OscBundle.dgram_is_bundle(data):
                continue
            bundle = OscBundle(data)
            messages = [[m.address, *m.params] for m in bundle if isinstance(m, OscMessage)]
            lines.write(kind="osc", at=at, t=time.time(), tag=bundle.timestamp, messages=messages)

    threading.Thread(target=serve, daemon=True).start()


def _mqtt(broker: str, lines: Lines) -> Any:
    """A paho client of its own on ``broker`` (HOST:PORT), reconnecting until the broker is up:
    every ``moodscore/#`` message is a line; returns its publish."""
    import paho.mqtt.client as mqtt

    host, _, port = broker.rpartition(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe("moodscore/#")

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        lines.write(
            kind="mqtt", t=time.time(), topic=message.topic, payload=message.payload.decode(),
            retained=bool(message.retain),
        )  # fmt: skip

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 2)
    client.connect_async(host, int(port))
    client.loop_start()

    def publish(topic: str, payload: str) -> None:
        client.publish(topic, payload, qos=1)

    return publish


@contextlib.contextmanager
def launched(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A peer of ``tests.sync_peers`` (``args``: its kind and arguments) in its own process, with
    the first line it prints (``"ready"``, or the ports it listens on); its stdin is closed (it
    ends) when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sync_peers", *args],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def peer(*args: str) -> Iterator[subprocess.Popen[str]]:
    """An independent peer of ``tests.sync_peers`` in its own process, once it is ready."""
    with launched(*args) as (process, first):
        assert first == '"ready"', first
        yield process


@contextlib.contextmanager
def lighting_program(out: Path) -> Iterator[int]:
    """The independent OS2L server (``os2l OUT``) on loopback in its own process; its port."""
    with launched("os2l", str(out)) as (_, first):
        yield int(json.loads(first))


def os2l_messages(out: Path) -> list[tuple[float, dict[str, Any]]]:
    """(arrival, message) of every OS2L message in a lighting program's log. The stream is OS2L
    JSON objects back to back, as DJ software sends them, cut wherever TCP cut it."""
    decoder = json.JSONDecoder()
    messages: list[tuple[float, dict[str, Any]]] = []
    pending = ""
    for line in out.read_text().splitlines():
        record = json.loads(line)
        pending += record["data"]
        while pending.strip():
            try:
                message, end = decoder.raw_decode(pending.lstrip())
            except json.JSONDecodeError:
                break  # the rest of this object is in the next chunk
            pending = pending.lstrip()[end:]
            messages.append((record["t"], message))
    assert not pending.strip(), f"a partial OS2L message at the end: {pending!r}"
    return messages


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    if kind == "osc":
        osc([int(p) for p in rest[0].split(",")], Path(rest[1]))
    elif kind == "os2l":
        os2l(Path(rest[0]), rest[1] if len(rest) > 1 else None)
    elif kind == "midi-clock":
        midi_clock(rest[0])
    elif kind == "link":
        link(
            Path(rest[0]),
            None if rest[1] == "-" else float(rest[1]),
            rest[2].split(",") if len(rest) > 2 and rest[2] != "-" else [],
            rest[3] if len(rest) > 3 else None,
        )
    elif kind == "midi-in":
        midi_in(rest[0], Path(rest[1]))
    else:
        raise SystemExit(f"unknown peer {kind!r}")
