"""The panel's calibration page in Chromium: taps at a known offset from the beat give the
proposed delay, and Apply sets it through the router (the page's origin and token)."""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_browser import CONFIG, Daemon, browser

__all__ = ["browser"]  # the module's Chromium fixture, shared

OFFSET_MS = 70.0
ENGINE_MS = 20.0
# Ten taps, each dispatched by the page's own timer OFFSET_MS after a beat as /api/beats gives
# it; the page stamps each with the event's time. Returns the taps' true offsets.
TAPS_JS = """async ([offset, count]) => {
  const answer = await (await fetch(withToken("/api/beats"))).json();
  const last = answer.beats[answer.beats.length - 1];
  const period = 60000 / answer.bpm;
  const stamps = [];
  document.addEventListener("keydown", (e) => stamps.push(performance.timeOrigin + e.timeStamp));
  for (let k = 1; k <= count; k++) {
    const due = last.unix + k * period + offset;
    await new Promise((r) => setTimeout(r, due - (performance.timeOrigin + performance.now())));
    document.dispatchEvent(new KeyboardEvent("keydown", { key: "t" }));
  }
  await new Promise((r) => setTimeout(r, 1500));  // the beats tapped are fetched
  const beats = (await (await fetch(withToken("/api/beats"))).json()).beats.map((b) => b.unix);
  return stamps.map((t) => {
    const nearest = beats.reduce((a, b) => (Math.abs(t - b) < Math.abs(t - a) ? b : a));
    return t - nearest;
  });
}"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path, config_text=CONFIG + f"\n[engine]\ndelay_ms = {ENGINE_MS}\n")
    try:
        yield running
    finally:
        running.kill()


def _panel_url(daemon: Daemon) -> str:
    line = next(line for line in daemon.log if "control panel: " in line)
    return line.split("control panel: ")[1].split(")")[0].strip()


@pytest.mark.chromium
def test_taps_propose_a_delay_and_apply_sets_it(daemon: Daemon, browser: Any) -> None:
    assert daemon.state()["delays"] == {
        "engine": ENGINE_MS, "midi": 0.0, "mqtt": 0.0, "osc": 0.0, "os2l": 0.0, "web": 0.0
    }  # fmt: skip
    page = browser.new_page()
    page.goto(_panel_url(daemon))
    page.wait_for_function("document.getElementById('s-bar').textContent !== '–'", timeout=30000)
    page.select_option("#cal-output", "osc")
    true_offsets = page.evaluate(TAPS_JS, [OFFSET_MS, 10])
    page.wait_for_function("calibration.proposed !== null", timeout=5000)
    proposed = page.evaluate("calibration.update()")
    heard = statistics.median(true_offsets)
    print(f"calibration: taps {heard:.1f} ms after the beat, proposed osc delay {proposed} ms")
    # What the page heard is what was tapped (the timer may fire a few ms late on a busy box),
    # and the proposal takes off the sound card's delay, which already moves OSC.
    assert heard == pytest.approx(OFFSET_MS, abs=15.0), true_offsets
    assert proposed == pytest.approx(heard - ENGINE_MS, abs=1.0)
    page.click("#cal-apply")
    deadline = time.monotonic() + 5
    while daemon.state()["delays"]["osc"] != proposed and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.state()["delays"]["osc"] == proposed
    page.close()
    # Another origin without the token cannot set a delay (loopback is no trust boundary).
    request = urllib.request.Request(
        daemon.url + "api/delay",
        data=json.dumps({"output": "osc", "ms": 0}).encode(),
        headers={"Content-Type": "application/json", "Origin": "http://evil.example"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 403
    assert daemon.state()["delays"]["osc"] == proposed
