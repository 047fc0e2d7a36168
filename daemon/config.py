"""Typed configuration: config.toml < user file < environment < command-line flags.

Every key of ``config.toml`` is a field of one of the section models in
:mod:`daemon.config_sections`, with the same default; that declaration states its type, range,
choices and description. This module layers the sources over one another, validates each layer
with those models and turns every failure into one :class:`ConfigError` line naming the origin
(a file, "environment", "command line"), the dotted key, what is wrong and what is allowed. An
unknown section, key or ``MOODSCORE_*`` variable names the closest valid one, so a typo never
silently does nothing. :func:`config_schema` gives the JSON schema of the whole file (for
editors), :func:`effective_config_toml` the merged result (``moodscore config``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import ConfigDict, Field, TypeAdapter
from pydantic.dataclasses import dataclass

from daemon.config_sections import (
    AnalysisConfig,
    ComposerConfig,
    ConductorConfig,
    ConfigSection,
    EngineConfig,
    FaceConfig,
    GameConfig,
    LibraryConfig,
    LinkConfig,
    MidiConfig,
    ModelsConfig,
    MqttConfig,
    Os2lConfig,
    OscConfig,
    RecordConfig,
    SourceConfig,
    VisualsConfig,
    WebConfig,
    format_toml_value,
    section_schema,
    suggest,
)
from daemon.errors import ConfigError

__all__ = [
    "CHOICES",
    "DEFAULT_CONFIG_PATH",
    "ENV_PREFIX",
    "NON_CONFIG_ENV",
    "REPO_ROOT",
    "SCENES_DIR",
    "SECTIONS",
    "USER_CONFIG_PATH",
    "AnalysisConfig",
    "ComposerConfig",
    "ConductorConfig",
    "Config",
    "ConfigSection",
    "EngineConfig",
    "FaceConfig",
    "GameConfig",
    "LibraryConfig",
    "LinkConfig",
    "MidiConfig",
    "ModelsConfig",
    "MqttConfig",
    "Os2lConfig",
    "OscConfig",
    "RecordConfig",
    "SourceConfig",
    "VisualsConfig",
    "WebConfig",
    "config_schema",
    "effective_config_toml",
    "load_config",
    "user_config_dir",
    "user_config_path",
    "user_presets_dir",
]

REPO_ROOT = Path(__file__).resolve().parent.parent


def _builtin(name: str) -> Path:
    """The built-in ``config.toml`` or ``scenes/``: package data of an installed wheel
    (``daemon/builtin/``, copied in by the build step in setup.py), else the checkout's root."""
    packaged = importlib.resources.files("daemon") / "builtin" / name
    if isinstance(packaged, Path) and packaged.exists():
        return packaged
    return REPO_ROOT / name


def user_config_dir() -> Path:
    """The user's moodscore folder: ``platformdirs.user_config_dir("moodscore")``.

    ``~/.config/moodscore`` on Linux (``$XDG_CONFIG_HOME/moodscore`` when set),
    ``~/Library/Application Support/moodscore`` on macOS, ``%APPDATA%\\moodscore`` on Windows.
    Read afresh on every call, so a changed ``XDG_CONFIG_HOME`` takes effect.
    """
    return Path(platformdirs.user_config_dir("moodscore", appauthor=False, roaming=True))


def user_config_path() -> Path:
    """The user config file, ``<user_config_dir>/config.toml`` (``moodscore init`` writes it)."""
    return user_config_dir() / "config.toml"


def user_presets_dir() -> Path:
    """The user's preset folder, ``<user_config_dir>/presets``: a preset there overrides the
    built-in one of the same name."""
    return user_config_dir() / "presets"


DEFAULT_CONFIG_PATH = _builtin("config.toml")
SCENES_DIR = _builtin("scenes")
USER_CONFIG_PATH = user_config_path()  # at import; load_config asks user_config_path() afresh
ENV_PREFIX = "MOODSCORE_"

