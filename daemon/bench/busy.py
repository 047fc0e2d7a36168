"""``busy_machine``: late audio blocks per minute with three OBS-page viewers and two busy cores.

The case a streamer meets: ``moodscore run`` (demo source, ``manual`` backend, the web page at
its default 1280x720 visuals) in its own process, three headless Chromium pages watching the
OBS page over WebRTC (sound and pictures), and two processes that keep two cores busy. After a
warm-up, the daemon's own ``/api/state`` health counts ``late_blocks`` over the measured
seconds: blocks handed on after a listener with one block of buffer needed them (audible gaps;
target 0).

It runs once per variant, each in a fresh daemon: ``shared`` (the engine in the daemon's
process at raised priority, the "before"), ``own`` (the default: the engine in a process of its
own at raised priority, ``engine.process = "own"``), and on request ``own_realtime`` (its own
process at ``engine.priority = "realtime"``), ``normal``
(``engine.priority = "normal"``, in the daemon's process) and ``high_worker`` (in the daemon's
process, with ``visuals.worker_process = true``). With the engine in its own process the figure
also gives ``late_handoffs``: blocks made in time that the busy daemon handed to its listeners
(the WebRTC audio, the recorder) after their time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from daemon.web.browser import CHROMIUM, CHROMIUM_ARGS, chromium_available

BUSY_LOOP = "while True:\n    pass\n"


def _start_daemon(config_file: Path) -> tuple[subprocess.Popen[str], str]:
    command = [
        sys.executable, "-c", "import sys; from daemon.cli import main; sys.exit(main())",
        "run", "--source", "demo", "--backend", "manual", "--web", "127.0.0.1:0",
        "--config", str(config_file),
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYO_GUI_WX": "0"},
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        if "OBS page: " in line:
            # Keep reading stderr in the background, or a full pipe would stop the daemon.
            threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
            return process, line.split("OBS page: ")[1].split()[0]
    process.kill()
    raise RuntimeError("the daemon did not start")


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _state(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/state", timeout=10) as answer:
        state: dict[str, Any] = json.load(answer)
        return state


VARIANTS = {
    "shared": '[engine]\nprocess = "shared"\npriority = "high"\n',
    "own": '[engine]\nprocess = "own"\npriority = "high"\n',
    "own_realtime": '[engine]\nprocess = "own"\npriority = "realtime"\n',
    "normal": '[engine]\nprocess = "shared"\npriority = "normal"\n',
    "high_worker": (
        '[engine]\nprocess = "shared"\npriority = "high"\n[visuals]\nworker_process = true\n'
    ),
}
# What `moodscore bench` runs: before and after.
DEFAULT_VARIANTS = ("shared", "own")


def _one(variant: str, *, seconds: float, viewers: int, busy: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="moodscore-busy-") as folder:
        config_file = Path(folder) / "config.toml"
        config_file.write_text(VARIANTS[variant] + "[mqtt]\nenabled = false\n")
        daemon, url = _start_daemon(config_file)
        loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(busy)]
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                try:
                    pages = []
                    for _ in range(viewers):
                        page = browser.new_page(viewport={"width": 1280, "height": 720})
                        page.goto(url)
                        pages.append(page)
                    for page in pages:
                        page.wait_for_function(
                            "window.moodscore.state === 'connected'", timeout=60_000
                        )
                    time.sleep(5.0)  # the viewers' start-up (key frames, jitter buffers)
                    before = _state(url)
                    started = time.monotonic()
                    time.sleep(seconds)
                    after = _state(url)
                    elapsed = time.monotonic() - started
                finally:
                    browser.close()
        finally:
            for loop in loops:
                loop.kill()
                loop.wait()
            daemon.terminate()
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    late = after["health"]["late_blocks"] - before["health"]["late_blocks"]
    handoffs = after["health"]["late_handoffs"] - before["health"]["late_handoffs"]
    return {
        "late_blocks_per_min": round(late * 60.0 / elapsed, 1),
        "late_blocks": late,
        "late_handoffs_per_min": round(handoffs * 60.0 / elapsed, 1),
        "seconds": round(elapsed, 1),
        "viewers": after["viewers"],
        "cpu_percent": after["health"].get("cpu_percent"),
    }


def busy_figures(
    *, seconds: float = 60.0, variants: tuple[str, ...] = DEFAULT_VARIANTS
) -> dict[str, Any]:
    """Late blocks per minute per variant (see the module docstring), or the ``skipped`` reason
    without Chromium."""
    missing = chromium_available()
    if missing is not None:
        return {"skipped": missing}
    figures: dict[str, Any] = {"viewers": 3, "busy_cores": 2, "seconds": seconds}
    for variant in variants:
        figures[variant] = _one(variant, seconds=seconds, viewers=3, busy=2)
    return figures


def main() -> None:
    """``python -m daemon.bench.busy [SECONDS] [VARIANT ...]``: this figure alone."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    variants = tuple(sys.argv[2:]) or DEFAULT_VARIANTS
    print(json.dumps(busy_figures(seconds=seconds, variants=variants), indent=2))


if __name__ == "__main__":
    main()
