"""The configuration contract: config.toml matches the typed defaults, and mistakes are caught
with one line that names where, which key, what is wrong and what is allowed."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from daemon.config import (
    CHOICES,
    DEFAULT_CONFIG_PATH,
    NON_CONFIG_ENV,
    AnalysisConfig,
    ComposerConfig,
    Config,
    EngineConfig,
    config_schema,
    effective_config_toml,
    load_config,
)
from daemon.errors import ConfigError

DEFAULT_TOML = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
# Words of pydantic's own messages that must never reach a user.
PYDANTIC_WORDS = ("Input should", "validation error", "pydantic", "errors.pydantic.dev", "type=")


def _comments() -> dict[tuple[str, str], str]:
    """The comment above each key of config.toml, its lines joined."""
    comments: dict[tuple[str, str], str] = {}
    section, lines = "", list[str]()
    for line in DEFAULT_CONFIG_PATH.read_text().splitlines():
        if header := re.match(r"^\[([a-z0-9_]+)\]", line):
            section, lines = header.group(1), []
        elif line.startswith("#"):
            lines.append(line[1:].strip())
        else:
            if key := re.match(r"^([a-z_]+)\s*=", line):
                comments[(section, key.group(1))] = " ".join(lines)
            lines = []
    return comments


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path}: ") or message.startswith(f"{path} "), message
    for word in PYDANTIC_WORDS:
        assert word not in message, message
    return message


def _env_error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ=environ, use_user_file=False)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("environment"), message
    return message


# -- config.toml and the models agree ------------------------------------------------------


def test_config_toml_lists_every_key_with_the_typed_default() -> None:
    defaults = Config()
    for section in dataclasses.fields(Config):
        assert section.name in DEFAULT_TOML, f"[{section.name}] missing from config.toml"
        typed = getattr(defaults, section.name)
        for key in dataclasses.fields(typed):
            assert key.name in DEFAULT_TOML[section.name], f"{section.name}.{key.name} missing"
            value = DEFAULT_TOML[section.name][key.name]
            expected = getattr(typed, key.name)
            if isinstance(expected, tuple):
                value = tuple(value)
            assert value == expected, f"{section.name}.{key.name}: {value!r} != {expected!r}"
        assert set(DEFAULT_TOML[section.name]) == {k.name for k in dataclasses.fields(typed)}


def test_every_key_in_config_toml_has_a_comment_above_it() -> None:
    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[number - 1].startswith("#"), f"line {number + 1} `{line}` has no comment"


def test_each_field_is_described_by_its_comment_in_config_toml() -> None:
    sections = config_schema()["properties"]
    for (section, key), comment in _comments().items():
        assert sections[section]["properties"][key]["description"] == comment, f"{section}.{key}"


def test_choices_come_from_the_literal_types() -> None:
    modes = typing.get_args(typing.get_type_hints(AnalysisConfig)["mode"])
    assert CHOICES[("analysis", "mode")] == modes == ("frame", "face", "game", "auto")
    sections = config_schema()["properties"]
    for (section, key), choices in CHOICES.items():
        assert sections[section]["properties"][key]["enum"] == list(choices)
    enums = {
        (section, key)
        for section, body in sections.items()
        for key, prop in body["properties"].items()
        if "enum" in prop
    }
    assert enums == set(CHOICES)


# -- files ---------------------------------------------------------------------------------


def test_user_file_overrides_and_unknown_key_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[engine]\nbackend = 'manual'\n[conductor]\nsmoothing_s = 1\n")
    config = load_config(good, environ={})
    assert config.engine.backend == "manual"
    assert config.conductor.smoothing_s == 1.0
    assert isinstance(config.conductor.smoothing_s, float)

    message = _error(tmp_path, "[engine]\nbackends = 'manual'\n")
    assert "unknown key engine.backends; did you mean engine.backend?" in message
    # A key renamed in a release names its new name.
    message = _error(tmp_path, "[midi]\noffset_ms = 20.0\n")
    assert "midi.offset_ms is now midi.delay_ms (the same setting); rename it" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[enigne]\nbackend = 'manual'\n", "unknown section [enigne]; did you mean engine?"),
        ("[engine]\nbackend = 'alsa'\n", 'engine.backend = "alsa" is not one of auto, device'),
        ("[engine]\nbackend = 'jak'\n", "is not one of auto, device, jack, manual, offline; did "),
        (
            "[engine]\nsample_rate = 'fast'\n",
            'sample_rate must be int in [8000, 192000], got "fast"',
        ),
        ("[engine]\nsample_rate = true\n", "engine.sample_rate must be int in [8000, 192000]"),
        ("[engine]\nsample_rate = 44100.0\n", "engine.sample_rate must be int"),
        ("[conductor]\nhysteresis = 3\n", "conductor.hysteresis = 3 is outside [0, 0.5]"),
        ("[engine]\nmaster_gain = nan\n", "engine.master_gain = nan is not finite"),
        ("[midi]\nenabled = 2\n", "midi.enabled must be bool (true or false), got 2"),
        ("[mqtt]\nhost = true\n", "mqtt.host must be str, got true"),
        (
            "[composer]\nregister = [10, 84]\n",
            "register = [10, 84] is outside [21, 108] (each item)",
        ),
        ("[composer]\nregister = [60]\n", "must be a list of 2 ints each in [21, 108], got [60]"),
        ("[analysis]\narousal_weights = 1\n", "arousal_weights must be a list of 3 floats, got 1"),
        ("[engine]\nbuffer_size = 16\n[engine.x]\n", "unknown key engine.x"),
        ("engine = 3\n", "[engine] must be a table of keys"),
        ("[engine\n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_line_naming_key_and_what_is_allowed(
    tmp_path: Path, text: str, words: str
) -> None:
    assert words in _error(tmp_path, text)


def test_every_range_and_every_choice_is_enforced_with_its_bounds_named(tmp_path: Path) -> None:
    for section, body in config_schema()["properties"].items():
        for key, prop in body["properties"].items():
            item = prop["prefixItems"][0] if "prefixItems" in prop else prop
            if "maximum" in item:
                low, high = item["minimum"], item["maximum"]
                value = high + 1 if item["type"] == "integer" else high * 2 + 1
                written = [value] * len(prop["prefixItems"]) if "prefixItems" in prop else value
                text = f"[{section}]\n{key} = {json.dumps(written)}\n"
                message = _error(tmp_path, text)
                assert f"{section}.{key} = " in message, message
                assert f"is outside [{low}, {high}]" in message, message
            if "enum" in prop:
                message = _error(tmp_path, f"[{section}]\n{key} = 'nonesuch'\n")
                assert f'{section}.{key} = "nonesuch" is not one of' in message, message
                assert ", ".join(prop["enum"]) in message, message


def test_lenient_where_toml_and_humans_are(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        "[engine]\nmaster_gain = 1\n[mqtt]\npassword = 1234\n[composer]\nregister = [48, 72]\n"
    )
    config = load_config(path, environ={})
    assert config.engine.master_gain == 1.0 and isinstance(config.engine.master_gain, float)
    assert config.mqtt.password == "1234"
    assert config.composer.register == (48, 72)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})


# -- environment ---------------------------------------------------------------------------


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    config = load_config(None, environ={"MOODSCORE_ENGINE_BACKEND": "manual"}, use_user_file=False)
    assert config.engine.backend == "manual"
    config = load_config(None, environ={"MOODSCORE_COMPOSER_SEED": "7"}, use_user_file=False)
    assert config.composer.seed == 7
    assert config.replace("composer", seed=9).composer.seed == 9
    user = tmp_path / "mine.toml"
    user.write_text("[engine]\nsample_rate = 96000\nbackend = 'jack'\n")
    config = load_config(user, environ={"MOODSCORE_ENGINE_SAMPLE_RATE": "44100"})
    assert (config.engine.sample_rate, config.engine.backend) == (44100, "jack")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("no", False)],
)
def test_environment_bool_strings(raw: str, expected: bool) -> None:
    config = load_config(None, environ={"MOODSCORE_MIDI_ENABLED": raw}, use_user_file=False)
    assert config.midi.enabled is expected


def test_environment_values_are_read_as_toml_but_strings_stay_strings() -> None:
    environ = {
        "MOODSCORE_ENGINE_SAMPLE_RATE": "44100",
        "MOODSCORE_COMPOSER_REGISTER": "[50, 70]",
        "MOODSCORE_MQTT_PASSWORD": "1e5",
        "MOODSCORE_WEB_TOKEN": '"quoted"',
        "MOODSCORE_SOURCE_KIND": "demo",
    }
    config = load_config(None, environ=environ, use_user_file=False)
    assert config.engine.sample_rate == 44100
    assert config.composer.register == (50, 70)
    assert config.mqtt.password == "1e5"
    assert config.web.token == "quoted"
    assert config.source.kind == "demo"


def test_a_bad_environment_value_names_the_variable_and_the_key() -> None:
    message = _env_error({"MOODSCORE_ENGINE_BUFFER_SIZE": "1"})
    assert message == (
        "environment (MOODSCORE_ENGINE_BUFFER_SIZE): engine.buffer_size = 1 is outside [32, 4096]"
    )
    message = _env_error({"MOODSCORE_ANALYSIS_MODE": "faces"})
    assert 'analysis.mode = "faces" is not one of frame, face, game, auto' in message
    assert "did you mean face?" in message
    assert "must be bool (true or false)" in _env_error({"MOODSCORE_MIDI_ENABLED": "maybe"})


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("MOODSCORE_ENGNE_BACKEND", "did you mean MOODSCORE_ENGINE_BACKEND?"),
        ("MOODSCORE_ENGINE_SAMPEL_RATE", "did you mean MOODSCORE_ENGINE_SAMPLE_RATE?"),
        ("MOODSCORE_MQQT_PASSWORD", "did you mean MOODSCORE_MQTT_PASSWORD?"),
        ("MOODSCORE_FROBNICATE", "MOODSCORE_<SECTION>_<KEY>"),
    ],
)
def test_a_misspelt_environment_variable_is_an_error_with_a_hint(name: str, hint: str) -> None:
    message = _env_error({name: "jack"})
    assert name in message and hint in message, message


def test_non_config_moodscore_names_and_other_variables_are_left_alone() -> None:
    environ = {name: "whatever" for name in NON_CONFIG_ENV}
    environ |= {"MOODSCORE": "1", "moodscore_engine_backend": "nope", "HOME": "/root"}
    assert load_config(None, environ=environ, use_user_file=False) == load_config(
        None, environ={}, use_user_file=False
    )


# -- in code: flags, with_, dataclasses.replace ----------------------------------------------


def test_flags_are_validated_like_a_file_and_named_command_line() -> None:
    config = Config()
    with pytest.raises(ConfigError) as caught:
        config.replace("web", port=99999)
    assert str(caught.value) == "command line: web.port = 99999 is outside [0, 65535]"
    with pytest.raises(ConfigError, match=r"^command line: unknown section \[wbe\]; did you mean"):
        config.replace("wbe", port=80)


def test_with_is_a_validated_copy_and_dataclasses_replace_still_works() -> None:
    engine = EngineConfig(sample_rate=44100)
    assert engine.with_(tempo_ramp=0.0) == EngineConfig(sample_rate=44100, tempo_ramp=0.0)
    with pytest.raises(ConfigError, match=r"^EngineConfig\.with_: engine\.tempo_ramp = 5 is outs"):
        engine.with_(tempo_ramp=5)
    with pytest.raises(
        ConfigError, match=r"unknown key engine\.tempo; did you mean engine\.tempo_"
    ):
        engine.with_(tempo=0.5)
    # The sections are (pydantic) dataclasses: replace works and validates too.
    assert dataclasses.replace(engine, tempo_ramp=0.0).tempo_ramp == 0.0
    with pytest.raises(ValueError, match="tempo_ramp"):
        dataclasses.replace(engine, tempo_ramp=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.tempo_ramp = 0.5  # type: ignore[misc]
    assert ComposerConfig(register=(48, 67)).register == (48, 67)


# -- moodscore config [--schema] -------------------------------------------------------------


def _moodscore_config(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MOODSCORE_")}
    # No user file of this machine's: XDG_CONFIG_HOME points at an empty folder.
    clean |= {"PYO_GUI_WX": "0", "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", "config", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean,
    )


# What _schema_errors checks; the schema must use nothing else, or the check would miss it.
SCHEMA_WORDS = {
    "$schema", "title", "description", "type", "properties", "additionalProperties", "default",
    "enum", "minimum", "maximum", "prefixItems", "items", "minItems", "maxItems", "writeOnly",
}  # fmt: skip
JSON_TYPES: dict[str, Any] = {
    "object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
    "boolean": bool,
}  # fmt: skip


def _schema_words(node: Any, properties: bool = False) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_schema_words(item) for item in node))
    if not isinstance(node, dict):
        return set()
    words = set() if properties else set(node)
    for key, value in node.items():
        if key not in ("default", "enum"):
            words |= _schema_words(value, properties=key == "properties" and not properties)
    return words


def _schema_errors(schema: dict[str, Any], value: Any, where: str = "") -> list[str]:
    """A JSON-schema check of the keywords in SCHEMA_WORDS (jsonschema is not installed)."""
    kind = schema.get("type")
    if kind and (
        not isinstance(value, JSON_TYPES[kind])
        or (kind in ("integer", "number") and isinstance(value, bool))
    ):
        return [f"{where}: {value!r} is not {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in enum")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} < minimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{where}: {value!r} > maximum")
    if kind == "object":
        for key, item in value.items():
            if key in schema.get("properties", {}):
                errors += _schema_errors(schema["properties"][key], item, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{key}: not allowed")
    if kind == "array":
        if not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", math.inf):
            errors.append(f"{where}: {len(value)} items")
        item_schemas = schema.get("prefixItems") or [schema.get("items", {})] * len(value)
        for index, (item_schema, item) in enumerate(zip(item_schemas, value, strict=False)):
            errors += _schema_errors(item_schema, item, f"{where}[{index}]")
    return errors


def test_config_schema_describes_every_key_and_validates_the_shipped_file(tmp_path: Path) -> None:
    result = _moodscore_config(tmp_path, "--schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema == config_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert _schema_words(schema) <= SCHEMA_WORDS
    sections = schema["properties"]
    assert set(sections) == set(DEFAULT_TOML)
    for section, keys in DEFAULT_TOML.items():
        assert set(sections[section]["properties"]) == set(keys), section
        for key, value in keys.items():
            prop = sections[section]["properties"][key]
            assert prop["description"] and prop["default"] == value, f"{section}.{key}"
    engine = sections["engine"]["properties"]
    assert (engine["sample_rate"]["minimum"], engine["sample_rate"]["maximum"]) == (8000, 192000)
    assert engine["sample_rate"]["type"] == "integer"
    assert engine["backend"]["enum"] == ["auto", "device", "jack", "manual", "offline"]
    register = sections["composer"]["properties"]["register"]
    assert [(i["minimum"], i["maximum"]) for i in register["prefixItems"]] == [(21, 108)] * 2
    assert sections["engine"]["additionalProperties"] is False

    assert _schema_errors(schema, DEFAULT_TOML) == []
    load_config(DEFAULT_CONFIG_PATH, environ={})
    # The schema refuses what loading refuses.
    bad = {"engine": {"sample_rate": 1000, "backend": "alsa", "bogus": 1}, "enigne": {}}
    assert len(_schema_errors(schema, bad)) == 4


def test_config_prints_the_effective_config_that_loads_back_the_same(tmp_path: Path) -> None:
    user = tmp_path / "mine.toml"
    user.write_text(
        "[engine]\nbackend = 'jack'\n[composer]\nregister = [50, 70]\nstructure = 'AABA'\n"
    )
    env = {"MOODSCORE_ENGINE_SAMPLE_RATE": "44100", "MOODSCORE_SOURCE_KIND": 'C:\\clips\\"a".mp4'}
    result = _moodscore_config(tmp_path, "--config", str(user), env=env)
    assert result.returncode == 0, result.stderr
    assert 'backend = "jack"' in result.stdout and "sample_rate = 44100" in result.stdout
    printed = tmp_path / "printed.toml"
    printed.write_text(result.stdout)
    assert load_config(printed, environ={}) == load_config(user, environ=env)
    assert effective_config_toml(load_config(printed, environ={})) == result.stdout


def test_config_hides_secrets() -> None:
    config = Config().replace("mqtt", password="hunter2").replace("web", token="t0ken")
    text = effective_config_toml(config)
    assert "hunter2" not in text and "t0ken" not in text
    assert "# password is set (not shown)" in text
    assert 'password = ""' in effective_config_toml(Config())


def test_config_with_a_misspelt_environment_variable_is_one_clear_error(tmp_path: Path) -> None:
    result = _moodscore_config(tmp_path, env={"MOODSCORE_ENGNE_BACKEND": "jack"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "moodscore: error: environment: MOODSCORE_ENGNE_BACKEND is not a config variable; "
        "did you mean MOODSCORE_ENGINE_BACKEND?"
    )


def _sync_on(config: Any) -> set[str]:
    """Which of the sync protocols a config turns on."""
    on = {
        "osc": config.osc.enabled,
        "osc-listen": bool(config.osc.listen),
        "os2l": config.os2l.enabled,
        "link": config.link.enabled,
        "midi-clock-in": config.midi.clock_in,
        "group": bool(config.mqtt.group),
    }
    return {name for name, enabled in on.items() if enabled}


@pytest.mark.parametrize(
    ("flags", "turned_on"),
    [
        ([], set()),
        (["--osc", "127.0.0.1:9000"], {"osc"}),
        (["--osc-listen", "9001"], {"osc-listen"}),
        (["--os2l", "127.0.0.1:9996"], {"os2l"}),
        (["--os2l"], {"os2l"}),
        (["--link"], {"link"}),
        (["--link", "follow"], {"link"}),
        (["--midi-clock-in"], {"midi-clock-in"}),
    ],
)
def test_every_sync_protocol_is_off_until_its_one_flag_turns_it_on(
    flags: list[str], turned_on: set[str]
) -> None:
    """The shipped config speaks none of OSC, OS2L, Link or MIDI clock in; each flag of ``run``
    turns on its own protocol and nothing else (issue 16: off by default, one flag each)."""
    from daemon.cli import _with_sync, build_parser

    shipped = load_config(use_user_file=False)
    args = build_parser().parse_args(["run", *flags])
    assert _sync_on(_with_sync(args, shipped)) == turned_on
