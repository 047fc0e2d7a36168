"""`moodscore doctor` on a faked Windows or macOS: it names the backends that platform uses
(PortAudio device, OpenCV camera, mss screen capture, rtmidi API) and says what is missing,
without probing Linux-only paths (JACK, /dev/video*, X11, apt, SCHED_FIFO).

No CI machine here runs Windows or macOS, so the platform is faked (``sys.platform`` and
``platform.system()``); the libraries are this Linux machine's, which is why the camera and
MIDI checks must report AVFoundation/Media Foundation and CoreMIDI/WinMM as missing from the
installed OpenCV and python-rtmidi builds: the checks ask the real builds, not the platform name.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys

import pytest
import torch  # noqa: F401 - loaded before the platform is faked (it would look for a .dylib or .dll)

from daemon import doctor
from daemon.config import load_config
from daemon.doctor import Check, gather_checks
from daemon.platforms import host_system


def _fake(monkeypatch: pytest.MonkeyPatch, system: str, sys_platform: str) -> None:
    monkeypatch.setattr(sys, "platform", sys_platform)
    monkeypatch.setattr(platform, "system", lambda: system)

    def no_linux_tools(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a Linux-only path was probed on {system}: {args}")

    run = subprocess.run

    def run_but_no_jack(command: list[str], *args: object, **kwargs: object) -> object:
        if "jack" in str(command[0]):
            no_linux_tools(command)
        return run(command, *args, **kwargs)  # type: ignore[call-overload]

    # JACK is probed with jack_lsp, cameras under /dev: neither may be asked on this platform.
    monkeypatch.setattr(subprocess, "run", run_but_no_jack)
    monkeypatch.setattr(doctor.glob, "glob", no_linux_tools)


def _checks(monkeypatch: pytest.MonkeyPatch, system: str, sys_platform: str) -> dict[str, Check]:
    config = load_config(use_user_file=False, environ={})
    _fake(monkeypatch, system, sys_platform)
    assert host_system() == system
    checks = gather_checks(config)
    failed = [c for c in checks if c.detail.startswith("probe failed")]
    assert not failed, failed
    return {check.name: check for check in checks}


def _advice(checks: dict[str, Check]) -> str:
    return " ".join(c.advice + " " + c.detail for c in checks.values())


def test_doctor_on_windows_names_its_backends_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = _checks(monkeypatch, "Windows", "win32")
    platform_line = checks["platform"].detail
    assert platform_line.startswith("Windows")
    for backend in ("PortAudio device (WASAPI", "OpenCV Media Foundation camera", "mss GDI"):
        assert backend in platform_line
    assert checks["JACK"].ok and "not used on this platform" in checks["JACK"].detail
    # This machine's OpenCV and python-rtmidi are Linux builds: Media Foundation and Windows
    # MultiMedia are missing from them, and doctor says so.
    camera = checks["cameras"]
    assert not camera.ok and "lacks MSMF" in camera.advice and "V4L2" in camera.detail
    midi = checks["MIDI out"]
    assert not midi.ok and "API_WINDOWS_MM" in midi.detail and "loopMIDI" in midi.detail
    assert checks["screen capture"].ok and "mss GDI" in checks["screen capture"].detail
    assert "PortAudio device (WASAPI" in checks["audio devices"].detail
    # Real-time scheduling is Linux's: asking for it is reported, the default "high" is fine.
    assert checks["audio priority"].ok and "Linux-only" in checks["audio priority"].detail
    assert "apt-get" not in _advice(checks) and "/dev/video" not in _advice(checks)
    broker = checks["MQTT broker"]
    if not broker.ok and shutil.which("mosquitto") is None:
        assert "mosquitto.org" in broker.advice


def test_doctor_on_macos_names_its_backends_and_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks = _checks(monkeypatch, "Darwin", "darwin")
    platform_line = checks["platform"].detail
    assert platform_line.startswith("macOS")
    for backend in ("PortAudio device (Core Audio)", "AVFoundation camera", "Core Graphics"):
        assert backend in platform_line
    assert "not used on this platform" in checks["JACK"].detail
    assert not checks["cameras"].ok and "lacks AVFOUNDATION" in checks["cameras"].advice
    assert not checks["MIDI out"].ok and "API_MACOSX_CORE" in checks["MIDI out"].detail
    assert "Screen Recording" in checks["screen capture"].detail
    assert "apt-get" not in _advice(checks)


def test_realtime_priority_off_linux_is_reported_as_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_config(use_user_file=False, environ={"MOODSCORE_ENGINE_PRIORITY": "realtime"})
    _fake(monkeypatch, "Darwin", "darwin")
    (check,) = doctor._priority(config)
    assert not check.ok and "SCHED_FIFO" in check.detail and '"high"' in check.advice


def test_on_linux_the_linux_paths_are_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    (screen,) = doctor._screen(load_config(use_user_file=False, environ={}))
    assert not screen.ok and "XWayland" in screen.detail
    (camera,) = doctor._cameras(load_config(use_user_file=False, environ={}))
    assert "/dev/video" in camera.detail or "/dev/video" in camera.advice + camera.detail
