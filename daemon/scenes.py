"""Scene presets: one TOML file per scene in ``scenes/``; adding a file adds a preset."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from daemon.config import SCENES_DIR
from daemon.errors import ConfigError

NOTE_NAMES = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E-": 3, "E": 4, "F": 5, "F#": 6,
    "GB": 6, "G": 7, "G#": 8, "AB": 8, "A-": 8, "A": 9, "A#": 10, "BB": 10, "B-": 10, "B": 11,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ScenePreset:
    """Musical choices for one kind of scene.

    bpm_min/bpm_max bound the tempo arousal maps onto; major_tonic/minor_tonic are pitch classes
    (0 = C) used for positive and negative valence; layers_min/layers_max bound the layer count.
    """

    name: str
    description: str = ""
    bpm_min: float = 60.0
    bpm_max: float = 180.0
    major_tonic: int = 2
    minor_tonic: int = 11
    layers_min: int = 1
    layers_max: int = 5


def available_scenes(directory: Path = SCENES_DIR) -> list[str]:
    """Names of the presets in ``directory`` (file stems), sorted."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_scene(name: str, directory: Path = SCENES_DIR) -> ScenePreset:
    """Load the preset ``scenes/<name>.toml``, validating every key."""
    path = directory / f"{name}.toml"
    if not path.is_file():
        names = ", ".join(available_scenes(directory)) or "none"
        raise ConfigError(f"no scene preset named {name!r}; available: {names}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    known = set(ScenePreset.__dataclass_fields__) - {"name"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"valid: {', '.join(sorted(known))}"
        )
    try:
        preset = ScenePreset(
            name=name,
            description=str(data.get("description", "")),
            bpm_min=float(data.get("bpm_min", 60)),
            bpm_max=float(data.get("bpm_max", 180)),
            major_tonic=_pitch_class(data.get("major_tonic", "D")),
            minor_tonic=_pitch_class(data.get("minor_tonic", "B")),
            layers_min=int(data.get("layers_min", 1)),
            layers_max=int(data.get("layers_max", 5)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not 60 <= preset.bpm_min <= preset.bpm_max <= 180:
        raise ConfigError(f"{path}: need 60 <= bpm_min <= bpm_max <= 180")
    if not 1 <= preset.layers_min <= preset.layers_max <= 5:
        raise ConfigError(f"{path}: need 1 <= layers_min <= layers_max <= 5")
    return preset


def _pitch_class(name: object) -> int:
    key = str(name).strip().upper()
    if key not in NOTE_NAMES:
        raise ValueError(f"{name!r} is not a note name such as C, F# or B-")
    return NOTE_NAMES[key]
