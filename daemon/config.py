"""Typed configuration: config.toml < user file < environment < command-line flags.

Every key of ``config.toml`` is a field of one of the frozen dataclasses below, with the same
default. Unknown sections or keys and values of the wrong type raise :class:`ConfigError` naming
the closest valid key, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.toml"
SCENES_DIR = REPO_ROOT / "scenes"
USER_CONFIG_PATH = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / (
    "moodscore/config.toml"
)
ENV_PREFIX = "MOODSCORE_"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    kind: str = "auto"
    webcam_index: int = 0
    width: int = 640
    height: int = 360
    fps: float = 30.0
    demo_cycle_s: float = 60.0
    loop: bool = False


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    mode: str = "frame"
    window_s: float = 0.5
    analysis_width: int = 160
    motion_full_scale: float = 0.12
    arousal_weights: tuple[float, float, float] = (0.6, 0.25, 0.15)
    valence_weights: tuple[float, float, float] = (0.4, 0.2, 0.4)


@dataclass(frozen=True, slots=True)
class FaceConfig:
    max_faces: int = 4
    combine: str = "largest"
    min_detection_confidence: float = 0.5
    blendshape_weight: float = 0.4
    smoothing_s: float = 0.5
    hold_s: float = 1.0
    neutral_drift_s: float = 1.0


@dataclass(frozen=True, slots=True)
class GameConfig:
    model: str = ""
    smoothing_s: float = 1.0
    min_scene_prob: float = 0.5


@dataclass(frozen=True, slots=True)
class ConductorConfig:
    scene: str = "default"
    smoothing_s: float = 2.0
    hysteresis: float = 0.08
    beats_per_bar: int = 4
    scene_hold_s: float = 2.0
    preset_dirs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ComposerConfig:
    melody_model: str = "lstm"
    melody_weights: str = ""
    seed: int = 0
    temperature: float = 0.9
    top_p: float = 0.95
    scale_constraint: bool = True
    register: tuple[int, int] = (60, 84)
    structure: str = ""
    section_bars: int = 4
    lookahead_bars: int = 1


@dataclass(frozen=True, slots=True)
class EngineConfig:
    backend: str = "auto"
    sample_rate: int = 48000
    buffer_size: int = 256
    master_gain: float = 0.7
    reverb: float = 0.25
    live_ahead_s: float = 0.1
    tempo_ramp: float = 1.0


@dataclass(frozen=True, slots=True)
class MidiConfig:
    enabled: bool = False
    port: str = ""
    backend: str = "auto"
    clock: bool = True
    offset_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordConfig:
    dir: str = ""


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    device: str = "auto"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = 1883
    prefix: str = "moodscore"
    instance: str = ""
    client_id: str = ""
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 30
    reconnect_max_s: float = 30.0
    beat_lead_ms: float = 50.0
    state_interval_s: float = 0.25
    note_events: bool = False
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    wled_topic: str = ""
    wled_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""


@dataclass(frozen=True, slots=True)
class VisualsConfig:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    render: str = "none"


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    index: str = ""
    dir: str = ""
    workers: int = 2
    play: bool = False
    crossfade_s: float = 2.0
    min_hold_bars: int = 8
    switch_margin: float = 0.1
    seed_track: str = ""
    seed_notes: int = 32


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; one field per ``[section]`` of config.toml."""

    source: SourceConfig = field(default_factory=SourceConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    face: FaceConfig = field(default_factory=FaceConfig)
    game: GameConfig = field(default_factory=GameConfig)
    conductor: ConductorConfig = field(default_factory=ConductorConfig)
    composer: ComposerConfig = field(default_factory=ComposerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    midi: MidiConfig = field(default_factory=MidiConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    web: WebConfig = field(default_factory=WebConfig)
    visuals: VisualsConfig = field(default_factory=VisualsConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed, validated like a file would be."""
        return _merge(self, {section: values}, origin="command line")


CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("engine", "backend"): ("auto", "device", "jack", "manual", "offline"),
    ("models", "device"): ("auto", "cpu", "cuda"),
    ("composer", "melody_model"): ("lstm", "ngram"),
    # Analysis modes, each with a factory in daemon/analysis/modes.py.
    ("analysis", "mode"): ("frame", "face", "game", "auto"),
    ("face", "combine"): ("largest", "mean"),
    ("visuals", "render"): ("overlay", "only", "none"),
}

# Numeric ranges checked on load: (low, high) inclusive.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("source", "fps"): (1, 240),
    ("source", "demo_cycle_s"): (5, 3600),
    ("analysis", "window_s"): (0.05, 10),
    ("analysis", "analysis_width"): (16, 1920),
    ("analysis", "motion_full_scale"): (1e-3, 1),
    ("face", "max_faces"): (1, 16),
    ("face", "min_detection_confidence"): (0.05, 0.95),
    ("face", "blendshape_weight"): (0, 1),
    ("face", "smoothing_s"): (0, 30),
    ("face", "hold_s"): (0, 60),
    ("face", "neutral_drift_s"): (0.05, 60),
    ("game", "smoothing_s"): (0, 30),
    ("game", "min_scene_prob"): (0, 1),
    ("conductor", "smoothing_s"): (0, 60),
    ("conductor", "hysteresis"): (0, 0.5),
    ("conductor", "beats_per_bar"): (2, 7),
    ("conductor", "scene_hold_s"): (0, 60),
    ("composer", "temperature"): (0.05, 3),
    ("composer", "top_p"): (0.05, 1),
    ("composer", "register"): (21, 108),
    ("composer", "section_bars"): (1, 16),
    ("composer", "lookahead_bars"): (1, 8),
    ("engine", "sample_rate"): (8000, 192000),
    ("engine", "buffer_size"): (32, 4096),
    ("engine", "master_gain"): (0, 1),
    ("engine", "reverb"): (0, 1),
    ("engine", "live_ahead_s"): (0.01, 2),
    ("engine", "tempo_ramp"): (0, 1),
    ("midi", "offset_ms"): (-500, 500),
    ("mqtt", "port"): (1, 65535),
    ("mqtt", "keepalive_s"): (5, 3600),
    ("mqtt", "reconnect_max_s"): (1, 600),
    ("mqtt", "beat_lead_ms"): (0, 1000),
    ("mqtt", "state_interval_s"): (0, 60),
    ("mqtt", "wled_interval_s"): (0, 60),
    ("web", "port"): (0, 65535),
    ("visuals", "width"): (64, 3840),
    ("visuals", "height"): (64, 2160),
    ("visuals", "fps"): (1, 60),
    ("library", "workers"): (1, 64),
    ("library", "crossfade_s"): (0, 30),
    ("library", "min_hold_bars"): (1, 1000),
    ("library", "switch_margin"): (0, 4),
    ("library", "seed_notes"): (8, 512),
}


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_user_file: bool = True,
) -> Config:
    """Load the layered configuration.

    Parameters
    ----------
    path : a user config file (``--config``); it must exist.
    environ : environment to read ``MOODSCORE_<SECTION>_<KEY>`` overrides from (default os.environ).
    use_user_file : also read ``~/.config/moodscore/config.toml`` when no ``path`` is given.
    """
    config = Config()
    if DEFAULT_CONFIG_PATH.exists():
        config = _merge(config, _read_toml(DEFAULT_CONFIG_PATH), origin=str(DEFAULT_CONFIG_PATH))
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        config = _merge(config, _read_toml(path), origin=str(path))
    elif use_user_file and USER_CONFIG_PATH.is_file():
        config = _merge(config, _read_toml(USER_CONFIG_PATH), origin=str(USER_CONFIG_PATH))
    env_values = _environment_overrides(os.environ if environ is None else environ)
    if env_values:
        config = _merge(config, env_values, origin="environment")
    return config


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _environment_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    sections = {f.name for f in dataclasses.fields(Config)}
    values: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            continue
        # Environment values are strings; parse them as TOML values where they look like one.
        values.setdefault(section, {})[key] = _parse_env_value(raw)
    return values


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _merge(config: Config, data: Mapping[str, Any], *, origin: str) -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    changes: dict[str, Any] = {}
    for section_name, section_values in data.items():
        if section_name not in sections:
            raise ConfigError(
                f"{origin}: unknown section [{section_name}]{_suggest(section_name, sections)}"
            )
        if not isinstance(section_values, Mapping):
            raise ConfigError(f"{origin}: [{section_name}] must be a table of keys")
        current = getattr(config, section_name)
        changes[section_name] = _merge_section(current, section_name, section_values, origin)
    return dataclasses.replace(config, **changes)


def _merge_section(current: Any, section: str, values: Mapping[str, Any], origin: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(current)}
    hints = typing.get_type_hints(type(current))
    updates: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"{origin}: unknown key {section}.{key}{_suggest(key, fields, prefix=section)}"
            )
        updates[key] = _coerce(value, hints[key], f"{section}.{key}", origin)
        _check_value(section, key, updates[key], origin)
    return dataclasses.replace(current, **updates)


def _coerce(value: Any, hint: Any, name: str, origin: str) -> Any:
    origin_type = typing.get_origin(hint)
    if origin_type is tuple and typing.get_args(hint)[-1] is Ellipsis:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{origin}: {name} must be a list")
        return tuple(_coerce(v, item_type, name, origin) for v in value)
    if origin_type is tuple:
        item_types = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(item_types):
            raise ConfigError(f"{origin}: {name} must be a list of {len(item_types)} numbers")
        return tuple(_coerce(v, t, name, origin) for v, t in zip(value, item_types, strict=True))
    if origin_type in (types.UnionType, typing.Union):
        raise AssertionError(f"config field {name} has a union type; keep config types simple")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
            return value.lower() in {"true", "1", "yes"}
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{origin}: {name} must be {type_name}, got {value!r}")


def _check_value(section: str, key: str, value: Any, origin: str) -> None:
    choices = CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(
            f"{origin}: {section}.{key} = {value!r} is not one of {', '.join(choices)}"
        )
    bounds = RANGES.get((section, key))
    # A range on a list key (e.g. composer.register) bounds each of its items.
    items = value if isinstance(value, tuple) else (value,)
    if bounds is not None and not all(bounds[0] <= item <= bounds[1] for item in items):
        raise ConfigError(
            f"{origin}: {section}.{key} = {value!r} is outside [{bounds[0]}, {bounds[1]}]"
        )


def _suggest(name: str, candidates: Mapping[str, Any], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if not close:
        return "; see config.toml for the valid keys"
    return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"
