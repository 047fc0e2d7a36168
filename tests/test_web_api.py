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
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from daemon.cli import main
from daemon.messages import BarStarted
from daemon.session import Session
from daemon.web.server import WebServer, parse_address
from tests.live import build, live_config, running, web_of
from tests.nextbar import allowed_bars, watch_override


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
    bars: list[BarStarted] = []
    session.engine.add_bar_listener(bars.append)
    applied = watch_override(session, "bpm", 100.0)
    async with aiohttp.ClientSession() as http:
        sent_at = session.engine.audio_time
        async with http.post(f"{base}/api/tempo", json={"bpm": 100}) as response:
            assert response.status == 200
            assert await response.json() == {"ok": True, "message": "ok"}
        applied_by = await applied
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
    # The next bar line when the command came at least 0.3 s before it, else the one after.
    for _ in range(100):
        if any(b.plan.bpm == 100.0 for b in bars):
            break
        await asyncio.sleep(0.1)
    changed = next(b for b in bars if b.plan.bpm == 100.0)
    downbeats = [(b.bar, b.audio_time) for b in bars]
    assert changed.bar in allowed_bars(downbeats, sent_at, applied_by), (sent_at, downbeats)


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

    async def post(
        self, url: str, body: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        """POST ``body`` to ``url`` from the other machine: (status, body)."""
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            "request = urllib.request.Request(sys.argv[1], data=sys.argv[3].encode(),\n"
            "                                 headers=json.loads(sys.argv[2]), method='POST')\n"
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
            [*argv, url, json.dumps(headers or {}), body],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        status, answer = json.loads(done.stdout)
        return int(status), str(answer)


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
        # A name the server does not know (what a DNS-rebinding page sends) is refused even
        # from the other machine; the token lets a client use any name it likes.
        foreign = {"Host": f"evil.example:{server.port}"}
        status, body = await other_machine.get(remote, headers=foreign)
        assert status == 421 and "allowed_hosts" in body
        assert (await other_machine.get(remote, headers={**foreign, **bearer}))[0] == 200
        # A state change from the other machine: refused without the token, taken with it.
        tempo = f"http://{other_machine.server_address}:{server.port}/api/tempo"
        assert (await other_machine.post(tempo, "120"))[0] == 401
        status, body = await other_machine.post(tempo, "120", headers=bearer)
        assert status == 200 and json.loads(body)["ok"], body
        assert server.control.state()["overrides"] == {}  # queued for the router, not applied
        local = f"http://127.0.0.1:{server.port}/api/state"
        async with aiohttp.ClientSession() as http, http.get(local) as response:
            assert response.status == 200  # this machine itself needs none to read
    finally:
        await server.aclose()


def test_listening_beyond_loopback_without_a_token_makes_one() -> None:
    server = _server(host="0.0.0.0")
    assert len(server.token) >= 12
    assert f"?token={server.token}" in server.url


def test_on_loopback_the_panel_url_carries_a_token_and_the_obs_url_does_not() -> None:
    server = _server()
    assert len(server.token) >= 12
    assert server.panel_url.endswith(f"/panel?token={server.token}")
    assert "token" not in server.url  # OBS's setting stays the same from run to run
    assert _server(token="fixed").panel_url.endswith("?token=fixed")


def _curl(*args: str) -> tuple[int, str]:
    """Debian's curl (not our client): (status, body)."""
    assert shutil.which("curl"), "curl not found: tools/setup.sh installs it"
    done = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=20,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


async def test_curl_with_a_foreign_host_or_origin_changes_and_reads_nothing(
    served: tuple[WebServer, Session],
) -> None:
    server, session = served
    base = f"http://127.0.0.1:{server.port}"
    rebind = f"evil.example:{server.port}"
    # DNS rebinding: a page of evil.example re-pointed at 127.0.0.1 sends its own name.
    for path in ("/api/state", "/", "/panel", "/static/panel.js"):
        status, body = await asyncio.to_thread(_curl, "-H", f"Host: {rebind}", base + path)
        assert status == 421 and "scene" not in body, (path, status, body)
    status, _ = await asyncio.to_thread(
        _curl, "-H", f"Host: {rebind}", "-H", f"Origin: http://{rebind}", "-d", "150",
        base + "/api/tempo",
    )  # fmt: skip
    assert status == 421
    # A page of another origin (another port on this machine, or a web site): the "simple"
    # request a browser sends without asking, as a browser sends it.
    for origin in ("http://evil.example", f"http://127.0.0.1:{server.port + 1}", "null"):
        status, body = await asyncio.to_thread(
            _curl, "-H", f"Origin: {origin}", "-H", "Content-Type: text/plain", "-d", "150",
            base + "/api/tempo",
        )  # fmt: skip
        assert status == 403 and "another web page" in body, (origin, status, body)
    status, _ = await asyncio.to_thread(
        _curl, "-H", "Sec-Fetch-Site: cross-site", "-d", "stop", base + "/api/transport"
    )
    assert status == 403
    # No CORS: a preflight is refused and no answer ever names another origin.
    status, _ = await asyncio.to_thread(
        _curl, "-X", "OPTIONS", "-H", "Origin: http://evil.example",
        "-H", "Access-Control-Request-Method: POST", base + "/api/tempo",
    )  # fmt: skip
    assert status == 403
    headers = await asyncio.to_thread(
        _curl, "-D", "-", "-H", f"Origin: {base}", base + "/api/state"
    )
    assert "access-control-allow" not in headers[1].lower()
    assert "frame-ancestors 'none'" in headers[1]
    await asyncio.sleep(0.5)
    assert session.control.state()["overrides"] == {} and session.control.state()["playing"]
    assert server.refused >= 9
    # The daemon's own origin and names, and curl on this machine, still work.
    for host, origin in [
        (f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}"),
        (f"localhost:{server.port}", f"http://localhost:{server.port}"),
    ]:
        status, body = await asyncio.to_thread(
            _curl, "-H", f"Host: {host}", "-H", f"Origin: {origin}", "-d", "3",
            base + "/api/layers",
        )  # fmt: skip
        assert status == 200, body
    assert (await asyncio.to_thread(_curl, "-d", "4", base + "/api/layers"))[0] == 200


async def test_a_capture_source_needs_the_token_even_from_this_machine(
    served: tuple[WebServer, Session], tmp_path: Path
) -> None:
    from tests.clips import write_clip

    server, session = served
    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(write_clip, clip, duration=4.0, intensity=lambda t: 0.5)
    base = f"http://127.0.0.1:{server.port}/api/source"
    own = {"Origin": f"http://127.0.0.1:{server.port}"}  # even the daemon's own panel
    async with aiohttp.ClientSession() as http:
        for spec in (str(clip), "webcam:0", "screen:0", "auto", "/dev/video0"):
            async with http.post(base, json={"source": spec}, headers=own) as response:
                assert response.status == 403, spec
                assert "token" in (await response.json())["message"]
        assert session.control.state()["source"] == "built-in demo scene"
        async with http.post(base, data="demo", headers=own) as response:
            assert response.status == 200  # the demo opens nothing of the user's
        bearer = {"Authorization": f"Bearer {server.token}"}
        async with http.post(base, json={"source": str(clip)}, headers=bearer) as response:
            assert response.status == 200, await response.text()
        assert session.control.state()["source"].startswith("video file")
        async with http.post(base + f"?token={server.token}x", data="demo") as response:
            assert response.status == 200  # a wrong token is no token: the demo needs none


async def test_trusted_loopback_sources_need_no_token(tmp_path: Path) -> None:
    from tests.clips import write_clip

    clip = tmp_path / "clip.mp4"
    await asyncio.to_thread(write_clip, clip, duration=4.0, intensity=lambda t: 0.5)
    config = live_config(
        web={"trust_loopback_sources": True}, visuals={"width": 160, "height": 90, "fps": 10}
    )
    session = build(config, seconds=20.0)
    async with running(session):
        server = web_of(session)
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{server.port}/api/source", data=str(clip)) as response,
        ):
            assert response.status == 200, await response.text()
        assert session.control.state()["source"].startswith("video file")


async def test_bodies_and_rates_are_bounded(served: tuple[WebServer, Session]) -> None:
    from daemon.web.access import POST_BURST, POST_PER_S

    server, _ = served
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/offer", data=b"x" * 200_000) as response:
            assert response.status == 413
        statuses = []
        started = time.monotonic()
        for _ in range(POST_BURST + 60):
            async with http.post(f"{base}/api/mute", data="cowbell") as response:
                statuses.append(response.status)
        elapsed = time.monotonic() - started
        assert statuses[: POST_BURST - 5] == [400] * (POST_BURST - 5)  # refused: no such layer
        # The burst, then the allowance per second (however slow this machine is today).
        taken = len(statuses) - statuses.count(429)
        assert statuses.count(429) > 0 and taken <= POST_BURST + elapsed * POST_PER_S + 1
        async with http.get(f"{base}/api/state") as response:
            assert response.status == 200  # reads have their own allowance
        await asyncio.sleep(0.5)  # the allowance comes back
        async with http.post(f"{base}/api/tempo", data="120") as response:
            assert response.status == 200


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
