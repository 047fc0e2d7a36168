"""The composition root: one place that builds a session for ``run``, ``render`` and ``compose``.

From the configuration (already layered: config.toml < user file < environment < flags) and a
request, :func:`build_core` makes the stages every command shares (board, conductor, composer or
library, engine, planner, control hub and router), the command's outputs are chosen here, and
:class:`~daemon.session.Session` runs them. ``cli.py`` only parses flags and maps errors.

Adding an output is one class in :mod:`daemon.outputs` and one line in :func:`live_outputs` /
:func:`render_outputs`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from daemon.analysis import AnalysisStage, make_window_model
from daemon.analysis.board import MoodBoard
from daemon.composer import Composer
from daemon.conductor import Conductor
from daemon.config import Config
from daemon.control.hub import ControlHub
from daemon.control.router import Router
from daemon.engine import BackendChoice, Engine, ScoreQueue, choose_backend
from daemon.errors import ConfigError, EngineError
from daemon.messages import Mood, Plan
from daemon.outputs.base import Output
from daemon.outputs.beatmap import BeatMapOutput
from daemon.outputs.midi import MidiFileOutput
from daemon.outputs.progress import ProgressOutput
from daemon.outputs.recorder import RecordingOutput
from daemon.outputs.timeline import build_timeline, write_timeline
from daemon.planner import BarPlanner, BarWriter
from daemon.scenes import PresetLibrary
from daemon.session import Session, SessionReport, install_signal_handlers
from daemon.sources import FrameSource, TappedSource, open_source

log = logging.getLogger("moodscore")

RENDER_SUFFIXES = (".mp4", ".mov", ".mkv", ".wav")
AUDIO_SUFFIXES = (".wav",)
MIDI_SUFFIXES = (".mid", ".midi")
MAX_BARS = 10_000


# --------------------------------------------------------------------------- the shared stages


@dataclass
class Core:
    """The stages every command shares, wired together (see :func:`build_core`)."""

    board: MoodBoard
    conductor: Conductor
    engine: Engine
    planner: BarPlanner
    hub: ControlHub
    router: Router
    library: Output | None


def build_core(
    config: Config,
    *,
    backend: BackendChoice,
    render: bool,
    last_bar: int | None = None,
    scene: str | None = None,
) -> Core:
    """Board, conductor, composer (or library), engine, planner, hub and router for one session.

    Raises
    ------
    MoodscoreError
        A missing scene preset, model file, seed track or library index; before any music.
    """
    board = MoodBoard()
    presets = PresetLibrary(config.conductor.preset_dirs)
    conductor = Conductor(
        config=config.conductor,
        preset=presets.get(scene or config.conductor.scene),
        presets=presets,
    )
    scores = ScoreQueue()
    # The library mode's bar clock follows each track's tempo: no ramps between tracks.
    engine_config = (
        dataclasses.replace(config.engine, tempo_ramp=0.0) if config.library.play else config.engine
    )
    engine = Engine(config=engine_config, backend=backend, scores=scores, realtime=not render)
    library = None
    if config.library.play:
        from daemon.library.live import LibraryMode

        library = LibraryMode(config=config.library, engine=engine, gain=config.engine.master_gain)
        write: BarWriter = library.bar
    else:
        composer = Composer(config=config.composer)
        if config.library.seed_track:
            from daemon.library.seed import load_seed_phrase, prime_composer

            phrase = load_seed_phrase(
                Path(config.library.seed_track).expanduser(), notes=config.library.seed_notes
            )
            prime_composer(composer, phrase)
        write = composer.compose_bar
    planner = BarPlanner(
        conductor=conductor,
        write=write,
        board=board,
        scores=scores,
        lookahead=config.composer.lookahead_bars,
        render=render,
        first_window=config.analysis.window_s,
        clock=lambda: engine.audio_time,
        last_bar=last_bar,
    )
    hub = ControlHub(scenes=presets.names)
    router = Router(hub=hub, conductor=conductor, transport=engine, replan=planner.replan)
    return Core(board, conductor, engine, planner, hub, router, library)


def build_session(
    config: Config,
    core: Core,
    *,
    source: FrameSource | None,
    outputs: Sequence[Output],
    render: bool,
    duration: float | None,
) -> Session:
    """The session over ``core`` reading ``source`` (None: the board already holds the moods),
    with ``outputs`` (and the library player, when the library mode is on)."""
    analysis = None
    if source is not None:
        # Loaded now, so missing model files stop the session before any music starts.
        analysis = AnalysisStage(config=config.analysis, model=make_window_model(config))
    every_output = [*outputs, *([core.library] if core.library is not None else [])]
    return Session(
        engine=core.engine,
        planner=core.planner,
        board=core.board,
        outputs=every_output,
        source=source,
        analysis=analysis,
        hub=core.hub,
        router=core.router,
        open_source=lambda spec: open_source(spec, config.source, paced=True),
        render=render,
        duration=duration,
    )


def common_outputs(
    config: Config,
    core: Core,
    *,
    midi: Path | None,
    beats: Path | None,
    recording: Path | None,
) -> list[Output]:
    """The outputs ``run`` and ``render`` both offer: the WAV, ``--midi``, ``--beats``, MQTT."""
    outputs: list[Output] = []
    if recording is not None:
        outputs.append(RecordingOutput(recording))
    if midi is not None:
        outputs.append(MidiFileOutput(midi))
    if beats is not None:
        outputs.append(BeatMapOutput(beats))
    if config.mqtt.enabled:
        from daemon.control.mqtt import MqttBridge

        outputs.append(MqttBridge(config=config.mqtt, hub=core.hub))
    return outputs


# --------------------------------------------------------------------------- run


@dataclass(frozen=True, slots=True)
class LiveRequest:
    """What ``moodscore run`` was asked for.

    source : the source spec (None: ``source.kind``).
    duration : stop after this many seconds (None: until stopped).
    record_dir : record WAV + timeline into this folder (None: ``record.dir``, if set).
    midi : also write the session as a MIDI file.
    beats : also write the beat map.
    web_port_flexible : the web port is the configured default, so a busy one is replaced by a
        free one (a port asked for with ``--web`` is an error instead).
    """

    source: str | None = None
    duration: float | None = None
    record_dir: Path | None = None
    midi: Path | None = None
    beats: Path | None = None
    web_port_flexible: bool = True


def run_live(config: Config, request: LiveRequest) -> int:
    """``moodscore run``: the live daemon, until the duration passes or Ctrl-C."""
    backend = choose_backend(config.engine.backend, render=False)
    source = open_source(request.source or config.source.kind, config.source, paced=True)
    log.info("source: %s", source.description)
    log.info("audio: %s (%s)", backend.name, backend.reason)
    return asyncio.run(_run_live(config, request, source, backend))


def build_live(
    config: Config, request: LiveRequest, source: FrameSource, backend: BackendChoice
) -> Session:
    """The live session ``run`` plays (also for benches and tests): every stage, and the outputs
    the config and the request ask for. When building fails, the caller still owns ``source``.

    Raises
    ------
    MoodscoreError
        A missing model file or preset, a MIDI port that does not open, a bad MQTT setting;
        before any music.
    """
    record_dir = request.record_dir or (Path(config.record.dir) if config.record.dir else None)
    stem = time.strftime("moodscore-%Y%m%d-%H%M%S")
    core = build_core(config, backend=backend, render=False)
    outputs = common_outputs(
        config,
        core,
        midi=request.midi,
        beats=request.beats,
        recording=record_dir / f"{stem}.wav" if record_dir else None,
    )
    if config.midi.enabled:
        outputs.append(_midi_port(config))
    if config.web.enabled:
        from daemon.web import WebServer

        outputs.append(
            WebServer(
                hub=core.hub,
                web_config=config.web,
                visuals=config.visuals,
                latest_mood=lambda: core.board.latest,
                any_port_if_busy=request.web_port_flexible,
            )
        )
    return build_session(
        config, core, source=source, outputs=outputs, render=False, duration=request.duration
    )


async def _run_live(
    config: Config, request: LiveRequest, source: FrameSource, backend: BackendChoice
) -> int:
    if request.record_dir is None and not config.record.dir and backend.name == "manual":
        log.info("no sound card: the music plays in manual mode; pass --record DIR to keep it")
    try:
        session = build_live(config, request, source, backend)
    except BaseException:
        await source.close()
        raise
    log.info("playing%s; Ctrl-C stops", f" for {request.duration:g} s" if request.duration else "")
    report = await _run_with_signals(session)
    _report_live(report)
    recording = next((o for o in session.outputs if isinstance(o, RecordingOutput)), None)
    if recording is not None and recording.recorder is not None:
        document = build_timeline(
            report.moods,
            source=report.source,
            window_s=config.analysis.window_s,
            mode=config.analysis.mode,
            duration=report.audio_seconds,
            bars=report.bars,
            source_offset=report.source_offset,
        )
        timeline_path = recording.path.with_suffix(".timeline.json")
        write_timeline(document, timeline_path)
        log.info(
            "recorded %.1f s of audio to %s (timeline: %s)",
            recording.seconds_written,
            recording.path,
            timeline_path,
        )
    return 0


async def _run_with_signals(session: Session) -> SessionReport:
    """Run ``session`` with Ctrl-C and SIGTERM asking it for an ordered stop."""
    remove_handlers = install_signal_handlers(session)
    try:
        return await session.run()
    finally:
        remove_handlers()


def _midi_port(config: Config) -> Output:
    """The live MIDI port, opened now, so a wrong port name stops the run before the music."""
    from daemon.outputs.midi_port import MidiPortOutput, open_port

    port = open_port(config.midi.port, config.midi.backend)
    log.info("MIDI out: %s%s", port.name, " with clock" if config.midi.clock else "")
    return MidiPortOutput(port=port, clock=config.midi.clock, offset_s=config.midi.offset_ms / 1000)


def _report_live(report: SessionReport) -> None:
    if report.underruns:
        log.warning("%d bar(s) were late from the composer and repeated", report.underruns)
    if report.dropped_frames:
        log.info(
            "analysis skipped %d frame(s) to keep up (newest frame wins)", report.dropped_frames
        )


# --------------------------------------------------------------------------- render


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """What ``moodscore render`` was asked for.

    input : a video file, or ``demo``.
    output : the MP4 (or MOV/MKV) or WAV to write.
    duration : the length of a ``demo`` render.
    timeline, midi, beats : also write these.
    visuals : ``overlay``, ``only`` or ``none`` (None: ``visuals.render``).
    """

    input: str
    output: Path
    duration: float | None = None
    timeline: Path | None = None
    midi: Path | None = None
    beats: Path | None = None
    visuals: str | None = None


def check_render(request: RenderRequest) -> None:
    """Refuse a render request that cannot work, before anything opens.

    Raises
    ------
    ConfigError
        A bad output suffix, visuals without a picture, or a duration on a file.
    """
    if request.output.suffix.lower() not in RENDER_SUFFIXES:
        raise ConfigError(f"output {request.output} must end in {', '.join(RENDER_SUFFIXES)}")
    if request.visuals not in (None, "none") and request.output.suffix.lower() == ".wav":
        raise ConfigError("--visuals needs a video output (OUT.mp4); a WAV has no picture")
    if request.duration is not None and request.input != "demo":
        raise ConfigError("--duration applies to `render demo`; a file renders whole")


ProgressBar = Callable[[float | None], AbstractContextManager[Callable[[float], None]]]


def render(config: Config, request: RenderRequest, *, progress: ProgressBar | None = None) -> int:
    """``moodscore render``: score a video file (or the demo) as fast as the machine allows.

    ``progress(total_seconds)`` makes a progress bar (a context manager giving a callable that
    is called a few times a second with the seconds of audio rendered).
    """
    check_render(request)
    is_demo = request.input == "demo"
    duration = (request.duration or config.source.demo_cycle_s) if is_demo else None
    source = open_source(request.input, config.source, paced=False, duration=duration)
    backend = choose_backend(config.engine.backend, render=True)
    return asyncio.run(_render(config, request, source, backend, progress))


async def _render(
    config: Config,
    request: RenderRequest,
    source: FrameSource,
    backend: BackendChoice,
    progress: ProgressBar | None,
) -> int:
    from daemon.outputs.video import (
        VideoWriter,
        VisualsCapture,
        can_remux,
        mux_mp4,
        write_music_video,
    )

    output = request.output
    output.parent.mkdir(parents=True, exist_ok=True)
    wants_video = output.suffix.lower() != ".wav"
    visuals_mode = request.visuals or config.visuals.render
    # The music video's visuals are drawn after the render from every bar's grid and notes.
    visuals = VisualsCapture() if wants_video and visuals_mode != "none" else None
    input_path = None if request.input == "demo" else Path(request.input)
    with tempfile.TemporaryDirectory(prefix="moodscore-render-") as scratch:
        scratch_dir = Path(scratch)
        audio_path = output if not wants_video else scratch_dir / "score.wav"
        writer: VideoWriter | None = None
        # Visuals alone need no picture of the input: nothing to encode during the render.
        needs_picture = wants_video and visuals_mode != "only"
        if needs_picture and (input_path is None or not can_remux(input_path)):
            writer = VideoWriter(scratch_dir / "video.mp4", fps=source.fps, size=source.size)
        started = time.perf_counter()
        progress_bar = progress(source.duration) if progress else nullcontext(None)
        try:
            with progress_bar as report_progress:
                core = build_core(config, backend=backend, render=True)
                outputs = common_outputs(
                    config, core, midi=request.midi, beats=request.beats, recording=audio_path
                )
                if visuals is not None:
                    outputs.append(visuals)
                if report_progress is not None:
                    outputs.append(ProgressOutput(report_progress))
                session = build_session(
                    config,
                    core,
                    source=TappedSource(source, writer.write) if writer else source,
                    outputs=outputs,
                    render=True,
                    duration=source.duration if input_path is None else None,
                )
                report = await _run_with_signals(session)
        except BaseException:
            await source.close()
            raise
        finally:
            if writer is not None:
                writer.close()
        if report.interrupted:
            log.warning(
                "render interrupted at %.1f s; writing what was rendered", report.audio_seconds
            )
        if wants_video:
            video_path = writer.path if writer else input_path
            if visuals is None:
                assert video_path is not None
                mux_mp4(output, video=video_path, audio_wav=audio_path)
            else:
                await asyncio.to_thread(
                    write_music_video,
                    output,
                    video=video_path if needs_picture else None,
                    audio_wav=audio_path,
                    timeline=visuals.timeline,
                    mode=visuals_mode,
                    fps=source.fps,
                    size=source.size,
                    duration=report.audio_seconds,
                )
    elapsed = time.perf_counter() - started
    if request.timeline is not None:
        document = build_timeline(
            report.moods,
            source=report.source,
            window_s=config.analysis.window_s,
            mode=config.analysis.mode,
            duration=report.audio_seconds,
            bars=report.bars,
            seed=config.composer.seed,
        )
        png = write_timeline(document, request.timeline)
        log.info("timeline: %s%s", request.timeline, f" (plot: {png})" if png else "")
    log.info(
        "wrote %s: %.1f s in %.1f s (%.1fx real time)",
        output,
        report.audio_seconds,
        elapsed,
        report.audio_seconds / max(elapsed, 1e-9),
    )
    return 130 if report.interrupted else 0


# --------------------------------------------------------------------------- compose


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
