"""The stages every command shares, wired together, and the session over them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.analysis import AnalysisStage, make_window_model
from daemon.analysis.board import MoodBoard
from daemon.analysis.game import attach_game_audio, pace_game_text
from daemon.analysis.game_audio import GameAudioCues, PlayedAudio
from daemon.analysis.modes import teaches
from daemon.analysis.teach import Teacher, make_teacher
from daemon.composer import Composer
from daemon.conductor import Conductor
from daemon.config import Config, EngineConfig
from daemon.control.hub import ControlHub
from daemon.control.router import Router
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.messages import Plan
from daemon.outputs.base import Output
from daemon.outputs.beatmap import BeatMapOutput
from daemon.outputs.delays import Delays
from daemon.outputs.midi import MidiFileOutput
from daemon.outputs.recorder import RecordingOutput
from daemon.outputs.timeline import build_timeline, write_timeline
from daemon.planner import BarPlanner, BarWriter
from daemon.reactions import Reactor
from daemon.scenes import PresetLibrary
from daemon.session import Session, SessionReport
from daemon.sources import FrameSource, open_source

log = logging.getLogger("moodscore")

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
    delays: Delays
    teacher: Teacher | None = None


def _make_engine(
    config: Config,
    engine_config: EngineConfig,
    *,
    backend: BackendChoice,
    scores: ScoreQueue,
    render: bool,
) -> Engine:
    """The engine: in a process of its own for a live manual run (``engine.process``), else in
    this one. Renders stay here (they must repeat sample for sample, waiting on the planner), and
    so do the library mode (its players join pyo's graph) and Link (it sets each bar's tempo on
    the audio thread)."""
    if config.engine.process == "own" and not render and backend.name == "manual":
        if config.library.play or config.link.enabled:
            log.info(
                "engine: in the daemon's process (%s needs it there)",
                "the library mode" if config.library.play else "Link",
            )
        else:
            from daemon.engine.process import ProcessEngine

            return ProcessEngine(config=engine_config, backend=backend, scores=scores)
    return Engine(config=engine_config, backend=backend, scores=scores, realtime=not render)


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
    # A render's engine waits at every beat until the planner has answered what came before it.
    scores = ScoreQueue(gated=render)
    # The library mode's bar clock follows each track's tempo, and a Link session's timeline is
    # straight from bar line to bar line: no ramps.
    engine_config = (
        dataclasses.replace(config.engine, tempo_ramp=0.0)
        if config.library.play or (config.link.enabled and not render)
        else config.engine
    )
    engine = _make_engine(config, engine_config, backend=backend, scores=scores, render=render)
    library = None
    if config.library.play:
        from daemon.extras import require

        require("library", what="playing your library (--library)")
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
        clock=engine,
        sample_rate=engine_config.sample_rate,
        ramp=engine_config.tempo_ramp,
        last_bar=last_bar,
    )
    hub = ControlHub(scenes=presets.names)
    delays = Delays(
        {
            "engine": config.engine.delay_ms,
            "midi": config.midi.delay_ms,
            "mqtt": config.mqtt.delay_ms,
            "osc": config.osc.delay_ms,
            "os2l": config.os2l.delay_ms,
            "web": config.web.delay_ms,
        }
    )
    hub.update(delays=delays.as_dict())
    reactor = Reactor(
        planner=planner,
        # A library track plays in its own key, not the plan's: no stingers over it.
        stingers=config.conductor.stingers and library is None,
        stinger_interval_s=config.conductor.stinger_interval_s,
        patches=library is None,
        announce=hub.cue,
    )
    planner.reactor = reactor
    teacher = None
    if teaches(config):
        from daemon.analysis.game import resolve_model_path

        # The game's profile is read now: one made on another scene model stops the run here.
        teacher = make_teacher(
            model_path=resolve_model_path(config.game.model),
            game=config.game.profile,
            worker=config.game.teach_worker,
        )
    if teacher is not None and config.game.auto_profile:
        hub.auto_profiles = dict(config.game.profiles)
    router = Router(
        hub=hub,
        conductor=conductor,
        transport=engine,
        replan=planner.replan,
        stinger=reactor.play,
        delays=delays,
        teacher=teacher,
    )
    return Core(board, conductor, engine, planner, hub, router, library, delays, teacher)


def build_session(
    config: Config,
    core: Core,
    *,
    source: FrameSource | None,
    outputs: Sequence[Output],
    render: bool,
    duration: float | None,
    game_audio: GameAudioCues | None = None,
) -> Session:
    """The session over ``core`` reading ``source`` (None: the board already holds the moods),
    with ``outputs`` (and the library player, when the library mode is on); ``game_audio`` is
    heard by the game mode's model (closed with it; closed at once in other modes)."""
    analysis = None
    if source is not None:
        # Loaded now, so missing model files stop the session before any music starts.
        model = make_window_model(config, core.teacher)
        if game_audio is not None:
            attach_game_audio(model, game_audio)
        pace_game_text(model, live=not render)
        analysis = AnalysisStage(
            config=config.analysis,
            model=model,
            cue_threshold=config.conductor.cue_threshold,
        )
    elif game_audio is not None:
        game_audio.close()
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
        delays=None if render else core.delays,
        open_source=lambda spec: open_source(spec, config.source, paced=True),
        render=render,
        duration=duration,
    )