# Names that start with ENV_PREFIX but are not MOODSCORE_<SECTION>_<KEY> config variables; every
# other MOODSCORE_* variable must name a key, so a typo is an error instead of a silent no-op.
# No environment switch of the project uses the prefix today. MOODSCORE_DEVICES is the marker line
# the audio device probe prints (daemon/engine/backends.py); it is listed so that the probe's
# output exported into a shell does not stop moodscore from starting. Add new switches here.
NON_CONFIG_ENV: frozenset[str] = frozenset({"MOODSCORE_DEVICES"})


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Config:
    """The whole configuration; one field per ``[section]`` of config.toml."""

    source: SourceConfig = Field(default_factory=SourceConfig)
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    face: FaceConfig = Field(default_factory=FaceConfig)
    game: GameConfig = Field(default_factory=GameConfig)
    conductor: ConductorConfig = Field(default_factory=ConductorConfig)
    composer: ComposerConfig = Field(default_factory=ComposerConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    midi: MidiConfig = Field(default_factory=MidiConfig)
    record: RecordConfig = Field(default_factory=RecordConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    osc: OscConfig = Field(default_factory=OscConfig)
    os2l: Os2lConfig = Field(default_factory=Os2lConfig)
    link: LinkConfig = Field(default_factory=LinkConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    visuals: VisualsConfig = Field(default_factory=VisualsConfig)
    library: LibraryConfig = Field(default_factory=LibraryConfig)

    def replace(self, section: str, **values: Any) -> Config:
        """A copy with some keys of one section changed, validated like a file would be.

        Raises
        ------
        ConfigError
            An unknown section or key, or a value outside its type, range or choices; the message
            starts with "command line".
        """
        return _merge(self, {section: values}, origin="command line")


# The section models by ``[section]`` name, in config.toml's order.
SECTIONS: dict[str, type[ConfigSection]] = typing.get_type_hints(Config)

# The allowed values of every key that has choices, from its Literal type: the CLI offers them.
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    (name, key): typing.get_args(hint)
    for name, model in SECTIONS.items()
    for key, hint in typing.get_type_hints(model).items()
    if typing.get_origin(hint) is Literal
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
    use_user_file : also read the user config file (:func:`user_config_path`) when no ``path``
        is given.

    Raises
    ------
    ConfigError
        A file is missing or not TOML, a section, key or ``MOODSCORE_*`` variable is unknown, or a
        value is outside its type, range or choices.
    """
    config = Config()
    if DEFAULT_CONFIG_PATH.exists():
        config = _merge(config, _read_toml(DEFAULT_CONFIG_PATH), origin=str(DEFAULT_CONFIG_PATH))
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass an existing TOML file")
        config = _merge(config, _read_toml(path), origin=str(path))
    elif use_user_file and (user_file := user_config_path()).is_file():
        config = _merge(config, _read_toml(user_file), origin=str(user_file))
    for name, values in _environment_overrides(os.environ if environ is None else environ):
        config = _merge(config, values, origin=f"environment ({name})")
    return config


def config_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of config.toml: for editors, ``moodscore config --schema``.

    Each key carries its type, default, description and, where it has them, ``minimum`` and
    ``maximum`` (per item for a list) or ``enum``. Sections are written inline rather than as
    ``$ref``s, so that simple schema readers (taplo's ``#:schema`` directive) follow them too.
    """
    schema = TypeAdapter(Config).json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {
                # Descriptions are docstrings wrapped at the source's width; unwrap them.
                k: " ".join(v.split()) if k == "description" else inline(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    schema = inline(schema)
    schema["title"] = "moodscore config.toml"
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def effective_config_toml(config: Config) -> str:
    """``config`` as a TOML document: every key of every section with its value after all layers.

    It loads back to the same configuration, except that a secret (``mqtt.password``,
    ``web.token``) that is set is left out, with a comment saying so: the output is meant to be
    pasted into bug reports.
    """
    lines = ["# moodscore: the effective configuration (config.toml < user file < environment)."]
    for name, model in SECTIONS.items():
        section = getattr(config, name)
        properties = section_schema(model)["properties"]
        lines += ["", f"[{name}]"]
        for field in dataclasses.fields(section):
            value = getattr(section, field.name)
            if value and properties[field.name].get("writeOnly"):
                lines.append(f"# {field.name} is set (not shown)")
            else:
                lines.append(f"{field.name} = {format_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc


def _environment_overrides(
    environ: Mapping[str, str],
) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """``(variable, {section: {key: value}})`` for each ``MOODSCORE_*`` variable, sorted by name.

    Raises
    ------
    ConfigError
        A ``MOODSCORE_*`` variable (not in :data:`NON_CONFIG_ENV`) names no config key.
    """
    known = {
        f"{ENV_PREFIX}{name}_{field.name}".upper(): (name, field.name)
        for name, model in SECTIONS.items()
        for field in dataclasses.fields(model)  # type: ignore[arg-type]
    }
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in NON_CONFIG_ENV:
            continue
        if name not in known:
            raise ConfigError(
                f"environment: {name} is not a config variable{_env_hint(name, known)}"
            )
        section, key = known[name]
        prop = section_schema(SECTIONS[section])["properties"][key]
        yield name, {section: {key: _parse_env_value(environ[name], prop.get("type"))}}


def _env_hint(name: str, known: Mapping[str, tuple[str, str]]) -> str:
    # Compare what follows the prefix: the shared MOODSCORE_ would make any two names look alike.
    rest = {variable[len(ENV_PREFIX) :]: variable for variable in known}
    close = difflib.get_close_matches(name[len(ENV_PREFIX) :], list(rest), n=1)
    if close:
        return f"; did you mean {rest[close[0]]}?"
    return f"; config variables are {ENV_PREFIX}<SECTION>_<KEY> for the keys of config.toml"


def _parse_env_value(raw: str, json_type: str | None) -> Any:
    """An environment value as TOML reads it (``44100`` -> int, ``[60, 72]`` -> list), else the
    raw string; a string key keeps the raw text unless it is a quoted TOML string, so a password
    ``1e5`` or ``true`` is not turned into a number or a bool first."""
    try:
        document = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    value = document["v"]
    if set(document) != {"v"} or (json_type == "string" and not isinstance(value, str)):
        return raw
    return value


def _merge(config: Config, data: Mapping[str, Any], *, origin: str) -> Config:
    changes: dict[str, Any] = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{name}]{suggest(name, SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{name}] must be a table of keys, got {values!r}")
        changes[name] = getattr(config, name).merged(values, origin=origin)
    return dataclasses.replace(config, **changes)
