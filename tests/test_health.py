"""Health telemetry as an operator meets it: the monitor's figures and its warning, then a real
``moodscore run`` (web page, MQTT to a real mosquitto, the panel in Debian's Chromium). Its
engine runs in a process of its own: the daemon's process frozen with SIGSTOP for a second makes
no block late. Then the engine process is made late on purpose, frozen for a second as a machine
too busy for the music would hold it up. Before that every front end shows zero late blocks;
after it, all show them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config import MqttConfig
from daemon.control.health import PERSIST_S, HealthMonitor
from daemon.control.mqtt_topics import base_topic
from daemon.engine.process import PROCESS_NAME
from tests.test_browser import CONFIG, Daemon, browser  # noqa: F401 (the Chromium fixture)
from tests.test_mqtt import Broker, retained

# -- the monitor ---------------------------------------------------------------------------


class Counter:
    """A probe: a count that only grows, as the engine's ``late_blocks``."""

    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


def test_a_healthy_session_reports_zero_and_ok() -> None:
    late, frames = Counter(), Counter()
    published: list[dict[str, Any]] = []
    monitor = HealthMonitor(
        counts={"late_blocks": late, "xruns": Counter(), "underruns": Counter(),
                "frames_analysed": frames},
        margin=lambda: 0.8,
        publish=published.append,
    )  # fmt: skip
    for second in range(5):
        frames.value = 30 * second
        monitor.sample(now=100.0 + second)
    report = published[-1]
    assert report["status"] == "ok" and report["late_blocks"] == 0
    assert report["late_blocks_per_min"] == 0 and report["glitches_per_min"] == 0
    assert report["analysis_fps"] == 30.0 and report["composer_margin_s"] == 0.8
    assert report["rss_mb"] > 10
    assert monitor.summary().startswith("health: 0 late blocks, 0 xruns, 0 bars late")


def test_glitches_that_persist_make_one_warning_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    late, underruns = Counter(), Counter()
    monitor = HealthMonitor(
        counts={"late_blocks": late, "xruns": Counter(), "underruns": underruns}
    )
    caplog.set_level(logging.WARNING, logger="moodscore.health")
    # One glitch is shown but not warned about: it does not persist.
    monitor.sample(now=0.0)
    late.value = 1
    for second in range(1, 12):
        monitor.sample(now=float(second))
    assert monitor.report["status"] == "glitching" and monitor.report["late_blocks"] == 1
    assert not caplog.records
    for second in range(12, 80):  # 70 s ago the glitch; the window has forgotten it
        monitor.sample(now=float(second))
    assert monitor.report["status"] == "ok" and monitor.report["late_blocks"] == 1
    # Two late blocks every second from t=100: a warning once they have lasted PERSIST_S,
    # then no other within the minute after it.
    for second in range(100, 100 + int(PERSIST_S) + 40):
        late.value += 2
        if second == 120:
            underruns.value += 1
        monitor.sample(now=float(second))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert "audio is glitching" in warnings[0] and "1 bars late" in warnings[0]
    assert monitor.report["late_blocks_per_min"] == pytest.approx(120.0, abs=2.5)
    assert monitor.report["status"] == "glitching"


# -- a real run, made late on purpose ------------------------------------------------------


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path)
    server.start()
    yield server
    server.kill()


def _engine_process(daemon: int) -> int:
    """The pid of the daemon's engine process: named PROCESS_NAME (as `ps` shows it), the
    daemon's child or grandchild (through the fork server it starts engines from)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        name, rest = text[text.index("(") + 1 :].rsplit(")", 1)
        names[pid], parents[pid] = name, int(rest.split()[1])
    for pid, name in names.items():
        ancestor = parents.get(pid, 0)
        while name == PROCESS_NAME and ancestor > 1:
            if ancestor == daemon:
                return pid
            ancestor = parents.get(ancestor, 0)
    raise AssertionError(f"no {PROCESS_NAME} process under the daemon (pid {daemon})")


def _late_in_summary(log: list[str]) -> int:
    (summary,) = [line for line in log if "health: " in line]
    found = re.search(r"health: (\d+) late blocks", summary)
    assert found, summary
    return int(found.group(1))


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.mosquitto
def test_late_blocks_show_in_the_api_mqtt_the_panel_and_the_summary(
    tmp_path: Path,
    mosquitto: Broker,
    browser: Any,  # noqa: F811
) -> None:
    base = base_topic(MqttConfig())  # moodscore/<host name>/, as `run --mqtt` names it
    # Half a second rendered ahead: what the machine's other work costs the engine now and
    # then is absorbed, so only the freeze below, twice as long, makes blocks late.
    config = CONFIG + "[engine]\nlive_ahead_s = 0.5\n"
    daemon = Daemon(tmp_path, "--mqtt", f"127.0.0.1:{mosquitto.port}", config_text=config)
    try:
        panel = browser.new_page(viewport={"width": 1280, "height": 800})
        panel.goto(daemon.url + "panel")
        # Healthy: a few seconds in, every front end says ok and 0 late blocks.
        deadline = time.monotonic() + 20
        while daemon.state()["health"].get("uptime_s", 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = daemon.state()["health"]
        assert health["status"] == "ok" and health["late_blocks"] == 0, health
        assert health["xruns"] == 0 and health["underruns"] == 0
        published = json.loads(retained(mosquitto.port, base + "health"))
        assert published["status"] == "ok" and published["late_blocks"] == 0, published
        panel.wait_for_function("document.getElementById('health').className === 'ok'")
        assert panel.inner_text("#health") == "ok · 0 late blocks"

        # The engine runs in a process of its own (engine.process = "own"): the daemon's own
        # process frozen for a second (the event loop, the web page, MQTT, the visuals all held
        # up) makes no block late. In one process this froze the engine too (about 90 late).
        daemon.process.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        daemon.process.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        health = daemon.state()["health"]
        assert health["late_blocks"] == 0, health

        # Late on purpose: the engine process frozen for a second.
        engine = _engine_process(daemon.process.pid)
        os.kill(engine, signal.SIGSTOP)
        time.sleep(1.0)
        os.kill(engine, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while daemon.state()["health"]["late_blocks"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = daemon.state()["health"]
        assert health["status"] == "glitching" and health["late_blocks"] > 0, health
        assert health["late_blocks_per_min"] > 0
        # MQTT: at once (the status changed), retained, so a client that comes later sees it.
        # "At once" is the next health report (one a second), which may come after the API's.
        deadline = time.monotonic() + 5
        published = json.loads(retained(mosquitto.port, base + "health"))
        while published["status"] != "glitching" and time.monotonic() < deadline:
            time.sleep(0.5)
            published = json.loads(retained(mosquitto.port, base + "health"))
        assert published["status"] == "glitching" and published["late_blocks"] > 0, published
        panel.wait_for_function("document.getElementById('health').className === 'glitching'")
        shown = int(panel.get_attribute("#health", "data-late-blocks") or 0)
        assert shown > 0 and f"glitching · {shown} late blocks" in panel.inner_text("#health")
        panel.close()
        daemon.stop()
    finally:
        daemon.kill()
    assert _late_in_summary(daemon.log) >= health["late_blocks"]
