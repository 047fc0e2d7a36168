"""OS2L: a lighting program's TCP server (an independent process) receives a beat message per
beat at the music's tempo, ahead of the sound; what it sends that is not OS2L is refused in one
line while the music plays on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main
from daemon.messages import Beat
from daemon.outputs.os2l import Os2lOutput
from tests.live import build, live_config

REPO = Path(__file__).resolve().parents[1]


def lighting_program(out: Path) -> subprocess.Popen[str]:
    """The independent OS2L server (tests/sync_peers.py), in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync_peers", "os2l", str(out)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_lighting_program_gets_every_beat_ahead_at_the_tempo(tmp_path: Path) -> None:
    """12 s at 120 bpm (the one 60 s sync test is OSC's: tests/test_osc.py)."""
    out = tmp_path / "os2l.jsonl"
    server = lighting_program(out)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())
        config = live_config(
            web={"enabled": False}, os2l={"enabled": True, "host": "127.0.0.1", "port": port}
        )
        session = build(config, seconds=12.0)
        session.planner.conductor.fix_tempo(120.0)
        output = next(o for o in session.outputs if isinstance(o, Os2lOutput))
        sounds: dict[int, float] = {}
        engine = session.engine

        def on_beat(beat: Beat) -> None:  # the audio thread
            wall = engine.wall_time(beat.audio_time)
            if wall is not None:
                sounds[beat.index] = time.time() + (wall - time.perf_counter())

        engine.add_beat_listener(on_beat)
        report = await session.run()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(5)
    assert report.underruns == 0
    # The stream is OS2L JSON objects back to back, as DJ software sends them.
    decoder = json.JSONDecoder()
    beats: list[tuple[float, dict[str, object]]] = []
    for line in out.read_text().splitlines():
        record = json.loads(line)
        text = record["data"]
        while text.strip():
            message, end = decoder.raw_decode(text.lstrip())
            text = text.lstrip()[end:]
            beats.append((record["t"], message))
    assert all(m["evt"] == "beat" for _, m in beats)
    positions = [int(m["pos"]) for _, m in beats]  # type: ignore[call-overload]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    # Every beat after the first bar (the tempo is fixed from the second bar on) at 120 bpm.
    steady = [(t, m) for t, m in beats if int(m["pos"]) >= 8]  # type: ignore[call-overload]
    assert len(steady) >= 12 and all(m["bpm"] == 120.0 for _, m in steady)
    assert all(m["strength"] == (1.0 if int(m["pos"]) % 4 == 0 else 0.5) for _, m in steady)  # type: ignore[call-overload]
    # Ahead of the sound by os2l.lead_ms (30; the program acts on arrival). The median: on this
    # shared 2-core box a stall of the whole machine now and then makes a beat or two late.
    leads_ms = np.array([(sounds[int(m["pos"])] - t) * 1000 for t, m in steady])  # type: ignore[call-overload]
    assert np.median(leads_ms) == pytest.approx(30.0, abs=5.0), leads_ms
    assert output.refused == 1  # "hello, not OS2L"; the button press was fine


def test_os2l_without_a_host_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--source", "demo", "--backend", "manual", "--no-web", "--os2l", "9999"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--os2l" in err, err


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, (
        f"`ip {' '.join(args)}` failed ({done.stderr.strip()}): this test makes network "
        "namespaces, which needs iproute2 (tools/setup.sh installs it) and root"
    )


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str, str]]:
    """Two network namespaces joined by a veth pair with multicast routed over it (DNS-SD never
    touches this machine's real interfaces): (lights' namespace, its address, moodscore's)."""
    pid = os.getpid()
    lights, ours = f"ms-lights-{pid}", f"ms-os2l-{pid}"
    subnet = f"10.{150 + pid % 50}.{pid // 50 % 256}"
    made: list[list[str]] = []
    try:
        for namespace in (lights, ours):
            _ip("netns", "add", namespace)
            made.append(["netns", "del", namespace])
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", lights, "link", "add", "veth-l", "type", "veth", "peer", "name", "veth-o")
        _ip("-n", lights, "link", "set", "veth-o", "netns", ours)
        for namespace, dev, host in ((lights, "veth-l", 1), (ours, "veth-o", 2)):
            _ip("-n", namespace, "addr", "add", f"{subnet}.{host}/30", "dev", dev)
            _ip("-n", namespace, "link", "set", dev, "up", "multicast", "on")
            _ip("-n", namespace, "route", "add", "224.0.0.0/4", "dev", dev)
        yield lights, f"{subnet}.1", ours
    finally:
        for args in reversed(made):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)


FIND_AND_CONNECT = """
import json, socket, sys
from daemon.outputs.os2l import discover
found = discover(8.0)
hello = b""
if found is not None:
    with socket.create_connection(tuple(found), timeout=5) as sock:
        hello = sock.recv(15)
print(json.dumps([found, hello.decode()]))
"""


def test_os2l_finds_the_lighting_program_by_dns_sd(
    two_namespaces: tuple[str, str, str], tmp_path: Path
) -> None:
    """A lighting program announces _os2l._tcp in one namespace; moodscore's discovery in the
    other finds its address and port and connects (``--os2l`` without HOST:PORT)."""
    lights, address, ours = two_namespaces
    peer = subprocess.Popen(
        ["ip", "netns", "exec", lights, sys.executable, "-m", "tests.sync_peers", "os2l",
         str(tmp_path / "lights.jsonl"), address],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert peer.stdout is not None
        port = json.loads(peer.stdout.readline())
        done = subprocess.run(
            ["ip", "netns", "exec", ours, sys.executable, "-c", FIND_AND_CONNECT],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        found, hello = json.loads(done.stdout)
        assert found == [address, port] and hello == "hello, not OS2L"
    finally:
        if peer.stdin is not None:
            peer.stdin.close()
        peer.wait(10)
