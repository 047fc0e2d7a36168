"""Scene presets: one TOML file per scene in ``scenes/``; adding a file adds a preset.

A preset chooses the tempo range arousal maps onto, the keys (and whether the mode follows
valence), the layer range, the sound of every layer and the drum style. Every key is optional
(the defaults below); an unknown key or value is a :class:`ConfigError` that lists the valid ones.
``scenes/default.toml`` documents each key.

The engine and the accompaniment look presets up by name (``Plan.scene``) through
:func:`get_scene`, which caches each file and rereads it only when it changes.
"""

from __future__ import annotations

import dataclasses
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import SCENES_DIR
from daemon.errors import ConfigError

NOTE_NAMES = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E-": 3, "E": 4, "F": 5, "F#": 6,
    "GB": 6, "G#": 8, "G": 7, "AB": 8, "A-": 8, "A": 9, "A#": 10, "BB": 10, "B-": 10, "B": 11,
}  # fmt: skip

# The sounds each layer can take (the engine builds one instrument per name).
LEAD_SOUNDS = ("saw", "square", "flute", "bell")
BASS_SOUNDS = ("saw", "round", "pluck")
PAD_SOUNDS = ("strings", "organ", "glass")
ARP_SOUNDS = ("pluck", "bell", "marimba")
# Drum patterns: none (the drum layer stays silent), brushes (soft swishes and a light kick),
# backbeat (pop/rock), four_on_floor (a kick on every beat, offbeat hats), breakbeat
# (syncopated kicks, ghost snares, 16th hats), march (snare rudiments, kick on 1 and 3).
DRUM_STYLES = ("none", "brushes", "backbeat", "four_on_floor", "breakbeat", "march")
# "valence" follows the mood (major when pleasant, minor when not); the others fix the mode.
MODES = ("valence", "major", "minor")

_CHOICES: dict[str, tuple[str, ...]] = {
    "lead": LEAD_SOUNDS,
    "bass": BASS_SOUNDS,
    "pad": PAD_SOUNDS,
    "arp": ARP_SOUNDS,
    "drums": DRUM_STYLES,
    "mode": MODES,
}


@dataclass(frozen=True, slots=True)
class ScenePreset:
    """Musical choices for one kind of scene.

    bpm_min/bpm_max bound the tempo arousal maps onto; major_tonic/minor_tonic are pitch classes
    (0 = C) used for positive and negative valence; ``mode`` fixes the mode or lets valence pick
    it; layers_min/layers_max bound the layer count; lead/bass/pad/arp name each layer's sound
    and ``drums`` the drum style.
    """

    name: str
    description: str = ""
    bpm_min: float = 60.0
    bpm_max: float = 180.0
    major_tonic: int = 2
    minor_tonic: int = 11
    mode: str = "valence"
    layers_min: int = 1
    layers_max: int = 5
    lead: str = "saw"
    bass: str = "saw"
    pad: str = "strings"
    arp: str = "pluck"
    drums: str = "backbeat"


DEFAULT_PRESET = ScenePreset(name="default")


def available_scenes(directory: Path = SCENES_DIR) -> list[str]:
    """Names of the presets in ``directory`` (file stems), sorted."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_scene(name: str, directory: Path = SCENES_DIR) -> ScenePreset:
    """Load and validate the preset ``<directory>/<name>.toml`` (read afresh every call).

    Raises
    ------
    ConfigError
        No such preset (the message lists those that exist), invalid TOML, an unknown key, or
        a value out of range or not among a key's choices.
    """
    path = directory / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(available_scenes(directory)) or "none"
        raise ConfigError(f"no scene preset named {name!r}; available: {names}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return _parse(name, data, path)


def _parse(name: str, data: dict[str, Any], path: Path) -> ScenePreset:
    known = {f.name for f in dataclasses.fields(ScenePreset)} - {"name"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(known))}"
        )
    for key, choices in _CHOICES.items():
        if key in data and data[key] not in choices:
            raise ConfigError(f"{path}: {key} = {data[key]!r} is not one of {', '.join(choices)}")
    d = DEFAULT_PRESET
    try:
        preset = ScenePreset(
            name=name,
            description=str(data.get("description", "")),
            bpm_min=_number(data.get("bpm_min", d.bpm_min), "bpm_min"),
            bpm_max=_number(data.get("bpm_max", d.bpm_max), "bpm_max"),
            major_tonic=_pitch_class(data.get("major_tonic", "D")),
            minor_tonic=_pitch_class(data.get("minor_tonic", "B")),
            mode=str(data.get("mode", d.mode)),
            layers_min=_integer(data.get("layers_min", d.layers_min), "layers_min"),
            layers_max=_integer(data.get("layers_max", d.layers_max), "layers_max"),
            lead=str(data.get("lead", d.lead)),
            bass=str(data.get("bass", d.bass)),
            pad=str(data.get("pad", d.pad)),
            arp=str(data.get("arp", d.arp)),
            drums=str(data.get("drums", d.drums)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not 60 <= preset.bpm_min <= preset.bpm_max <= 180:
        raise ConfigError(f"{path}: need 60 <= bpm_min <= bpm_max <= 180")
    if not 1 <= preset.layers_min <= preset.layers_max <= 5:
        raise ConfigError(f"{path}: need 1 <= layers_min <= layers_max <= 5")
    return preset


_cache: dict[Path, tuple[float, ScenePreset]] = {}
_cache_lock = threading.Lock()


def get_scene(name: str, directory: Path = SCENES_DIR) -> ScenePreset:
    """The preset ``name``, cached: the file is read again only when its mtime changes.

    Raises :class:`ConfigError` like :func:`load_scene`.
    """
    path = directory / f"{name}.toml"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return load_scene(name, directory)  # raises the clear "no scene preset" error
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
    preset = load_scene(name, directory)
    with _cache_lock:
        _cache[path] = (mtime, preset)
    return preset


def scene_or_default(name: str, directory: Path = SCENES_DIR) -> ScenePreset:
    """:func:`get_scene`, or the built-in defaults when ``name`` has no valid preset file.

    For the audio and composing paths, which must keep playing whatever a plan names.
    """
    try:
        return get_scene(name, directory)
    except ConfigError:
        return dataclasses.replace(DEFAULT_PRESET, name=name)


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


def _integer(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    return value


def _pitch_class(name: object) -> int:
    key = str(name).strip().upper()
    if key not in NOTE_NAMES:
        raise ValueError(f"{name!r} is not a note name such as C, F# or B-")
    return NOTE_NAMES[key]
