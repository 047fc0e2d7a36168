"""Scene presets: one TOML file per scene in ``scenes/``; adding a file adds a preset.

A preset chooses the tempo range arousal maps onto, the keys (and whether the mode follows
valence), the layer range, the sound of every layer and the drum style. Every key is optional
(the defaults below); an unknown key or value is a :class:`ConfigError` that lists the valid ones.
``scenes/default.toml`` documents each key.

Only the conductor reads presets (through :func:`get_scene`, which caches each file and rereads it
only when it changes); every plan carries its frozen :class:`ScenePreset`, so the composer, the
engine and the outputs never read ``scenes/`` and a preset edited mid-run reaches all of them at
the same bar line.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.config import SCENES_DIR, user_presets_dir
from daemon.errors import ConfigError
from daemon.messages import (
    ARP_SOUNDS,
    BASS_SOUNDS,
    DEFAULT_PRESET,
    DRUM_STYLES,
    LEAD_SOUNDS,
    PAD_SOUNDS,
    PRESET_MODES,
    STINGER_KINDS,
    ScenePreset,
    TransitionRule,
)

__all__ = [
    "ARP_SOUNDS",
    "BASS_SOUNDS",
    "BUILT_IN",
    "DEFAULT_PRESET",
    "DRUM_STYLES",
    "LEAD_SOUNDS",
    "PAD_SOUNDS",
    "PRESET_MODES",
    "PresetLibrary",
    "ScenePreset",
    "available_scenes",
    "get_scene",
    "load_scene",
]

NOTE_NAMES = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E-": 3, "E": 4, "F": 5, "F#": 6,
    "GB": 6, "G#": 8, "G": 7, "AB": 8, "A-": 8, "A": 9, "A#": 10, "BB": 10, "B-": 10, "B": 11,
}  # fmt: skip

_CHOICES: dict[str, tuple[str, ...]] = {
    "lead": LEAD_SOUNDS,
    "bass": BASS_SOUNDS,
    "pad": PAD_SOUNDS,
    "arp": ARP_SOUNDS,
    "drums": DRUM_STYLES,
    "mode": PRESET_MODES,
}


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


_EXIT_RE = re.compile(r"^(immediate|beat|bar|bars:[1-8])$")


def _transitions(table: object, path: Path) -> tuple[TransitionRule, ...]:
    """The ``[transitions]`` table: ``"from -> to" = {exit, fade_beats, bridge}``, or the keys
    ``rise`` / ``fall`` for a change of intensity within the scene."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [transitions] must be a table")
    rules = []
    for key, value in table.items():
        if key in ("rise", "fall"):
            source, target = key, "*"
        else:
            parts = [p.strip() for p in key.split("->")]
            if len(parts) != 2 or not all(parts):
                raise ConfigError(
                    f'{path}: transition "{key}" must be "from -> to" (scene names or *), '
                    "rise or fall"
                )
            source, target = parts
        if not isinstance(value, dict):
            raise ConfigError(
                f'{path}: transition "{key}" must be a table such as '
                '{ exit = "beat", fade_beats = 0.5, bridge = "riser" }'
            )
        unknown = set(value) - {"exit", "fade_beats", "bridge"}
        if unknown:
            raise ConfigError(
                f'{path}: transition "{key}": unknown key(s) {", ".join(sorted(unknown))}; '
                "valid: bridge, exit, fade_beats"
            )
        exit_ = str(value.get("exit", "bar"))
        if not _EXIT_RE.match(exit_):
            raise ConfigError(
                f'{path}: transition "{key}": exit = {exit_!r} is not immediate, beat, bar or '
                "bars:N (N from 1 to 8)"
            )
        fade = _number(value.get("fade_beats", 1.0), "fade_beats")
        if not 0 <= fade <= 16:
            raise ConfigError(f'{path}: transition "{key}": fade_beats must be in [0, 16]')
        bridge = value.get("bridge")
        if bridge is not None and bridge not in STINGER_KINDS:
            raise ConfigError(
                f'{path}: transition "{key}": bridge = {bridge!r} is not one of '
                f"{', '.join(STINGER_KINDS)}"
            )
        rules.append(TransitionRule(source, target, exit=exit_, fade_beats=fade, bridge=bridge))
    return tuple(rules)


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
            transitions=_transitions(data.get("transitions", {}), path),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not 60 <= preset.bpm_min <= preset.bpm_max <= 180:
        raise ConfigError(f"{path}: need 60 <= bpm_min <= bpm_max <= 180")
    if not 1 <= preset.layers_min <= preset.layers_max <= 5:
        raise ConfigError(f"{path}: need 1 <= layers_min <= layers_max <= 5")
    return preset


_cache: dict[Path, tuple[tuple[int, int], ScenePreset]] = {}
_cache_lock = threading.Lock()


def get_scene(name: str, directory: Path = SCENES_DIR) -> ScenePreset:
    """The preset ``name``, cached: the file is read again only when it changes.

    Raises :class:`ConfigError` like :func:`load_scene`.
    """
    path = directory / f"{name}.toml"
    try:
        stat = path.stat()
    except OSError:
        return load_scene(name, directory)  # raises the clear "no scene preset" error
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    preset = load_scene(name, directory)
    with _cache_lock:
        _cache[path] = (stamp, preset)
    return preset


class PresetLibrary:
    """The scene presets a session can use, by name, from a search path.

    The folders of ``conductor.preset_dirs`` come first, then the user's preset folder
    (:func:`~daemon.config.user_presets_dir`, ``<user config dir>/presets``, which
    ``moodscore init`` creates), then the built-in ``scenes/``: a preset in an earlier folder
    hides one of the same name later (edit a copy of ``combat.toml`` in your own folder to make
    combat yours). Files are read when first asked for and again only when they change, so a
    preset edited while the music plays reaches the next plan.

    Parameters
    ----------
    folders : preset folders searched in order before the user's and the built-in ones (missing
        folders are skipped).
    user : also search the user's preset folder (looked up when the library is made).
    """

    def __init__(self, folders: Sequence[Path | str] = (), *, user: bool = True) -> None:
        own = [Path(folder).expanduser() for folder in folders]
        mine = [user_presets_dir()] if user else []
        self.folders: tuple[Path, ...] = (*own, *mine, SCENES_DIR)

    def names(self) -> list[str]:
        """Every preset name on the search path, sorted."""
        found = {name for folder in self.folders for name in available_scenes(folder)}
        return sorted(found)

    def folder_of(self, name: str) -> Path | None:
        """The folder whose file ``name`` is used (the first on the path), or None."""
        return next((f for f in self.folders if (f / f"{name}.toml").is_file()), None)

    def get(self, name: str) -> ScenePreset:
        """The preset ``name`` as its file reads now (cached while unchanged).

        Raises
        ------
        ConfigError
            No such preset on the search path (the message lists the names there are), or the
            file is invalid.
        """
        folder = self.folder_of(name)
        if folder is None:
            raise ConfigError(
                f"no scene preset named {name!r}; available: {', '.join(self.names()) or 'none'}"
            )
        return get_scene(name, folder)


BUILT_IN = PresetLibrary(user=False)  # the shipped presets only


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
