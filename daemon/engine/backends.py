"""Which pyo server mode the engine runs in, chosen by name (``auto`` probes, a name forces).

Probing never touches pyo in this process: ``pyo.Server(audio="portaudio")`` segfaults when no
audio device exists, and PortAudio's device scan itself can crash on odd ALSA set-ups, so the
scan runs in a throw-away subprocess and a crash, a hang or an empty list all mean "no device".
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from daemon.errors import EngineError

log = logging.getLogger(__name__)

BackendName = Literal["device", "jack", "manual", "offline"]
BACKEND_NAMES: tuple[str, ...] = ("auto", "device", "jack", "manual", "offline")

# Runs in the probe subprocess: print the output devices PortAudio sees as a JSON list of
# [index, name] pairs.
_PROBE_SCRIPT = """
import json, pyo
names, indexes = pyo.pa_get_output_devices()
print("MOODSCORE_DEVICES=" + json.dumps([[int(i), str(n)] for n, i in zip(names, indexes)]))
"""


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """The server mode the engine will use and why (one line for logs and ``moodscore doctor``).

    ``device``: PortAudio on a sound card; ``jack``: a running JACK server; ``manual``: pyo stepped
    by the engine's own thread, paced to the wall clock (no sound card needed); ``offline``: the
    same stepping as fast as the machine allows (renders).
    """

    name: BackendName
    reason: str
    device: int | None = None
    """For ``device``: the PortAudio output index to open (None: the system's default)."""


def probe_audio_devices(timeout: float = 5.0) -> list[str]:
    """Names of the audio output devices PortAudio can see, probed in a subprocess.

    Parameters
    ----------
    timeout : seconds to wait for the probe before treating the machine as having no device.

    Returns
    -------
    The device names; ``[]`` when there is none or the probe crashed, hung or printed nothing.
    """
    return [name for _, name in probe_audio_outputs(timeout)]


def probe_audio_outputs(timeout: float = 5.0) -> list[tuple[int, str]]:
    """(PortAudio index, name) of each audio output device, probed in a subprocess; ``[]``
    when there is none or the probe crashed, hung or printed nothing."""
    env = dict(os.environ, PYO_GUI_WX="0")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_SCRIPT],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("audio device probe failed: %s", exc)
        return []
    if proc.returncode != 0:
        # A negative code is the signal that killed it (the no-device segfault is -11).
        log.info("audio device probe exited with status %d", proc.returncode)
        return []
    for line in proc.stdout.splitlines():
        if line.startswith("MOODSCORE_DEVICES="):
            try:
                pairs = json.loads(line.partition("=")[2])
                return [(int(index), str(name)) for index, name in pairs]
            except (json.JSONDecodeError, TypeError, ValueError):
                return []
    return []


def pick_device(wanted: str, outputs: list[tuple[int, str]]) -> tuple[int, str]:
    """The output device ``wanted`` names: its PortAudio index, or its name (exactly, or a
    unique case-insensitive part of it), among ``outputs`` (``probe_audio_outputs()``).

    Raises
    ------
    EngineError
        No output device here, or none (or more than one) matches; the message lists them.
    """
    if not outputs:
        raise EngineError(
            f"no audio output device here for --device {wanted!r}; `moodscore doctor` lists "
            "them (use --backend manual or jack without a sound card)"
        )
    text = wanted.strip()
    if text.isdigit():
        chosen = [o for o in outputs if o[0] == int(text)]
    else:
        chosen = [o for o in outputs if o[1] == text] or [
            o for o in outputs if text.lower() in o[1].lower()
        ]
    if len(chosen) != 1:
        listed = "; ".join(f"{index}: {name}" for index, name in outputs)
        what = "matches none of" if not chosen else "could be any of"
        raise EngineError(f"audio device {wanted!r} {what}: {listed}"[:400])
    return chosen[0]


def jack_running(timeout: float = 3.0) -> bool:
    """True when a JACK server is up and accepts clients.

    Uses ``jack_lsp`` (Debian ``jackd2``/``jack-example-tools``). ``JACK_NO_START_SERVER`` keeps
    libjack from auto-starting a server just because we asked whether one runs. JACK is used on
    Linux only: on macOS and Windows sound goes to a PortAudio device, and this is False.
    """
    if not sys.platform.startswith("linux"):
        return False
    exe = shutil.which("jack_lsp")
    if exe is None:
        return False
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    try:
        proc = subprocess.run(
            [exe],
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def choose_backend(requested: str, *, render: bool, device: str = "") -> BackendChoice:
    """Pick the server mode for ``requested`` (``config.engine.backend`` or ``--backend``).

    Parameters
    ----------
    device : ``engine.device``: a sound card's name or index; with ``auto`` it asks for the
        ``device`` backend (a render ignores it).
    requested : ``auto`` (JACK if running, else a device if one exists, else manual) or a forced
        name: ``device``, ``jack``, ``manual``, ``offline``.
    render : a file render: always ``offline`` (stepped as fast as possible, no device needed).

    Raises
    ------
    EngineError
        The name is unknown, or a forced backend is not available here.
    """
    if requested not in BACKEND_NAMES:
        raise EngineError(
            f"unknown audio backend {requested!r}; use one of {', '.join(BACKEND_NAMES)}"
        )
    if render:
        note = "" if requested in ("auto", "offline") else f" (--backend {requested} ignored)"
        return BackendChoice("offline", f"render: pyo stepped as fast as possible{note}")
    if requested == "manual":
        return BackendChoice("manual", "forced: pyo stepped by the engine, paced to the clock")
    if requested == "offline":
        return BackendChoice("offline", "forced: pyo stepped as fast as possible, not paced")
    if device and requested in ("auto", "device"):
        index, name = pick_device(device, probe_audio_outputs())
        return BackendChoice("device", f"PortAudio output {name!r} (index {index})", index)
    if requested == "device":
        devices = probe_audio_devices()
        if not devices:
            raise EngineError(
                "no audio device found; use --backend manual, or start jackd and use --backend jack"
            )
        return BackendChoice("device", f"forced: PortAudio output {devices[0]!r}")
    if requested == "jack":
        if not jack_running():
            raise EngineError(
                "no JACK server is running; start one (e.g. `jackd -d dummy -r 48000 -p 256`, or "
                "`jackd -d alsa` with a card) or use --backend manual"
            )
        return BackendChoice("jack", "forced: JACK server is running")
    # A running JACK server is a deliberate choice of the user's, and it usually owns the sound
    # card, so a PortAudio device would fail to open: prefer JACK when it is up.
    if jack_running():
        return BackendChoice("jack", "auto: a JACK server is running")
    devices = probe_audio_devices()
    if devices:
        return BackendChoice("device", f"auto: PortAudio output {devices[0]!r}")
    return BackendChoice(
        "manual", "auto: no audio device and no JACK server; pyo stepped by the engine"
    )
