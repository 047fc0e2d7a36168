"""``moodscore compose``: music for one fixed mood, rendered offline to WAV and/or MIDI.

The quickest way to audition a scene preset. It feeds the conductor a single mood window, lets it
plan every bar (``bpm``/``layers`` override what the mood implies), composes them with the
composer and plays them through the same engine a render uses (offline backend), with a WAV
recorder and a MIDI file writer listening. The same arguments and seed give the same samples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.composer import Composer
from daemon.conductor import Conductor
from daemon.config import Config
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.errors import ConfigError, EngineError
from daemon.messages import BarScore, Mood, Plan
from daemon.outputs.midi import MidiFileWriter
from daemon.outputs.recorder import WavRecorder
from daemon.scenes import load_scene

AUDIO_SUFFIXES = (".wav",)
MIDI_SUFFIXES = (".mid", ".midi")
MAX_BARS = 10_000


@dataclass(frozen=True, slots=True)
class ComposeRequest:
    """What to compose.

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


def check_request(request: ComposeRequest) -> None:
    """Validate a request before anything starts.

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


def plan_scores(config: Config, request: ComposeRequest) -> list[BarScore]:
    """The bars of a fixed-mood piece: the conductor's plans (with the overrides), composed."""
    check_request(request)
    preset = load_scene(request.scene or config.conductor.scene)
    conductor = Conductor(config=config.conductor, preset=preset)
    window = config.analysis.window_s
    conductor.observe(
        Mood(t_start=0.0, t_end=window, valence=request.valence, arousal=request.arousal)
    )
    composer = Composer(config=config.composer)
    if config.library.seed_track:
        from daemon.library.seed import load_seed_phrase, prime_composer

        phrase = load_seed_phrase(
            Path(config.library.seed_track).expanduser(), notes=config.library.seed_notes
        )
        prime_composer(composer, phrase)
    scores = []
    for bar in range(request.bars):
        plan = conductor.plan_for_bar(bar)
        if request.bpm is not None:
            plan = dataclasses.replace(plan, bpm=float(request.bpm))
        if request.layers is not None:
            plan = dataclasses.replace(plan, layers=request.layers)
        scores.append(composer.compose_bar(plan))
    return scores


def compose(config: Config, request: ComposeRequest) -> ComposeReport:
    """Compose and render ``request``; write every output.

    Raises
    ------
    ConfigError
        A bad request (see :func:`check_request`) or an unknown scene.
    EngineError
        The engine failed.
    OSError
        An output cannot be written.
    """
    scores = plan_scores(config, request)
    queue = ScoreQueue()
    for score in scores:
        queue.put(score)
    # Closed: after the last bar the engine lets the notes and reverb ring, then stops.
    queue.close()
    engine = Engine(
        config=config.engine,
        backend=BackendChoice("offline", "compose: pyo stepped as fast as possible"),
        scores=queue,
        realtime=False,
    )
    recorders: list[WavRecorder] = []
    writers: list[MidiFileWriter] = []
    for path in request.outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in MIDI_SUFFIXES:
            writer = MidiFileWriter(path)
            writer.attach(engine)
            writers.append(writer)
        else:
            recorder = WavRecorder(path, sample_rate=config.engine.sample_rate)
            recorders.append(recorder)
            engine.add_audio_listener(recorder.write)
    try:
        engine.start()
        engine.wait()
    finally:
        engine.stop()
        for recorder in recorders:
            recorder.close()
    if engine.error is not None:
        raise EngineError(f"the audio engine failed: {engine.error}") from engine.error
    for writer in writers:
        writer.close(end_time=engine.audio_time)
    return ComposeReport(
        plan=scores[0].plan, seconds=engine.audio_time, files=tuple(request.outputs)
    )
