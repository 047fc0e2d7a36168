"""The ``mqtt`` figures of ``moodscore bench``: beat lead and command round trip through a real
mosquitto started on a free port (``null`` when mosquitto is not installed)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Config


def mqtt_figures(config: Config, *, seconds: float) -> dict[str, Any] | None:
    """A live ``manual`` session on the demo at 120 bpm with the MQTT bridge, for ``seconds``.

    Returns ``beat_lead_ms`` (how long before the beat sounds ``mosquitto_sub`` received
    ``event/beat``: p50, p5 and the smallest; negative = late), ``publish_lead_ms`` (the same at
    the moment of publishing), ``beats_received``/``beats_expected``, ``beats_dropped_late``,
    and ``command_round_trip_ms`` (``cmd/layers`` published by a client in the same process
    to its ``result`` arriving back, p50/p95, 50 commands).
    """
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists() or shutil.which("mosquitto_sub") is None:
        return None
    with tempfile.TemporaryDirectory(prefix="moodscore-bench-mqtt-") as scratch:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        conf = Path(scratch) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        broker = subprocess.Popen(
            [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_for_port(port)
            received = Path(scratch) / "beats.txt"
            with received.open("wb") as out:
                topic = "moodscore/bench/event/beat"
                sub = subprocess.Popen(
                    ["mosquitto_sub", "-p", str(port), "-t", topic, "-F", "%U %p"], stdout=out
                )
                time.sleep(0.3)
                try:
                    figures = asyncio.run(_session(config, port, seconds))
                finally:
                    time.sleep(0.2)
                    sub.terminate()
                    sub.wait(10)
            leads = []
            for line in received.read_text().splitlines():
                stamp, _, payload = line.partition(" ")
                leads.append((json.loads(payload)["time"] - float(stamp)) * 1000.0)
        finally:
            broker.terminate()
            broker.wait(10)
    figures["beat_lead_ms"] = _spread(leads)
    figures["beats_received"] = len(leads)
    figures["beats_expected"] = round(seconds * 2)
    return figures


async def _session(config: Config, port: int, seconds: float) -> dict[str, Any]:
    import aiomqtt

    from daemon.app import LiveRequest, build_live
    from daemon.control.mqtt import MqttBridge
    from daemon.engine import BackendChoice
    from daemon.sources import open_source

    config = config.replace(
        "mqtt", enabled=True, host="127.0.0.1", port=port, instance="bench", discovery=False
    )
    config = config.replace("web", enabled=False).replace("midi", enabled=False)
    source = open_source("demo", config.source, paced=True, duration=seconds)
    session = build_live(
        config, LiveRequest(duration=seconds), source, BackendChoice("manual", "bench")
    )
    bridge = next(o for o in session.outputs if isinstance(o, MqttBridge))
    session.planner.conductor.fix_tempo(120.0)
    round_trips: list[float] = []

    async def commands() -> None:
        base = "moodscore/bench/cmd/layers"
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(base + "/result")
            await asyncio.sleep(min(2.0, seconds / 4))
            for i in range(50):
                sent = time.perf_counter()
                await client.publish(base, str(1 + i % 5))
                async for _ in client.messages:
                    round_trips.append((time.perf_counter() - sent) * 1000.0)
                    break
                await asyncio.sleep(0.02)
            await client.publish(base, "auto")

    driver = asyncio.create_task(commands())
    await session.run()
    await driver
    return {
        "seconds": seconds,
        "lead_setting_ms": config.mqtt.beat_lead_ms,
        "publish_lead_ms": _spread(bridge.stats.beat_leads_ms),
        "beats_dropped_late": bridge.stats.beats_late,
        "command_round_trip_ms": {
            "p50": round(float(np.percentile(round_trips, 50)), 2),
            "p95": round(float(np.percentile(round_trips, 95)), 2),
        },
    }


def _spread(leads: list[float]) -> dict[str, float] | None:
    if not leads:
        return None
    return {
        "p50": round(float(np.percentile(leads, 50)), 2),
        "p5": round(float(np.percentile(leads, 5)), 2),
        "min": round(min(leads), 2),
    }


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"mosquitto did not listen on port {port}")
