"""The JSON API and its access rules against the daemon's own web server (built as ``moodscore
run`` builds it), and the CLI's web flags."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from daemon.cli import main
from daemon.session import Session
from daemon.web.server import WebServer, parse_address
from tests.live import build, live_config, running, web_of


def _server(*, host: str = "127.0.0.1", token: str = "") -> WebServer:
    """The web server of a live session built as ``moodscore run`` builds it, attached to its
    engine but with the music not started (for the HTTP rules alone)."""
    config = live_config(
        web={"host": host, "port": 0, "token": token},
        visuals={"width": 160, "height": 90, "fps": 10},
    )
    session = build(config)
    server = web_of(session)
    server.attach(session.engine)
    return server


@pytest.fixture
async def served() -> AsyncIterator[tuple[WebServer, Session]]:
    """The live daemon playing the demo, its web server on a free port."""
    session = build(live_config(visuals={"width": 160, "height": 90, "fps": 10}), seconds=30.0)
    async with running(session):
        yield web_of(session), session


async def test_commands_change_the_music_at_the_next_bar_and_bad_ones_say_why(
    served: tuple[WebServer, Session],
) -> None:
    server, session = served
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/tempo", json={"bpm": 100}) as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "message": "ok"}
        sent_in = session.control.state()["bar"]
        async with http.post(f"{base}/api/tempo", data="500") as response:
            assert response.status == 400
            answer = await response.json()
            assert not answer["ok"] and "180" in answer["message"]
        async with http.post(f"{base}/api/warp", json={}) as response:
            assert response.status == 404
            assert "tempo" in (await response.json())["message"]
        async with http.get(f"{base}/api/state") as response:
            state = await response.json()
        async with http.get(f"{base}/api/info") as response:
            info = await response.json()
    assert {"bpm", "scene", "layers", "valence", "arousal", "viewers", "audio_time"} <= set(state)
    assert state["overrides"] == {"bpm": 100.0}
    assert "combat" in info["scenes"] and info["layers"][0] == "lead"
    # The tempo lands on the next bar line (or the one after, within 0.3 s of it).
    planner = session.planner
    for _ in range(100):
        if planner.sounding is not None and planner.sounding.plan.bpm == 100.0:
            break
        await asyncio.sleep(0.1)
    assert planner.sounding is not None and planner.sounding.plan.bpm == 100.0
    assert planner.sounding.bar <= sent_in + 2


async def test_pages_are_served(served: tuple[WebServer, Session]) -> None:
    server, _ = served
    async with aiohttp.ClientSession() as http:
        for path, needle in [
            ("/", "obs.js"),
            ("/panel", "panel.js"),
            ("/static/obs.js", "RTCPeer"),
        ]:
            async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
                assert response.status == 200
                assert needle in await response.text()


@dataclass(frozen=True)
class OtherMachine:
    """A network namespace joined to this one by a veth pair: a client there reaches this
    machine at ``server_address`` from a non-loopback address of its own."""

    namespace: str
    server_address: str

    async def get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """GET ``url`` from the other machine: (status, body)."""
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            "request = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))\n"
            "try:\n"
            "    with urllib.request.urlopen(request, timeout=10) as answer:\n"
            "        status, body = answer.status, answer.read()\n"
            "except urllib.error.HTTPError as error:\n"
            "    status, body = error.code, error.read()\n"
            "print(json.dumps([status, body.decode()]))\n"
        )
        argv = ["ip", "netns", "exec", self.namespace, sys.executable, "-c", script]
        done = await asyncio.to_thread(
            subprocess.run,
            [*argv, url, json.dumps(headers or {})],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        status, body = json.loads(done.stdout)
        return int(status), str(body)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, (
        f"`ip {' '.join(args)}` failed ({done.stderr.strip()}): this test makes a network "
        "namespace, which needs iproute2 (tools/setup.sh installs it) and root"
    )


@pytest.fixture
def other_machine() -> Iterator[OtherMachine]:
    assert shutil.which("ip"), "`ip` not found: tools/setup.sh installs iproute2"
    pid = os.getpid()
    namespace, here, there = f"moodscore-test-{pid}", f"msh{pid}", f"msn{pid}"
    subnet = f"10.{200 + pid % 50}.{pid // 50 % 256}"  # a /30 of its own per test process
    made: list[list[str]] = []
    try:
        _ip("netns", "add", namespace)
        made.append(["netns", "del", namespace])
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        made.append(["link", "del", here])
        _ip("link", "set", there, "netns", namespace)
        _ip("addr", "add", f"{subnet}.1/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{subnet}.2/30", "dev", there)
        _ip("netns", "exec", namespace, "ip", "link", "set", there, "up")
        yield OtherMachine(namespace=namespace, server_address=f"{subnet}.1")
    finally:
        for args in reversed(made):
            subprocess.run(["ip", *args], capture_output=True, timeout=10)


async def test_clients_beyond_this_machine_need_the_token(other_machine: OtherMachine) -> None:
    server = _server(host="0.0.0.0", token="s3cret")
    await server.start()
    try:
        remote = f"http://{other_machine.server_address}:{server.port}/api/state"
        status, body = await other_machine.get(remote)
        assert status == 401 and "token" in body
        assert (await other_machine.get(remote + "?token=wrong"))[0] == 401
        assert (await other_machine.get(remote + "?token=s3cret"))[0] == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert (await other_machine.get(remote, headers=bearer))[0] == 200
        local = f"http://127.0.0.1:{server.port}/api/state"
        async with aiohttp.ClientSession() as http, http.get(local) as response:
            assert response.status == 200  # this machine itself needs none
    finally:
        await server.aclose()


def test_listening_beyond_loopback_without_a_token_makes_one() -> None:
    server = _server(host="0.0.0.0")
    assert len(server.token) >= 12
    assert f"?token={server.token}" in server.url


def test_addresses_parse_and_bad_ones_are_one_line_errors(capsys: pytest.CaptureFixture) -> None:
    assert parse_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_address(":8090") == ("127.0.0.1", 8090)
    assert parse_address("[::1]:8080") == ("::1", 8080)
    code = main(["run", "--source", "demo", "--web", "localhost:http"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "HOST:PORT" in err


def test_a_busy_port_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(
            ["run", "--source", "demo", "--backend", "manual", "--duration", "1", "-q",
             "--web", f"127.0.0.1:{port}"]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--no-web" in err and str(port) in err


def test_a_busy_configured_port_does_not_stop_the_music(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    """A second moodscore (or anything) on the configured port: warn, serve on a free port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(f"[web]\nport = {port}\n")
        code = main(
            ["run", "--source", "demo", "--backend", "manual", "--duration", "1",
             "--config", str(config)]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"port {port} is taken" in err
    served = [line for line in err.splitlines() if "OBS page: " in line]
    assert len(served) == 1 and f":{port}/" not in served[0]


def test_visuals_need_a_video_output(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["render", "demo", "-o", str(tmp_path / "x.wav"), "--visuals", "only"])
    err = capsys.readouterr().err
    assert code == 2 and "video output" in err and err.count("\n") == 1
