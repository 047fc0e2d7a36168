"""The platforms moodscore runs on and the backend each uses for sound, cameras, the screen and
MIDI, by name: what ``moodscore doctor`` reports and the README's platform table states.

:func:`host_system` reads ``platform.system()`` and ``sys.platform`` each call, so the tests can
fake a Windows or macOS host; Linux-only paths (JACK, apt, ``/dev/video*``, X11, SCHED_FIFO) ask
:func:`on_linux` first.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backends:
    """What one platform uses for sound, cameras, the screen and MIDI, by name."""

    audio: str
    camera: str
    camera_api: str  # the cv2.CAP_* constant's name
    screen: str
    midi: str
    midi_api: str  # the rtmidi.API_* constant's name


BACKENDS: dict[str, Backends] = {
    "Linux": Backends(
        "JACK, or a PortAudio device (ALSA)", "OpenCV V4L2 camera (/dev/video*)", "CAP_V4L2",
        "mss X11 capture (DISPLAY)", "rtmidi: ALSA sequencer or JACK MIDI", "API_LINUX_ALSA",
    ),
    "Darwin": Backends(
        "a PortAudio device (Core Audio)", "OpenCV AVFoundation camera", "CAP_AVFOUNDATION",
        "mss Core Graphics capture (grant Screen Recording to the terminal)", "rtmidi: CoreMIDI",
        "API_MACOSX_CORE",
    ),
    "Windows": Backends(
        "a PortAudio device (WASAPI, DirectSound or MME)", "OpenCV Media Foundation camera",
        "CAP_MSMF", "mss GDI capture", "rtmidi: Windows MultiMedia (no virtual ports: use "
        "loopMIDI and --midi-port NAME)", "API_WINDOWS_MM",
    ),
}  # fmt: skip


def host_system() -> str:
    """``Linux``, ``Darwin`` or ``Windows`` (another Unix is treated as Linux)."""
    system = platform.system()
    if system == "Darwin" or sys.platform == "darwin":
        return "Darwin"
    if system == "Windows" or sys.platform == "win32":
        return "Windows"
    return "Linux"


def on_linux() -> bool:
    return host_system() == "Linux"


def install_advice(linux: str, *, mac: str, windows: str) -> str:
    """The install command for this platform (apt only where dpkg is)."""
    system = host_system()
    if system == "Darwin":
        return mac
    if system == "Windows":
        return windows
    return linux if shutil.which("dpkg") else linux.replace("sudo apt-get install", "install")


def active_window_title(display: str | None = None) -> str | None:
    """The title of the X11 desktop's active (else focused) window, for choosing a game
    profile by it; None off Linux, without an X display, or without ``xdotool`` (apt:
    xdotool), or when it cannot be read.

    display : the X display (default ``$DISPLAY``).
    """
    display = display or os.environ.get("DISPLAY")
    tool = shutil.which("xdotool")
    if not on_linux() or not display or tool is None:
        return None
    env = {**os.environ, "DISPLAY": display}
    # The window manager's _NET_ACTIVE_WINDOW, else (no window manager) the input focus.
    for which in ("getactivewindow", "getwindowfocus"):
        try:
            done = subprocess.run(
                [tool, which, "getwindowname"], capture_output=True, text=True, timeout=2, env=env
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        title = re.sub(r"\s+", " ", done.stdout).strip()
        if done.returncode == 0 and title:
            return title
    return None
