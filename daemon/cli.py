"""The ``moodscore`` command: run | render | compose | analyze | config | doctor | bench |
train-melody | train-scene | library | init | completion.

Every user error (bad flag, missing file, bad config key, unavailable backend) ends as one line on
stderr and exit status 2; nothing a user can fix prints a traceback.

This module stays whole (about 680 lines): it is the argparse tables of fourteen commands, the flags
that map onto config keys, and each command's one-line report; the work is in :mod:`daemon.app`,
:mod:`daemon.training`, :mod:`daemon.library` and :mod:`daemon.bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from daemon import __version__
from daemon.config import Config, load_config
from daemon.errors import ConfigError, MoodscoreError

log = logging.getLogger("moodscore")

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"moodscore: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="moodscore",
        description="Live adaptive soundtrack: watches faces or game video, plays music to match.",
    )
    parser.add_argument("--version", action="version", version=f"moodscore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", type=Path, metavar="FILE", help="a TOML file over config.toml")
        sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        sub.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
        return sub

    run = add("run", "the live daemon: watch a source and play music that follows it")
    run.add_argument(
        "--source",
        metavar="SPEC",
        help="demo | webcam[:N] | /dev/videoN | FILE (default: webcam if one opens, else demo)",
    )
    run.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="stop after this long"
    )
    run.add_argument("--record", type=Path, metavar="DIR", help="record WAV + timeline into DIR")
    run.add_argument("--backend", metavar="NAME", help="audio backend: auto|device|jack|manual")
    run.add_argument("--seed", type=int, help="seed for the composer (default: config)")
    _add_mode_flag(run)
    run.add_argument("--midi", type=Path, metavar="OUT.mid", help="also write the music as MIDI")
    _add_beats_flag(run)
    run.add_argument(
        "--midi-port",
        nargs="?",
        const="",
        metavar="NAME",
        help="mirror the music live to MIDI port NAME (no NAME: a virtual port `moodscore`)",
    )
    run.add_argument("--midi-backend", metavar="NAME", help="MIDI backend: auto|jack|alsa")
    _add_mqtt_flag(run)
    run.add_argument(
        "--web",
        metavar="HOST:PORT",
        help="serve the OBS page (/) and control panel (/panel) here (default: config "
        "web.host:web.port, 127.0.0.1:8080)",
    )
    run.add_argument("--no-web", action="store_true", help="no web server (OBS page, panel, API)")
    run.add_argument(
        "--game-audio",
        metavar="DEVICE",
        help="hear the game's own audio in game mode: jack:PORTS, pulse:NAME or NAME.monitor, or "
        "a PortAudio input (default: config game.audio_device); capture the game only",
    )
    run.add_argument(
        "--game",
        metavar="NAME",
        help="load and keep what you teach for this game (its profile; default: config "
        "game.profile); turns on --mode game unless --mode says otherwise",
    )
    _add_sync_flags(run)

    profile = add("profile", "list, export or import taught game profiles")
    profile.add_argument("action", choices=("list", "export", "import"))
    profile.add_argument("game", nargs="?", metavar="GAME", help="the game (export; import: as)")
    profile.add_argument("file", nargs="?", type=Path, metavar="FILE", help="the profile file")

    teach = add("teach", "teach a game's profile a scene from a recording (no music plays)")
    teach.add_argument("clip", type=Path, metavar="CLIP", help="a video file of the game")
    teach.add_argument("--game", required=True, metavar="NAME", help="the game's profile")
    teach.add_argument("--scene", required=True, metavar="SCENE", help="what CLIP shows")
    teach.add_argument(
        "--start", type=float, default=0.0, metavar="SECONDS", help="from this far into CLIP"
    )
    teach.add_argument(
        "--seconds",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="this much of it (at most 120, the default)",
    )

    render = add("render", "score a video file (or `demo`) faster than real time")
    render.add_argument(
        "input", metavar="INPUT", help="a video file, or `demo` for the built-in scene"
    )
    render.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4|OUT.wav")
    render.add_argument("--seed", type=int, help="same input + seed = same notes (default: config)")
    _add_mode_flag(render)
    render.add_argument("--timeline", type=Path, metavar="OUT.json", help="also write the timeline")
    render.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="length of a `demo` render"
    )
    render.add_argument("--midi", type=Path, metavar="OUT.mid", help="also write the score as MIDI")
    _add_beats_flag(render)
    _add_mqtt_flag(render)
    render.add_argument(
        "--visuals",
        choices=("overlay", "only", "none"),
        help="beat-synced visuals in the MP4: over the input's picture, alone, or none "
        "(default: config visuals.render)",
    )
    _add_no_game_audio_flag(render)

    compose = add("compose", "music for a fixed mood, to WAV and/or MIDI (audition presets)")
    compose.add_argument("--valence", type=float, required=True, metavar="V", help="-1 .. 1")
    compose.add_argument("--arousal", type=float, required=True, metavar="A", help="-1 .. 1")
    compose.add_argument("--scene", metavar="NAME", help="scene preset (default: config)")
    compose.add_argument("--bpm", type=float, metavar="N", help="override the tempo (60-180)")
    compose.add_argument("--layers", type=int, metavar="N", help="override the layers (1-5)")
    compose.add_argument("--bars", type=int, required=True, metavar="N", help="bars to compose")
    compose.add_argument("--seed", type=int, help="same arguments + seed = same music")
    compose.add_argument(
        "--seed-track",
        type=Path,
        metavar="FILE.mid",
        help="prime the melody LSTM with a phrase of this MIDI file's top line",
    )
    compose.add_argument(
        "-o",
        "--output",
        type=Path,
        action="append",
        required=True,
        metavar="OUT.wav|OUT.mid",
        help="a file to write; give -o several times for WAV and MIDI of the same performance",
    )

    analyze = add("analyze", "the analysis alone: a per-window valence/arousal timeline")
    analyze.add_argument("input", metavar="INPUT", help="a video file, or `demo`")
    analyze.add_argument("-o", "--output", type=Path, required=True, metavar="timeline.json")
    _add_mode_flag(analyze)
    analyze.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="length of a `demo` analysis"
    )
    _add_no_game_audio_flag(analyze)

    add(
        "doctor",
        "what this machine offers: platform backends, audio, cameras, screen, GPU, broker, "
        "MIDI, models, extras",
    )

    config_command = add("config", "print the effective configuration as TOML (after all layers)")
    config_command.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON schema of config.toml instead (for editors, e.g. taplo's #:schema)",
    )

    bench = add("bench", "measure speed figures and print them as JSON")
    bench.add_argument("--quick", action="store_true", help="shorter runs (less precise)")
    bench.add_argument("-o", "--output", type=Path, metavar="OUT.json", help="also write the JSON")
    bench.add_argument(
        "--skip",
        type=_bench_sections,
        default=(),
        metavar="SECTION,...",
        help="leave these sections out, comma-separated (an unknown name lists them)",
    )

    train = add("train-melody", "train the melody LSTM, or fine-tune it on your own MIDI files")
    train.add_argument(
        "--data",
        type=Path,
        metavar="DIR|DATASET",
        help="a folder of MIDI files, or a dataset from tools/prepare_melodies.py "
        "(default: .cache/melodies.json.gz)",
    )
    train.add_argument("--epochs", type=int, metavar="N", help="passes (default 20; 8 with --init)")
    train.add_argument(
        "--init", type=Path, metavar="WEIGHTS", help="fine-tune these weights (not from scratch)"
    )
    train.add_argument("--seed", type=int, default=0, help="seed for initialisation and order")
    train.add_argument("--limit", type=int, metavar="N", help="use only the first N tunes")
    train.add_argument("-o", "--output", type=Path, required=True, metavar="PATH.pt")

    scene = add("train-scene", "train a scene model for your game from folders of clips per class")
    scene.add_argument(
        "clips", type=Path, metavar="CLIPS_DIR", help="one folder per class of videos or frames"
    )
    scene.add_argument("-o", "--output", type=Path, required=True, metavar="MODEL.pt")
    scene.add_argument(
        "--base", type=Path, metavar="MODEL.pt", help="start from this model (default: shipped)"
    )
    scene.add_argument("--epochs", type=int, default=6, metavar="N", help="epochs per stage")
    scene.add_argument("--steps", type=int, default=60, metavar="N", help="steps per epoch")
    scene.add_argument("--seed", type=int, default=0, help="seed for the split and training")

    from daemon.library.commands import add_library_parser, add_play_flags

    add_play_flags(run)
    add_play_flags(render)
    add_library_parser(commands, _add_common_flags)

    init = add("init", "write a commented user config and a presets folder (your own presets)")
    init.add_argument("--force", action="store_true", help="overwrite an existing user config")
    init.add_argument(
        "--copy-preset",
        action="append",
        default=[],
        metavar="NAME",
        help="copy a built-in preset into your presets folder to edit (repeatable)",
    )
    completion = add("completion", "print a shell completion script: bash or zsh")
    completion.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    return parser


def _add_common_flags(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--config", type=Path, metavar="FILE", help="a TOML file over config.toml")
    sub.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


def _add_no_game_audio_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-game-audio",
        action="store_true",
        help="game mode: ignore the file's audio track (default: heard when there is one)",
    )
    parser.add_argument(
        "--no-game-text",
        action="store_true",
        help="game mode: do not read on-screen text (default: config game.text)",
    )


def _add_mode_flag(parser: argparse.ArgumentParser) -> None:
    from daemon.config import CHOICES

    modes = CHOICES[("analysis", "mode")]
    parser.add_argument(
        "--mode",
        choices=modes,
        help=f"what reads the mood: {' | '.join(modes)} (default: config analysis.mode)",
    )


def _add_beats_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--beats",
        type=Path,
        metavar="OUT.json",
        help="also write the beat map: every bar and beat with its time, tempo, scene, layers",
    )


def _add_mqtt_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt",
        nargs="?",
        const="",
        metavar="HOST[:PORT]",
        help="beats, state and control over MQTT via this broker (no HOST: config mqtt.host)",
    )


def _add_sync_flags(run: argparse.ArgumentParser) -> None:
    """Playing in time with other programs: OSC, OS2L, Link, MIDI clock in, the sound card."""
    run.add_argument(
        "--osc", metavar="HOST:PORT", help="send beats, bars, phase, mood and scene as OSC here"
    )
    run.add_argument(
        "--osc-listen",
        metavar="[HOST:]PORT",
        help="take OSC commands (/moodscore/cmd/<name>) on this UDP port (host: 127.0.0.1)",
    )
    run.add_argument(
        "--os2l",
        nargs="?",
        const="",
        metavar="HOST:PORT",
        help="send OS2L beats to a lighting program (QLC+, SoundSwitch) listening there (no "
        "HOST:PORT: find it on the network by DNS-SD, _os2l._tcp)",
    )
    run.add_argument(
        "--midi-clock-in",
        nargs="?",
        const="",
        metavar="PORT",
        help="follow an outside MIDI clock's tempo and Start/Stop/Continue from input PORT (no "
        "PORT: a virtual input `moodscore-clock-in` to connect the clock to)",
    )
    run.add_argument(
        "--link",
        nargs="?",
        const="",
        type=_link_mode,
        metavar="lead|follow",
        help="join the Ableton Link session on the local network, leading its tempo and phase "
        "or following them (no word: config link.follow)",
    )
    run.add_argument(
        "--group",
        metavar="NAME",
        help="also take MQTT commands sent to <prefix>/group/NAME/cmd/<name> (every daemon of "
        "one installation in that group hears them); needs MQTT",
    )
    run.add_argument(
        "--device",
        metavar="NAME|INDEX",
        help="play on this sound card (a unique part of its name, or its index, as `moodscore "
        "doctor` lists them)",
    )


def _link_mode(text: str) -> str:
    # argparse passes a bare --link's const ("") through this too: it means "as configured".
    if text not in ("", "lead", "follow"):
        raise argparse.ArgumentTypeError(f"{text!r}: give lead or follow (or nothing)")
    return text


def _with_sync(args: argparse.Namespace, config: Config) -> Config:
    """``--osc``, ``--osc-listen``, ``--os2l``, ``--midi-clock-in``, ``--link``, ``--group``,
    ``--device`` over their
    config sections, checked before anything opens."""
    from daemon.control.net import parse_host_port

    if args.osc is not None:
        host, port = parse_host_port(args.osc, what="--osc", default_host="127.0.0.1")
        config = config.replace("osc", enabled=True, host=host, port=port)
    if args.osc_listen is not None:
        parse_host_port(args.osc_listen, what="--osc-listen", default_host="127.0.0.1", listen=True)
        config = config.replace("osc", listen=args.osc_listen)
    if args.os2l == "":
        config = config.replace("os2l", enabled=True, host="")
    elif args.os2l is not None:
        host, port = parse_host_port(args.os2l, what="--os2l", default_host=None)
        config = config.replace("os2l", enabled=True, host=host, port=port)
    if args.midi_clock_in is not None:
        config = config.replace("midi", clock_in=True, clock_in_port=args.midi_clock_in)
    if args.device is not None:
        config = config.replace("engine", device=args.device)
    if args.link is not None:
        follow = config.link.follow if args.link == "" else args.link == "follow"
        config = config.replace("link", enabled=True, follow=follow)
    if config.link.enabled and config.link.follow and config.library.play:
        raise ConfigError(
            "link.follow cannot bend library tracks to a session's tempo; lead (--link lead) or "
            "turn library.play off"
        )
    if args.group is not None:
        config = config.replace("mqtt", group=args.group)
    if config.mqtt.group:
        from daemon.control.mqtt_topics import group_topic

        if not config.mqtt.enabled:
            raise ConfigError(
                "an MQTT group needs MQTT: pass --mqtt HOST[:PORT] or set mqtt.enabled = true"
            )
        group_topic(config.mqtt)
    return config


def _with_mqtt(args: argparse.Namespace, config: Config) -> Config:
    """``--mqtt [HOST[:PORT]]`` turns ``[mqtt]`` on for this run, with that broker; the MQTT
    settings are checked before anything opens."""
    from daemon.control.mqtt import check_config, parse_broker

    if args.mqtt == "":
        config = config.replace("mqtt", enabled=True)
    elif args.mqtt is not None:
        host, port = parse_broker(args.mqtt)
        config = config.replace("mqtt", enabled=True, host=host, port=port or config.mqtt.port)
    if config.mqtt.enabled:
        check_config(config.mqtt)
    return config


def _with_web(args: argparse.Namespace, config: Config) -> Config:
    """``--web HOST:PORT`` / ``--no-web`` over ``[web]``."""
    from daemon.web.server import parse_address

    if args.no_web:
        if args.web is not None:
            raise ConfigError("--web and --no-web contradict each other; pass one")
        return config.replace("web", enabled=False)
    if args.web is not None:
        host, port = parse_address(args.web)
        config = config.replace("web", enabled=True, host=host, port=port)
    return config


def _with_mode(args: argparse.Namespace, config: Config) -> Config:
    """``--mode`` over ``analysis.mode``; ``--no-game-audio``, ``--no-game-text`` and
    ``--game-audio`` over ``game.audio``, ``game.text`` and ``game.audio_device``."""
    if args.mode is not None:
        config = config.replace("analysis", mode=args.mode)
    if getattr(args, "no_game_audio", False):
        config = config.replace("game", audio=False)
    if getattr(args, "no_game_text", False):
        config = config.replace("game", text=False)
    if getattr(args, "game_audio", None):
        config = config.replace("game", audio_device=args.game_audio)
    return config


def _with_library(args: argparse.Namespace, config: Config) -> Config:
    """``--library`` / ``--seed-track`` over ``[library]`` (a library folder is scanned)."""
    from daemon.library.commands import apply_play_flags

    return apply_play_flags(args, config)


def _bench_sections(text: str) -> tuple[str, ...]:
    from daemon.bench import check_sections

    named = tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        check_sections(named)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return named


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    os.environ.setdefault("PYO_GUI_WX", "0")
    # Torch's OpenMP threads spin while idle; beside pyo's audio thread on a small machine that
    # steals the core the audio needs. Passive waiting costs nothing measurable here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    _configure_logging(verbose=args.verbose, quiet=args.quiet)
    handlers: dict[str, Callable[[argparse.Namespace, Config], int]] = {
        "run": _cmd_run,
        "render": _cmd_render,
        "compose": _cmd_compose,
        "analyze": _cmd_analyze,
        "doctor": _cmd_doctor,
        "config": _cmd_config,
        "bench": _cmd_bench,
        "train-melody": _cmd_train_melody,
        "train-scene": _cmd_train_scene,
        "library": _cmd_library,
        "init": _cmd_init,
        "completion": _cmd_completion,
        "profile": _cmd_profile,
        "teach": _cmd_teach,
    }
    try:
        config = load_config(args.config)
        return handlers[args.command](args, config)
    except MoodscoreError as exc:
        print(f"moodscore: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # unwritable output folder, disk full: the system's words suffice
        print(f"moodscore: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moodscore: interrupted", file=sys.stderr)
        return 130


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    root = logging.getLogger("moodscore")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Modules that log under their own dotted name ("daemon.outputs.recorder": a full disk,
    # a late engine) reach the user in the same words. They still propagate, so a program
    # (or test) that listens on the root logger hears them too.
    modules = logging.getLogger("daemon")
    modules.handlers[:] = [handler]
    modules.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to the ``sys.stderr`` of the moment, not the one at set-up: a test runner (or an
    embedding program) may swap it, and a closed stream would turn every log line into an error."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and logging.getLogger("moodscore").isEnabledFor(logging.DEBUG):
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.ERROR:
            return f"moodscore: error: {text}"
        if record.levelno >= logging.WARNING:
            return f"moodscore: warning: {text}"
        return f"moodscore: {text}"


# -- run ----------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, config: Config) -> int:
    from daemon.app import LiveRequest, run_live

    if args.backend is not None:
        config = config.replace("engine", backend=args.backend)
    if args.midi_port is not None:
        config = config.replace("midi", enabled=True, port=args.midi_port)
    if args.midi_backend is not None:
        config = config.replace("midi", backend=args.midi_backend)
    config = _with_sync(args, _with_web(args, _with_music_flags(args, config)))
    if args.game is not None:
        from daemon.analysis.profiles import check_name

        config = config.replace("game", profile=check_name(args.game))
        if args.mode is None and config.analysis.mode not in ("game", "auto"):
            config = config.replace("analysis", mode="game")
    request = LiveRequest(
        source=args.source,
        duration=args.duration,
        record_dir=args.record,
        midi=args.midi,
        beats=args.beats,
        web_port_flexible=args.web is None,
    )
    return run_live(config, request)


# -- profile ------------------------------------------------------------------------------


def _cmd_profile(args: argparse.Namespace, config: Config) -> int:
    """``moodscore profile list | export GAME FILE | import FILE [as GAME]``."""
    from daemon.analysis import profiles
    from daemon.analysis.game import resolve_model_path

    if args.action == "list":
        found = profiles.list_profiles()
        print(f"game profiles in {profiles.profiles_dir()}:" if found else "no game profiles yet")
        for summary in found:
            print(f"  {summary.describe()}")
        return 0
    expect = profiles.model_hash(resolve_model_path(config.game.model))
    if args.action == "export":
        if args.game is None or args.file is None:
            raise ConfigError(
                "profile export needs GAME and FILE: moodscore profile export NAME OUT"
            )
        path = profiles.profile_path(args.game)
        if not path.is_file():
            raise ConfigError(
                f"no profile for game {args.game!r}; `moodscore profile list` shows those taught"
            )
        data = profiles.load(path, expect_hash=None)
        profiles.save(args.file, data)
        log.info("exported %s to %s", profiles.summarise(data, args.file).describe(), args.file)
        return 0
    # import: `profile import FILE` or `profile import GAME FILE`
    source, name = (args.file, args.game) if args.file is not None else (args.game, None)
    if source is None:
        raise ConfigError("profile import needs FILE: moodscore profile import [GAME] FILE")
    target = profiles.import_file(Path(source), name=name, expect_hash=expect)
    log.info("imported %s as %s", source, target)
    return 0


def _cmd_teach(args: argparse.Namespace, config: Config) -> int:
    """``moodscore teach --game NAME --scene SCENE CLIP``: one batch, trained, saved."""
    from daemon.analysis.game import resolve_model_path
    from daemon.analysis.profiles import check_name
    from daemon.analysis.teach import make_teacher
    from daemon.control.commands import TeachCommand, parse_command
    from daemon.scenes import PresetLibrary

    command = parse_command(
        "teach",
        {"scene": args.scene, "seconds": min(args.seconds, 120.0), "start": args.start},
        scenes=PresetLibrary(config.conductor.preset_dirs).names(),
    )
    assert isinstance(command, TeachCommand)
    teacher = make_teacher(
        model_path=resolve_model_path(config.game.model),
        game=check_name(args.game),
        worker="thread",
    )
    try:
        what = teacher.teach_file(
            command.scene, args.clip, start=command.start, seconds=command.seconds
        )
        teacher.wait_idle(600)
        teacher.promote()
    finally:
        teacher.close()
    state = teacher.snapshot()
    held = state["held_back"]
    print(f"taught {what}; {teacher.summary().describe()}")
    if held["adapted"] is not None:
        print(
            f"held back: the taught head {held['adapted']:.2f}, the general model "
            f"{held['general']:.2f}"
        )
    return 0 if teacher.error is None else 1


# -- render -------------------------------------------------------------------------------


def _cmd_render(args: argparse.Namespace, config: Config) -> int:
    from daemon.app import RenderRequest, check_render, render

    config = _with_music_flags(args, config)
    request = RenderRequest(
        input=args.input,
        output=args.output,
        duration=args.duration,
        timeline=args.timeline,
        midi=args.midi,
        beats=args.beats,
        visuals=args.visuals,
    )
    check_render(request)
    return render(config, request, progress=lambda total: _progress_bar(total, "rendering"))


@contextlib.contextmanager
def _progress_bar(total: float | None, label: str) -> Iterator[Callable[[float], None]]:
    """A tqdm bar over seconds of media; quiet when stderr is not a terminal."""
    from tqdm import tqdm

    with tqdm(
        total=round(total, 1) if total else None,
        unit="s",
        desc=label,
        disable=None,
        leave=False,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s [{remaining} left]",
    ) as bar:

        def update(seconds: float) -> None:
            bar.n = round(min(seconds, total) if total else seconds, 1)
            bar.refresh()

        yield update


def _with_music_flags(args: argparse.Namespace, config: Config) -> Config:
    """The flags ``run`` and ``render`` share (``--seed``, ``--mode``, ``--mqtt``, ``--library``,
    ``--seed-track``) over the config; ``--midi`` and ``--beats`` paths checked."""
    if args.seed is not None:
        config = config.replace("composer", seed=args.seed)
    config = _with_library(args, _with_mqtt(args, _with_mode(args, config)))
    _check_midi_path(args.midi)
    _check_beats_path(args.beats)
    return config


def _check_midi_path(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in (".mid", ".midi"):
        raise ConfigError(f"--midi {path} must end in .mid or .midi")


def _check_beats_path(path: Path | None) -> None:
    if path is not None and path.suffix.lower() != ".json":
        raise ConfigError(f"--beats {path} must end in .json")


# -- compose ------------------------------------------------------------------------------


def _cmd_compose(args: argparse.Namespace, config: Config) -> int:
    from daemon.app import ComposeRequest, compose

    if args.seed is not None:
        config = config.replace("composer", seed=args.seed)
    if args.seed_track is not None:
        config = config.replace("library", seed_track=str(args.seed_track))
    request = ComposeRequest(
        valence=args.valence,
        arousal=args.arousal,
        bars=args.bars,
        outputs=tuple(args.output),
        scene=args.scene,
        bpm=args.bpm,
        layers=args.layers,
    )
    report = compose(config, request)
    plan = report.plan
    log.info(
        "composed %d bars of %s: %g bpm, %s %s, %d layer(s), %.1f s -> %s",
        args.bars,
        plan.scene,
        plan.bpm,
        plan.key,
        plan.mode,
        plan.layers,
        report.seconds,
        ", ".join(str(p) for p in report.files),
    )
    return 0


# -- analyze ------------------------------------------------------------------------------


def _cmd_analyze(args: argparse.Namespace, config: Config) -> int:
    from daemon.app import analyze

    config = _with_mode(args, config)
    return analyze(
        config,
        args.input,
        args.output,
        duration=args.duration,
        progress=lambda total: _progress_bar(total, "analysing"),
    )


# -- doctor, bench ------------------------------------------------------------------------


def _cmd_doctor(args: argparse.Namespace, config: Config) -> int:
    from daemon.doctor import run_doctor

    return run_doctor(config)


def _cmd_config(args: argparse.Namespace, config: Config) -> int:
    import json

    from daemon.config import config_schema, effective_config_toml

    if args.schema:
        print(json.dumps(config_schema(), indent=2))
    else:
        print(effective_config_toml(config), end="")
    return 0


def _cmd_bench(args: argparse.Namespace, config: Config) -> int:
    import json

    from daemon.bench import run_bench

    figures = run_bench(config, quick=args.quick, skip=args.skip)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


def _cmd_init(args: argparse.Namespace, config: Config) -> int:
    from daemon.install import init_user_files

    result = init_user_files(force=args.force, copy_presets=tuple(args.copy_preset))
    if result.config is None:
        print(f"kept your config {result.presets.parent / 'config.toml'} (--force rewrites it)")
    else:
        print(f"wrote {result.config} (every key commented out: uncomment what you change)")
    for path in result.copied:
        print(f"copied {path.stem} to {path} (it now overrides the built-in {path.stem})")
    print(f"presets: {result.presets} (a preset here overrides the built-in one of that name)")
    return 0


def _cmd_completion(args: argparse.Namespace, config: Config) -> int:
    from daemon.install import completion_script

    print(completion_script(build_parser(), args.shell), end="")
    return 0


def _cmd_library(args: argparse.Namespace, config: Config) -> int:
    from daemon.library.commands import run_library_command

    return run_library_command(args, config)


def _cmd_train_melody(args: argparse.Namespace, config: Config) -> int:
    # Before torch loads: OpenMP threads that spin-wait crawl when another process holds a core.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from daemon.extras import require

    require("train", what="`moodscore train-melody`")
    from daemon.training import TrainRequest, metrics_path_for, train_melody

    request = TrainRequest(
        output=args.output,
        data=args.data,
        epochs=args.epochs,
        init=args.init,
        seed=args.seed,
        device=config.models.device,
        limit=args.limit,
    )
    with tqdm(total=None, unit="step", desc="training", disable=None, leave=False) as bar:

        def progress(done: int, total: int, loss: float) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix(nll=f"{loss:.3f}", refresh=False)
            bar.refresh()

        metrics = train_melody(request, on_progress=progress)
    held_out = metrics["test_nll_per_note"]
    log.info(
        "wrote %s (%d epochs, %.0f s); held-out NLL per note %s (trigram %s); metrics: %s",
        args.output,
        metrics["training"]["epochs"],
        metrics["train_seconds"],
        "n/a" if held_out is None else f"{held_out:.3f}",
        metrics["test_nll_per_note_trigram"],
        metrics_path_for(args.output),
    )
    return 0


def _cmd_train_scene(args: argparse.Namespace, config: Config) -> int:
    # Before torch loads: OpenMP threads that spin-wait crawl when another process holds a core.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from daemon.training import train_scene

    if args.epochs < 1 or args.steps < 1:
        raise ConfigError("--epochs and --steps must be at least 1")
    with tqdm(total=None, unit="step", desc="training", disable=None, leave=False) as bar:

        def progress(stage: str, done: int, total: int, loss: float) -> None:
            bar.set_description(f"training {stage}")
            bar.total = total
            bar.n = done
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.refresh()

        report = train_scene(
            args.clips,
            args.output,
            base=args.base,
            device=config.models.device,
            epochs=args.epochs,
            steps=args.steps,
            seed=args.seed,
            progress=progress,
        )
    held = report.metrics.get("held_out") or {}
    accuracy = held.get("accuracy")
    log.info(
        "wrote %s; held-out accuracy %s over %d window(s); report %s%s",
        report.model,
        "n/a" if accuracy is None else f"{accuracy:.0%}",
        held.get("windows", 0),
        report.report,
        f", confusion matrix {report.confusion_png}" if report.confusion_png else "",
    )
    log.info('use it: [game] model = "%s" with --mode game', report.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
