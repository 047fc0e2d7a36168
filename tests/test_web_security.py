"""Web pages that are not the daemon's own cannot drive it: a real headless Chromium (Debian's,
through Playwright) opens a hostile page served from another port on this machine, which tries
every request a browser sends without asking (a ``text/plain`` fetch, ``no-cors``, an HTML form,
``sendBeacon``, a WebRTC offer, a JSON fetch that needs a preflight, a cross-origin read), and a
page re-pointed at 127.0.0.1 by DNS (Chromium's host resolver rules stand in for the attacker's
DNS server). Nothing changes; the daemon's own panel and OBS page, in the same browser, keep
working, and the panel switches to a capture source only with the token.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.web.browser import CHROMIUM, CHROMIUM_ARGS, chromium_available
from tests.clips import write_clip
from tests.test_browser import Daemon

pytestmark = [pytest.mark.chromium, pytest.mark.slow]

REBIND = "rebind.test"

HOSTILE_PAGE = """<!doctype html>
<html><body>
<iframe name="sink" style="display:none"></iframe>
<form id="form" method="POST" action="BASE/api/layers" enctype="text/plain" target="sink">
  <input type="hidden" name="5" value="">
</form>
<script>
window.results = {};
const base = "BASE";
async function offer() {
  const pc = new RTCPeerConnection();
  pc.addTransceiver("audio", { direction: "recvonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => setTimeout(done, 500));
  const body = JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer" });
  return fetch(base + "/api/offer", { method: "POST", mode: "no-cors", body });
}
const attacks = {
  tempo: () => fetch(base + "/api/tempo", { method: "POST", mode: "no-cors",
                                            headers: { "Content-Type": "text/plain" },
                                            body: "150" }),
  scene: () => fetch(base + "/api/scene", { method: "POST",
                                            headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ scene: "combat" }) }),
  source: () => fetch(base + "/api/source", { method: "POST", mode: "no-cors", body: "screen:0" }),
  mood: () => fetch(base + "/api/mood", { method: "POST", mode: "no-cors",
                                          body: '{"valence": -1, "arousal": 1, "hold_s": 600}' }),
  transport: async () => navigator.sendBeacon(base + "/api/transport", "stop"),
  offer: offer,
  read: () => fetch(base + "/api/state").then((r) => r.text()),
};
(async () => {
  for (const [name, attack] of Object.entries(attacks)) {
    try {
      const answer = await attack();
      window.results[name] = typeof answer === "string" || typeof answer === "boolean"
        ? answer : answer.type;
    } catch (err) {
      window.results[name] = "error: " + err.message;
    }
  }
  document.getElementById("form").submit();
  window.results.done = true;
})();
</script>
</body></html>
"""


class HostilePage:
    """A web server on another port of this machine serving the hostile page."""

    def __init__(self, daemon_base: str) -> None:
        page = HOSTILE_PAGE.replace("BASE", daemon_base).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    running = Daemon(tmp_path)
    try:
        yield running
    finally:
        running.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = chromium_available()
    assert missing is None, missing
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # The attacker's DNS: their name now points at this machine.
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBIND} 127.0.0.1"],
        )
        try:
            yield launched
        finally:
            launched.close()


def _panel_url(daemon: Daemon) -> str:
    line = next(line for line in daemon.log if "control panel: " in line)
    return line.split("control panel: ")[1].split(")")[0].strip()


def _health_refused(daemon: Daemon) -> int:
    return int(daemon.state()["health"]["web_refused"])


def test_a_hostile_page_changes_nothing_and_the_daemons_own_pages_work(
    daemon: Daemon, browser: Any, tmp_path: Path
) -> None:
    before = daemon.state()
    assert before["overrides"] == {} and before["playing"] and before["viewers"] == 0
    refused_before = _health_refused(daemon)
    base = daemon.url.rstrip("/")
    hostile = HostilePage(base)
    try:
        page = browser.new_page()
        page.goto(hostile.url)
        page.wait_for_function("window.results.done === true", timeout=20_000)
        results = page.evaluate("window.results")
        time.sleep(2.0)  # the form's request, and a bar line for anything that got through
        page.close()
    finally:
        hostile.close()
    after = daemon.state()
    # Nothing changed: no override, the music plays, the demo is still the source, nobody
    # watches, and the hostile page could not read the state either.
    assert after["overrides"] == {}, after["overrides"]
    assert after["playing"] and after["source"] == "built-in demo scene"
    assert after["viewers"] == 0 and after["connections"] == 0
    assert results["read"].startswith("error"), results
    assert results["scene"].startswith("error"), results  # its preflight was refused
    # Each attempt reached the daemon and was refused there (not lost on the way): the
    # preflight, four no-cors posts, the beacon, the read and the form.
    assert _health_refused(daemon) - refused_before >= 8, (results, daemon.log[-5:])

    # DNS rebinding: the attacker's page, now at "rebind.test" = 127.0.0.1, on the daemon's port.
    rebound = browser.new_page()
    port = base.rsplit(":", 1)[1]
    for path in ("/api/state", "/panel"):
        response = rebound.goto(f"http://{REBIND}:{port}{path}")
        assert response is not None and response.status == 421
        assert "scene" not in rebound.content()
    rebound.close()

    # The daemon's own pages, in the same browser, are unaffected.
    viewer = browser.new_page()
    viewer.goto(daemon.url)
    viewer.wait_for_function("window.moodscore.state === 'connected'", timeout=20_000)
    panel = browser.new_page()
    panel.goto(daemon.url + "panel")  # without the token
    panel.wait_for_selector("#layer-count button[data-layers='3']")
    panel.click("#layer-count button[data-layers='3']")
    deadline = time.monotonic() + 10
    while daemon.state()["overrides"].get("layers") != 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.state()["overrides"].get("layers") == 3
    assert daemon.state()["viewers"] == 1
    # A capture source needs the token, even from the daemon's own panel on this machine...
    clip = tmp_path / "clip.mp4"
    write_clip(clip, duration=6.0, intensity=lambda t: 0.8)
    panel.fill("#source", str(clip))
    panel.click("#source-set")
    panel.wait_for_function("document.getElementById('message').textContent.includes('token')")
    assert daemon.state()["source"] == "built-in demo scene"
    panel.close()
    # ... which the panel's link in the log carries.
    trusted = browser.new_page()
    trusted.goto(_panel_url(daemon))
    trusted.wait_for_selector("#scene option[value=combat]", state="attached")
    trusted.fill("#source", str(clip))
    trusted.click("#source-set")
    deadline = time.monotonic() + 15
    while not daemon.state()["source"].startswith("video file") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert daemon.state()["source"].startswith("video file"), daemon.state()["source"]
    trusted.close()
    viewer.close()
    daemon.stop()
    refusals = [line for line in daemon.log if "web: refused" in line]
    assert refusals and all(line[-1] == "\n" for line in refusals)
    assert json.loads(json.dumps(results))  # what the page saw, for the failure message
