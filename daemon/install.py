"""What an installed ``moodscore`` needs around it: ``moodscore init`` and shell completion.

:func:`init_user_files` writes the user config (every key of the built-in ``config.toml``,
commented out, so uncommenting one line changes one thing) and the user's preset folder, whose
presets override the built-in ones by name (:class:`daemon.scenes.PresetLibrary`).
:func:`completion_script` turns the argparse tables into a bash or zsh completion script.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from daemon.config import DEFAULT_CONFIG_PATH, SCENES_DIR, user_config_dir
from daemon.errors import ConfigError

SHELLS = ("bash", "zsh")

_PRESETS_README = """\
Your scene presets: one TOML file per preset, named like the preset (calm.toml is `calm`).

A file here overrides the built-in preset of the same name; a new name adds a preset. Start
from a copy of a built-in one (`moodscore init --copy-preset calm` copies calm.toml here);
every key is optional and documented in the built-in default.toml (a copy is written here as
default.toml.example). Presets are read again when they change, so edits reach the music at
the next bar while it plays.
"""


@dataclass(frozen=True, slots=True)
class InitResult:
    """What :func:`init_user_files` wrote (``None``: left as it was)."""

    config: Path | None
    presets: Path
    copied: tuple[Path, ...]


def commented_config() -> str:
    """The built-in config.toml with every key line commented out, section headers kept.

    The result loads as an empty configuration (it changes nothing) until a line is uncommented.
    """
    lines = [
        "# moodscore user configuration, written by `moodscore init`.",
        "# It sits over the built-in defaults (shown below, commented out): uncomment a key and",
        "# change its value to change that one setting. Environment variables",
        "# MOODSCORE_<SECTION>_<KEY> and command-line flags come on top.",
        "",
    ]
    header_done = False
    for line in DEFAULT_CONFIG_PATH.read_text().splitlines():
        stripped = line.strip()
        if not header_done:
            if not stripped.startswith("["):
                continue  # the built-in file's own header is about the built-in file
            header_done = True
        if not stripped or stripped.startswith("#") or re.fullmatch(r"\[[\w.]+\]", stripped):
            lines.append(line)
        else:
            lines.append(f"# {line}")
    return "\n".join(lines) + "\n"


def init_user_files(
    *, folder: Path | None = None, force: bool = False, copy_presets: tuple[str, ...] = ()
) -> InitResult:
    """Write ``<folder>/config.toml`` (commented) and ``<folder>/presets/``.

    Parameters
    ----------
    folder : where (default: :func:`daemon.config.user_config_dir`).
    force : overwrite an existing config.toml (presets are never overwritten).
    copy_presets : built-in presets to copy into the preset folder for editing.

    Raises
    ------
    ConfigError
        A preset to copy is not a built-in one, or it is already in the preset folder.
    """
    folder = folder or user_config_dir()
    presets = folder / "presets"
    presets.mkdir(parents=True, exist_ok=True)
    config_path: Path | None = folder / "config.toml"
    assert config_path is not None
    if config_path.exists() and not force:
        config_path = None
    else:
        config_path.write_text(commented_config())
    readme = presets / "README.txt"
    if not readme.exists():
        readme.write_text(_PRESETS_README)
    example = presets / "default.toml.example"
    if not example.exists():
        example.write_text((SCENES_DIR / "default.toml").read_text())
    copied = []
    for name in copy_presets:
        source = SCENES_DIR / f"{name}.toml"
        if not source.is_file():
            built_in = ", ".join(sorted(p.stem for p in SCENES_DIR.glob("*.toml")))
            raise ConfigError(f"no built-in preset {name!r} to copy; built-in: {built_in}")
        target = presets / source.name
        if target.exists():
            raise ConfigError(f"{target} exists already; edit it, or remove it to copy afresh")
        target.write_text(source.read_text())
        copied.append(target)
    return InitResult(config=config_path, presets=presets, copied=tuple(copied))


# -- shell completion -----------------------------------------------------------------------


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        option
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A completion script for ``shell`` (``bash`` or ``zsh``) from the parser's tables.

    Completes the command names, each command's ``--flags`` (and a subcommand's own commands,
    as in ``moodscore library scan``), and file names elsewhere. zsh loads the bash function
    through ``bashcompinit``.

    Raises
    ------
    ConfigError
        An unknown shell.
    """
    if shell not in SHELLS:
        raise ConfigError(f"no completion for {shell!r}; shells: {', '.join(SHELLS)}")
    commands = _subcommands(parser)
    cases = []
    for name, sub in commands.items():
        subs = _subcommands(sub)
        line = f"        {shlex.quote(name)}) opts={shlex.quote(' '.join(_options(sub)))}"
        choices = [
            str(choice)
            for action in sub._actions
            if not action.option_strings and action.choices and not subs
            for choice in action.choices
        ]
        if choices:  # a positional with fixed values, as `completion bash|zsh`
            line += f"; subs={shlex.quote(' '.join(choices))}"
        if subs:
            indent = " " * 16
            nested = "\n".join(
                f"{indent}{shlex.quote(inner)}) opts={shlex.quote(' '.join(_options(deeper)))} ;;"
                for inner, deeper in subs.items()
            )
            line += (
                f"; subs={shlex.quote(' '.join(subs))}\n"
                f'            case "${{COMP_WORDS[2]:-}}" in\n{nested}\n            esac'
            )
        cases.append(line + " ;;")
    top = " ".join([*commands, *_options(parser)])
    body = f"""\
# moodscore {shell} completion: `moodscore completion {shell}`.
_moodscore() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" opts="" subs=""
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W {shlex.quote(top)} -- "$cur"))
        return 0
    fi
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
    esac
    if [[ "$COMP_CWORD" -eq 2 && -n "$subs" && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    elif [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return 0
}}
complete -o filenames -F _moodscore moodscore
"""
    if shell == "zsh":
        body = "autoload -U +X bashcompinit && bashcompinit\n" + body
    return body
