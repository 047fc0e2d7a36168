"""The configuration contract: config.toml matches the typed defaults, and mistakes are caught."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from daemon.config import DEFAULT_CONFIG_PATH, Config, load_config
from daemon.errors import ConfigError


def test_config_toml_lists_every_key_with_the_typed_default() -> None:
    data = tomllib.loads(DEFAULT_CONFIG_PATH.read_text())
    defaults = Config()
    for section in dataclasses.fields(Config):
        assert section.name in data, f"[{section.name}] missing from config.toml"
        typed = getattr(defaults, section.name)
        for key in dataclasses.fields(typed):
            assert key.name in data[section.name], f"{section.name}.{key.name} missing"
            value = data[section.name][key.name]
            expected = getattr(typed, key.name)
            if isinstance(expected, tuple):
                value = tuple(value)
            assert value == expected, f"{section.name}.{key.name}: {value!r} != {expected!r}"
        assert set(data[section.name]) == {k.name for k in dataclasses.fields(typed)}


def test_every_key_in_config_toml_has_a_comment_above_it() -> None:
    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[number - 1].startswith("#"), f"line {number + 1} `{line}` has no comment"


def test_user_file_overrides_and_unknown_key_is_named(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[engine]\nbackend = 'manual'\n[conductor]\nsmoothing_s = 1\n")
    config = load_config(good, environ={})
    assert config.engine.backend == "manual"
    assert config.conductor.smoothing_s == 1.0

    typo = tmp_path / "typo.toml"
    typo.write_text("[engine]\nbackends = 'manual'\n")
    with pytest.raises(ConfigError, match=r"engine\.backends.*did you mean engine\.backend"):
        load_config(typo, environ={})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[enigne]\nbackend = 'manual'\n", "unknown section"),
        ("[engine]\nbackend = 'alsa'\n", "not one of"),
        ("[engine]\nsample_rate = 'fast'\n", "must be int"),
        ("[conductor]\nhysteresis = 3\n", "outside"),
        ("[engine\n", "not valid TOML"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(path, environ={})


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    config = load_config(None, environ={"MOODSCORE_ENGINE_BACKEND": "manual"}, use_user_file=False)
    assert config.engine.backend == "manual"
    config = load_config(None, environ={"MOODSCORE_COMPOSER_SEED": "7"}, use_user_file=False)
    assert config.composer.seed == 7
    assert config.replace("composer", seed=9).composer.seed == 9
    with pytest.raises(ConfigError):
        load_config(None, environ={"MOODSCORE_ENGINE_BUFFER_SIZE": "1"}, use_user_file=False)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
