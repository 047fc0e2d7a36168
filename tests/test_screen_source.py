"""Screen capture (mss) against a real X server: Xvfb with a coloured root window."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from daemon.analysis.teach import Teacher
from daemon.cli import main
from daemon.config import SourceConfig
from daemon.control.hub import ControlHub
from daemon.control.window_title import WindowTitleWatch
from daemon.errors import SourceError
from daemon.platforms import active_window_title
from daemon.sources import open_source
from daemon.sources.screen import ScreenSource, parse_screen_spec


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    """A private Xvfb screen, 320x240, whose root window is pure red (``-noreset``: without it
    the server resets the root when xsetroot disconnects)."""
    missing = [tool for tool in ("Xvfb", "xsetroot") if shutil.which(tool) is None]
    assert not missing, f"{missing} not found: tools/setup.sh installs xvfb and x11-xserver-utils"
    for number in range(71, 99):
        if (
            not Path(f"/tmp/.X11-unix/X{number}").exists()
            and not Path(f"/tmp/.X{number}-lock").exists()
        ):
            break
    name = f":{number}"
    server = subprocess.Popen(
        ["Xvfb", name, "-screen", "0", "320x240x24", "-nolisten", "tcp", "-noreset"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                break
            time.sleep(0.05)
        subprocess.run(["xsetroot", "-display", name, "-solid", "#ff0000"], check=True, timeout=10)
        yield name
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_screen_frames_show_what_is_on_screen(display: str) -> None:
    source = ScreenSource(1, fps=20, display=display)
    try:
        assert source.size == (320, 240)
        frames = [await source.recv() for _ in range(4)]
    finally:
        await source.close()
    image = frames[-1].image
    assert image.shape == (240, 320, 3)
    assert np.all(image[:, :, 0] > 200) and np.all(image[:, :, 1:] < 50)  # red, in RGB order
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and pts[-1] > 0
    # Paced by the source itself at about 20 fps: four frames take about three periods.
    assert pts[-1] >= 3 / 20 * 0.8


async def test_a_region_of_the_screen(display: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", display)
    source = open_source("screen:10,20,64,48", SourceConfig(fps=10), paced=True)
    try:
        assert source.size == (64, 48)
        assert "64x48" in source.description
        frame = await source.recv()
    finally:
        await source.close()
    assert frame.image.shape == (48, 64, 3)


def test_region_outside_the_desktop_is_a_clear_error(display: str) -> None:
    with pytest.raises(SourceError, match="outside the desktop"):
        ScreenSource((300, 200, 64, 64), fps=10, display=display)
    with pytest.raises(SourceError, match="no monitor 5"):
        ScreenSource(5, fps=10, display=display)


def test_bad_specs_say_what_to_pass() -> None:
    assert parse_screen_spec("screen") == 1
    assert parse_screen_spec("screen:2") == 2
    assert parse_screen_spec("screen:0,0,640,360") == (0, 0, 640, 360)
    for spec in ("screen:abc", "screen:1,2,3", "screen:0,0,0,10"):
        with pytest.raises(SourceError, match="screen"):
            parse_screen_spec(spec)


def test_no_display_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", ":98")  # nothing listens there
    assert not os.path.exists("/tmp/.X11-unix/X98")
    code = main(["run", "--source", "screen", "--duration", "1", "--backend", "manual"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no screen to capture" in err[0]


@pytest.fixture
def game_window(display: str) -> Iterator[str]:
    """A window titled like a game's, focused as a click would (no window manager here)."""
    assert shutil.which("xdotool") and shutil.which("xmessage"), "tools/setup.sh installs them"
    env = {**os.environ, "DISPLAY": display}
    title = "Red Eclipse 2.0 (OpenGL)"
    window = subprocess.Popen(["xmessage", "-title", title, "paused"], env=env)
    try:
        for _ in range(100):
            found = subprocess.run(
                ["xdotool", "search", "--name", "Red Eclipse", "windowfocus"], env=env, timeout=5
            )
            if found.returncode == 0:
                break
            time.sleep(0.05)
        yield title
    finally:
        window.terminate()
        window.wait(timeout=10)


async def test_the_active_window_title_picks_the_game_profile(
    display: str, game_window: str, tmp_path: Path
) -> None:
    assert active_window_title(display) == game_window
    teacher = Teacher(model_hash="abc", game="Desktop", folder=tmp_path, worker="thread")
    hub = ControlHub()
    hub.teacher = teacher
    hub.auto_profiles = {"red eclipse": "redeclipse"}
    watch = WindowTitleWatch(hub=hub, display=display, interval_s=0.1)
    await watch.start()
    try:
        for _ in range(100):
            if teacher.snapshot()["game"] == "redeclipse":
                break
            await asyncio.sleep(0.05)
        assert teacher.snapshot()["game"] == "redeclipse"
    finally:
        await watch.aclose()