GAME_MODES = ("game", "auto")


def file_game_audio(config: Config, input_spec: str) -> GameAudioCues | None:
    """The audio track of the video file ``input_spec`` for game mode (``render``,
    ``analyze``): None for other modes, ``demo``, ``game.audio`` off, or a file without audio."""
    from daemon.sources.game_audio import FileAudio, has_audio

    if config.analysis.mode not in GAME_MODES or not config.game.audio or input_spec == "demo":
        return None
    path = Path(input_spec)
    if not has_audio(path):
        return None
    log.info("game audio: the audio track of %s (--no-game-audio ignores it)", path.name)
    return GameAudioCues(open_input=lambda: FileAudio(path))


def live_game_audio(config: Config, core: Core) -> GameAudioCues | None:
    """The live capture ``game.audio_device`` names, checked against what the engine plays
    (None when none is set, or the mode is not a game mode). The device opens on the first
    window; a missing one is one logged line, tried again every 2 s, and the music plays on."""
    from daemon.sources.game_audio import open_capture

    device = config.game.audio_device
    if not device:
        return None
    if config.analysis.mode not in GAME_MODES:
        log.warning("--game-audio %s is heard in game and auto modes only; ignored", device)
        return None
    engine = core.engine
    played = PlayedAudio(sample_rate=lambda: engine.sample_rate)
    engine.add_audio_listener(played.listen)
    return GameAudioCues(open_input=lambda: open_capture(device), played=played, retry_s=2.0)


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
        outputs.append(
            RecordingOutput(
                recording,
                max_file_bytes=config.record.max_file_mb * 1_000_000,
                live=core.engine.realtime,
            )
        )
    if midi is not None:
        outputs.append(MidiFileOutput(midi))
    if beats is not None:
        outputs.append(BeatMapOutput(beats))
    if config.mqtt.enabled:
        from daemon.control.mqtt import MqttBridge

        outputs.append(MqttBridge(config=config.mqtt, hub=core.hub))
    return outputs


def sync_outputs(config: Config, core: Core) -> list[Output]:
    """What plays in time with other programs live: OSC (out and commands in), OS2L beats, MIDI
    clock in, each off unless the config or a flag turns it on.

    Raises
    ------
    ConfigError
        A bad address or prefix; before any music.
    """
    outputs: list[Output] = []
    if config.osc.enabled or config.osc.listen:
        from daemon.control.osc import OscBridge

        outputs.append(OscBridge(config=config.osc, hub=core.hub))
    if config.os2l.enabled:
        from daemon.outputs.os2l import Os2lOutput

        outputs.append(Os2lOutput(config=config.os2l))
    if config.link.enabled:
        outputs.append(_link_output(config, core))
    if config.midi.clock_in:
        from daemon.control.midi_clock import MidiClockIn

        outputs.append(
            MidiClockIn(hub=core.hub, port=config.midi.clock_in_port, backend=config.midi.backend)
        )
    return outputs


def _link_output(config: Config, core: Core) -> Output:
    """The Link output, which sets the tempo of every bar the engine starts."""
    from daemon.outputs.link import LinkOutput

    def plan_of(bar: int) -> Plan | None:
        score = core.planner.score(bar)
        return None if score is None else score.plan

    return LinkOutput(config=config.link, engine=core.engine, plan_of=plan_of)


def session_timeline(
    config: Config,
    report: SessionReport,
    path: Path,
    *,
    seed: int | None = None,
    span: tuple[float, float] | None = None,
) -> Path | None:
    """Write the timeline JSON of a finished session (every mood window and every bar) to
    ``path``, and its plot beside it; the plot's path, or None without matplotlib.

    ``span``: only the audio times ``[start, end)`` (one file of a recording that rolled over
    into several), with every time counted from ``start``; the bar already playing at ``start``
    is included (its time is then negative).
    """
    moods, bars, duration = report.moods, report.bars, report.audio_seconds
    if span is not None:
        start, end = span
        offset = report.source_offset
        moods = [
            dataclasses.replace(m, t_start=m.t_start - start, t_end=m.t_end - start)
            for m in moods
            if start <= (m.t_start + m.t_end) / 2 - offset < end
        ]
        playing = [b for b in report.bars if b.audio_time <= start]
        bars = [
            dataclasses.replace(b, audio_time=b.audio_time - start)
            for b in [*playing[-1:], *(b for b in report.bars if start < b.audio_time < end)]
        ]
        duration = end - start
    document = build_timeline(
        moods,
        source=report.source,
        window_s=config.analysis.window_s,
        mode=config.analysis.mode,
        duration=duration,
        bars=bars,
        source_offset=report.source_offset,
        seed=seed,
    )
    return write_timeline(document, path)
