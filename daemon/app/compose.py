"""``moodscore compose``: music for one fixed mood, through the same session as a render."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.app.core import build_core, build_session
from daemon.config import Config
from daemon.engine import BackendChoice
from daemon.errors import ConfigError, EngineError
from daemon.messages import Mood, Plan
from daemon.outputs.base import Output
from daemon.outputs.midi import MidiFileOutput
from daemon.outputs.recorder import RecordingOutput

log = logging.getLogger("moodscore")


AUDIO_SUFFIXES = (".wav",)
MIDI_SUFFIXES = (".mid", ".midi")
MAX_BARS = 10_000


@dataclass(frozen=True, slots=True)
class ComposeRequest:
    """What ``moodscore compose`` was asked for.

    valence, arousal : the mood, each in [-1, 1].
    bars : how many bars (the audio rings on for about two seconds after the last).
    outputs : files to write: ``.wav`` (audio) and ``.mid``/``.midi`` (Standard MIDI File).
    scene : a preset name (default: ``conductor.scene`` of the config).
    bpm : override the tempo the mood implies, in [60, 180].
    layers : override the layer count the mood implies, in [1, 5].
    """

    valence: float
    arousal: float
    bars: int
    outputs: Sequence[Path]
    scene: str | None = None
    bpm: float | None = None
    layers: int | None = None


@dataclass(frozen=True, slots=True)
class ComposeReport:
    """What was written: the plan of the first bar (the mood's tempo, key, layers), the audio
    length in seconds and the files."""

    plan: Plan
    seconds: float
    files: tuple[Path, ...]


def check_compose(request: ComposeRequest) -> None:
    """Validate a compose request before anything starts.

    Raises
    ------
    ConfigError
        A value out of range, no output, or an output that is neither WAV nor MIDI.
    """
    for name, value in (("valence", request.valence), ("arousal", request.arousal)):
        if not -1.0 <= value <= 1.0:
            raise ConfigError(f"--{name} {value:g} is outside [-1, 1]")
    if not 1 <= request.bars <= MAX_BARS:
        raise ConfigError(f"--bars {request.bars} must be between 1 and {MAX_BARS}")
    if request.bpm is not None and not 60 <= request.bpm <= 180:
        raise ConfigError(f"--bpm {request.bpm:g} is outside [60, 180]")
    if request.layers is not None and not 1 <= request.layers <= 5:
        raise ConfigError(f"--layers {request.layers} is outside [1, 5]")
    if not request.outputs:
        raise ConfigError("give at least one output: -o OUT.wav and/or -o OUT.mid")
    for path in request.outputs:
        if path.suffix.lower() not in AUDIO_SUFFIXES + MIDI_SUFFIXES:
            raise ConfigError(f"output {path} must end in .wav, .mid or .midi")


def compose(config: Config, request: ComposeRequest) -> ComposeReport:
    """``moodscore compose``: a fixed mood, ``request.bars`` bars, rendered offline through the
    same session as a render; the same arguments and seed give the same samples.

    Raises
    ------
    ConfigError
        A bad request (see :func:`check_compose`) or an unknown scene.
    EngineError
        The engine failed.
    OSError
        An output cannot be written.
    """
    check_compose(request)
    backend = BackendChoice("offline", "compose: pyo stepped as fast as possible")
    core = build_core(
        config, backend=backend, render=True, last_bar=request.bars - 1, scene=request.scene
    )
    # One mood for the whole piece; the overrides are the conductor's, as a command's would be.
    window = config.analysis.window_s
    core.board.put(
        Mood(t_start=0.0, t_end=window, valence=request.valence, arousal=request.arousal)
    )
    core.board.finish()
    core.conductor.fix_tempo(request.bpm)
    core.conductor.fix_layers(request.layers)
    outputs: list[Output] = [
        MidiFileOutput(path) if path.suffix.lower() in MIDI_SUFFIXES else RecordingOutput(path)
        for path in request.outputs
    ]
    session = build_session(config, core, source=None, outputs=outputs, render=True, duration=None)
    report = asyncio.run(session.run())
    if not report.scores:
        raise EngineError("compose wrote no bars")
    return ComposeReport(
        plan=report.scores[0].plan, seconds=report.audio_seconds, files=tuple(request.outputs)
    )
