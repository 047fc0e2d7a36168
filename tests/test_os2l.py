"""OS2L: moodscore finds a lighting program by DNS-SD and a missing host is one line. The minute
of beats a lighting program's server receives ahead of the sound, at the music's tempo, with what
it sends that is not OS2L refused in one line, is measured beside OSC's (tests/test_osc.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.cli import main

REPO = Path(__file__).resolve().parents[1]


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
