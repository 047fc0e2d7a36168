"""The installed command's surroundings: user presets over built-in ones, `moodscore init`, shell
completion, `python -m moodscore` and the one version."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import mido
import pytest

import daemon
from daemon.cli import build_parser, main
from daemon.config import SCENES_DIR, load_config, user_config_dir, user_presets_dir
from daemon.install import commented_config, completion_script, init_user_files
from daemon.scenes import BUILT_IN, PresetLibrary

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user config folder (platformdirs follows XDG_CONFIG_HOME on Linux)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert user_config_dir() == tmp_path / "xdg" / "moodscore"
    return user_config_dir()


def _fast_calm() -> str:
    text = (SCENES_DIR / "calm.toml").read_text()
    assert "bpm_min = 60" in text and "bpm_max = 96" in text
    return text.replace("bpm_min = 60", "bpm_min = 150").replace("bpm_max = 96", "bpm_max = 150")


def test_a_user_calm_overrides_the_built_in_calm(user_home: Path, tmp_path: Path) -> None:
    presets = user_presets_dir()
    presets.mkdir(parents=True)
    (presets / "calm.toml").write_text(_fast_calm())
    library = PresetLibrary(load_config(use_user_file=True, environ={}).conductor.preset_dirs)
    assert library.folder_of("calm") == presets
    assert library.get("calm").bpm_min == 150
    assert BUILT_IN.get("calm").bpm_min == 60  # the shipped file is unchanged
    assert library.folder_of("combat") == SCENES_DIR  # other names still come from the built-ins
    # What a listener gets: `compose --scene calm` plays the user's tempo.
    out = tmp_path / "calm.mid"
    args = ["compose", "--scene", "calm", "--valence", "0", "--arousal", "0", "--bars", "2"]
    assert main([*args, "-o", str(out), "-q"]) == 0
    tempos = [
        round(mido.tempo2bpm(m.tempo)) for t in mido.MidiFile(out).tracks for m in t
        if m.type == "set_tempo"
    ]  # fmt: skip
    assert tempos == [150]


def test_init_writes_a_config_that_changes_nothing_until_a_line_is_uncommented(
    user_home: Path,
) -> None:
    assert main(["init", "--copy-preset", "calm", "-q"]) == 0
    config_file = user_home / "config.toml"
    text = config_file.read_text()
    assert tomllib.loads(text).keys() >= {"source", "engine", "conductor"}
    assert all(not values for values in tomllib.loads(text).values())  # every key commented
    assert load_config(environ={}) == load_config(environ={}, use_user_file=False)
    config_file.write_text(text.replace('# scene = "default"', 'scene = "combat"', 1))
    assert load_config(environ={}).conductor.scene == "combat"
    presets = user_presets_dir()
    assert (presets / "calm.toml").read_text() == (SCENES_DIR / "calm.toml").read_text()
    assert (presets / "README.txt").is_file()
    # A second init keeps the user's edits and refuses to copy over their preset.
    assert main(["init", "-q"]) == 0
    assert 'scene = "combat"' in config_file.read_text()
    assert main(["init", "--copy-preset", "calm", "-q"]) == 2
    assert main(["init", "--copy-preset", "nope", "-q"]) == 2


def test_the_commented_config_names_every_key_of_the_built_in_one() -> None:
    built_in = (REPO_ROOT / "config.toml").read_text().splitlines()
    keys = [line for line in built_in if line.strip() and not line.startswith(("#", "["))]
    commented = commented_config().splitlines()
    assert len(keys) > 50
    assert all(f"# {line}" in commented for line in keys)


def test_init_into_a_given_folder_leaves_an_existing_config(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[engine]\n")
    result = init_user_files(folder=tmp_path)
    assert result.config is None and (tmp_path / "config.toml").read_text() == "[engine]\n"
    assert init_user_files(folder=tmp_path, force=True).config == tmp_path / "config.toml"


def _complete(shell_script: Path, *words: str) -> list[str]:
    line = " ".join(words)
    script = (
        f"source {shell_script}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        '_moodscore; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.split()


def test_bash_completion_offers_commands_flags_and_subcommands(tmp_path: Path) -> None:
    script = tmp_path / "moodscore.bash"
    script.write_text(completion_script(build_parser(), "bash"))
    assert "compose" in _complete(script, "moodscore", "comp")
    assert _complete(script, "moodscore", "comp") == ["compose", "completion"]
    assert "--valence" in _complete(script, "moodscore", "compose", "--v")
    assert "--scene" in _complete(script, "moodscore", "compose", "--sc")
    assert _complete(script, "moodscore", "library", "sc") == ["scan"]
    assert "--workers" in _complete(script, "moodscore", "library", "scan", "--w")
    assert _complete(script, "moodscore", "completion", "z") == ["zsh"]
    zsh = completion_script(build_parser(), "zsh")
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")


def test_the_completion_command_prints_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    assert "complete -o filenames -F _moodscore moodscore" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["completion", "fish"])


def test_python_m_moodscore_is_the_command_and_the_version_is_written_once() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moodscore", "--version"],
        capture_output=True, text=True, check=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == f"moodscore {daemon.__version__}"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "daemon.__version__"}


def test_a_missing_extra_is_one_line_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon import extras

    real = extras.importlib.util.find_spec
    monkeypatch.setattr(
        extras.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("librosa", "music21") else real(name, *a),
    )
    assert main(["library", "scan", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "[library] extra (librosa not installed)" in err
    assert "pip install 'moodscore[library]'" in err
    data = tmp_path / "none.json.gz"
    assert main(["train-melody", "--data", str(data), "-o", str(tmp_path / "m.pt")]) == 2
    assert "pip install 'moodscore[train]'" in capsys.readouterr().err


def test_the_readme_documents_every_command_and_flag_of_help() -> None:
    from daemon.install import _options, _subcommands

    readme = (REPO_ROOT / "README.md").read_text()
    for name, sub in _subcommands(build_parser()).items():
        assert f"| `moodscore {name}" in readme, f"no row for `moodscore {name}` in the README"
        for inner in _subcommands(sub).values() or [sub]:
            missing = [flag for flag in _options(inner) if flag not in readme]
            assert not missing, f"`moodscore {name}` flags not in the README: {missing}"
