"""Glass-to-glass latency of the OBS page's audio: a beat's audio time -> the browser's output.

A click engine stands in for pyo (same interface the web server uses, same pacing as the live
``manual`` engine: 256-sample blocks handed on ``live_ahead_s`` ahead of the wall clock) and
puts a click on every beat. The real web server, the real WebRTC path (ring buffer, 20 ms Opus
frames, aiortc, loopback UDP) and a real headless Chromium playing the OBS page with
``?probe=1`` follow; the page timestamps every click it receives with the wall clock at which
its audio reaches the output (the jitter buffer, decoding and WebAudio included). The latency
of a click is that time minus the wall time of its beat. Clicks stand in for the music because
a click has one unambiguous onset; the engine adds nothing to the path (its audio is in the ring
before it is due).

Needs Playwright (a dev dependency) and Debian's ``chromium`` (:mod:`daemon.web.browser`);
:func:`measure_audio_latency` returns the reason instead of figures when they are missing.

"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from daemon.clock import Scheduling
from daemon.config import VisualsConfig, WebConfig
from daemon.control.hub import ControlHub
from daemon.web.browser import CHROMIUM, CHROMIUM_ARGS, chromium_available

BLOCK = 256
CLICK_S = 0.003


class ClickEngine(Scheduling):
    """A stand-in for :class:`~daemon.engine.Engine`: clicks on every beat, paced like the live
    ``manual`` engine. Only what the web server touches is here."""

    def __init__(self, *, sample_rate: int = 48000, bpm: float = 120.0, ahead_s: float = 0.1):
        self.sample_rate = sample_rate
        self.period = 60.0 / bpm
        self.ahead_s = ahead_s
        self._listeners: list[Callable[[np.ndarray, float], None]] = []
        self._offset: float | None = None
        self._position = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="click-engine", daemon=True)

    def add_audio_listener(self, fn: Callable[[np.ndarray, float], None]) -> None:
        self._listeners.append(fn)

    def add_grid_listener(self, fn: Any) -> None:
        pass

    def add_note_listener(self, fn: Any) -> None:
        pass

    def add_beat_listener(self, fn: Any) -> None:
        pass

    def add_bar_listener(self, fn: Any) -> None:
        pass

    @property
    def playing(self) -> bool:
        return True

    def wall_time(self, audio_time: float) -> float | None:
        return None if self._offset is None else audio_time + self._offset

    @property
    def audio_time(self) -> float:
        return self._position / self.sample_rate

    def beat_wall_times(self, until: float) -> list[float]:
        """``time.time()`` of every beat up to audio time ``until``."""
        assert self._offset is not None
        to_epoch = time.time() - time.perf_counter()
        period = round(self.period * self.sample_rate) / self.sample_rate
        count = int(until / period) + 1
        return [self._offset + k * period + to_epoch for k in range(count)]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.close_scheduler()

    def _run(self) -> None:
        sr = self.sample_rate
        period = round(self.period * sr)
        click_len = round(CLICK_S * sr)
        click = np.zeros(period, dtype=np.float32)
        click[:click_len] = 0.8 * np.sin(2 * np.pi * 2000 * np.arange(click_len) / sr)
        self._offset = start = time.perf_counter()
        while not self._stop.is_set():
            lead = self._position / sr - (time.perf_counter() - start)
            if lead > self.ahead_s:
                self._stop.wait(min(lead - self.ahead_s, 0.01))
                continue
            first = self._position
            mono = click[(first + np.arange(BLOCK)) % period]
            block = np.repeat(mono[:, None], 2, axis=1)
            for fn in self._listeners:
                fn(block, first / sr)
            self._position += BLOCK


async def _measure(seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    from daemon.web.server import WebServer

    engine = ClickEngine()
    server = WebServer(
        hub=ControlHub(),
        web_config=WebConfig(host="127.0.0.1", port=0),
        visuals=VisualsConfig(width=320, height=180, fps=15),
    )
    server.attach(engine)
    await server.start()
    engine.start()
    try:
        async with async_playwright() as playwright:
            with tempfile.TemporaryDirectory(prefix="moodscore-chromium-") as profile:
                browser = await playwright.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page()
                    await page.goto(server.url.rstrip("/") + "/?probe=1")
                    await page.wait_for_function(
                        "window.moodscore.state === 'connected'", timeout=15000
                    )
                    await asyncio.sleep(seconds)
                    onsets: list[float] = await page.evaluate("window.moodscore.onsets")
                    output_latency = await page.evaluate("window.moodscore.outputLatency")
                finally:
                    await browser.close()
    finally:
        engine.stop()
        await server.aclose()
    beats = np.array(engine.beat_wall_times(engine.audio_time))
    latencies = []
    for onset in onsets:
        nearest = beats[np.argmin(np.abs(beats - onset / 1000.0))]
        latency = onset / 1000.0 - nearest
        if -0.1 < latency < engine.period / 2:
            latencies.append(latency)
    # The first clicks pass while the jitter buffer settles; the steady state is what counts.
    steady = np.array(latencies[len(latencies) // 4 :]) * 1e3
    if len(steady) == 0:
        return {"clicks_heard": 0, "error": "no clicks arrived"}
    return {
        "ms": {
            "p50": round(float(np.percentile(steady, 50)), 1),
            "p95": round(float(np.percentile(steady, 95)), 1),
            "min": round(float(steady.min()), 1),
            "max": round(float(steady.max()), 1),
        },
        "clicks_heard": len(latencies),
        "clicks_sent": len(beats),
        "browser_output_latency_ms": None
        if output_latency is None
        else round(float(output_latency) * 1e3, 1),
        "path": "beat audio time -> browser audio output, loopback, headless Chromium",
    }


def measure_audio_latency(seconds: float = 10.0) -> dict[str, Any] | None:
    """Glass-to-glass audio latency figures (see the module docstring), or a dict with the
    ``skipped`` reason when Chromium or Playwright is missing."""
    missing = chromium_available()
    if missing is not None:
        return {"skipped": missing}
    return asyncio.run(_measure(seconds))
