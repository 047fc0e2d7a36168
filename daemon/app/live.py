"""``moodscore run``: the live daemon, built as benches and tests build it too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.analysis.game_audio import GameAudioCues
from daemon.app.core import (
    Core,
    build_core,
    build_session,
    common_outputs,
    live_game_audio,
    session_timeline,
    sync_outputs,
)
from daemon.config import Config
from daemon.control.health import HealthMonitor
from daemon.control.memory import MemoryKeeper, limit_malloc_arenas
from daemon.engine import BackendChoice, choose_backend
from daemon.outputs.base import Output
from daemon.outputs.recorder import RecordingOutput
from daemon.session import Session, SessionReport, install_signal_handlers
from daemon.sources import FrameSource, open_source

if TYPE_CHECKING:
    from daemon.web import WebServer

log = logging.getLogger("moodscore")


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
    # Before the session's threads start: a day-long run must not grow by idle arenas.
    limit_malloc_arenas()
    backend = choose_backend(config.engine.backend, render=False, device=config.engine.device)
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
    outputs += sync_outputs(config, core)
    web = None
    if config.web.enabled:
        from daemon.web import WebServer

        web = WebServer(
            hub=core.hub,
            web_config=config.web,
            visuals=config.visuals,
            latest_mood=lambda: core.board.latest,
            any_port_if_busy=request.web_port_flexible,
        )
        outputs.append(web)
    if core.teacher is not None and config.game.auto_profile:
        from daemon.sources.screen import ScreenSource

        if isinstance(source, ScreenSource):
            from daemon.control.window_title import WindowTitleWatch

            outputs.append(WindowTitleWatch(hub=core.hub, display=source.display))
    game_audio = live_game_audio(config, core)
    session = build_session(
        config,
        core,
        source=source,
        outputs=outputs,
        render=False,
        duration=request.duration,
        game_audio=game_audio,
    )
    session.outputs.append(_health_monitor(core, session, web, outputs, game_audio))
    session.outputs.append(MemoryKeeper())
    return session


def _health_monitor(
    core: Core,
    session: Session,
    web: WebServer | None,
    outputs: list[Output],
    game_audio: GameAudioCues | None = None,
) -> HealthMonitor:
    """The health monitor of a live session, reading every stage through probes."""
    engine, analysis = core.engine, session.analysis
    counts: dict[str, Callable[[], float | int | None]] = {
        "late_blocks": lambda: engine.late_blocks,
        "late_handoffs": lambda: engine.late_handoffs,
        "xruns": lambda: engine.xruns,
        "underruns": lambda: engine.underruns,
        "dropped_frames": lambda: analysis.dropped if analysis is not None else 0,
        "frames_analysed": lambda: analysis.frames if analysis is not None else 0,
    }
    if web is not None:
        counts["web_refused"] = lambda: web.refused
        counts["video_slots_skipped"] = lambda: web.visuals.late_slots
    if game_audio is not None:
        # Windows whose game audio was dropped because it heard moodscore's own music, and
        # whether the capture device failed to open.
        counts["game_audio_feedback"] = lambda: game_audio.feedback_windows
        counts["game_audio_missing"] = lambda: int(game_audio.missing)
    recording = next((o for o in outputs if isinstance(o, RecordingOutput)), None)
    if recording is not None:
        counts["recording_failed"] = lambda: int(recording.failed is not None)
    return HealthMonitor(
        counts=counts, margin=lambda: core.planner.scores.last_margin_s, publish=core.hub.set_health
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
    report = await run_with_signals(session)
    _report_live(report)
    monitor = next((o for o in session.outputs if isinstance(o, HealthMonitor)), None)
    if monitor is not None:
        log.info("%s", monitor.summary())
    recording = next((o for o in session.outputs if isinstance(o, RecordingOutput)), None)
    if recording is not None and recording.recorder is not None:
        _recording_timelines(config, report, recording)
    return 0


def _recording_timelines(config: Config, report: SessionReport, recording: RecordingOutput) -> None:
    """The timeline beside each file of the recording, and what was recorded, in the log."""
    parts = recording.parts
    rate = recording.clock.sample_rate
    try:
        for part in parts:
            span = None
            if len(parts) > 1:
                span = (part.start_time, part.start_time + part.frames / rate)
            session_timeline(config, report, part.path.with_suffix(".timeline.json"), span=span)
    except OSError as exc:
        log.warning("the timeline could not be written (%s)", exc.strerror or exc)
    files = ", ".join(str(part.path) for part in parts)
    if recording.failed is not None:
        log.warning(
            "the recording stopped early: %.1f s of audio in %s", recording.seconds_written, files
        )
    else:
        log.info(
            "recorded %.1f s of audio to %s (timeline%s beside it)",
            recording.seconds_written,
            files,
            "s" if len(parts) > 1 else "",
        )


async def run_with_signals(session: Session) -> SessionReport:
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
    return MidiPortOutput(port=port, clock=config.midi.clock, delay_s=config.midi.delay_ms / 1000)


def _report_live(report: SessionReport) -> None:
    if report.underruns:
        log.warning("%d bar(s) were late from the composer and repeated", report.underruns)
    if report.dropped_frames:
        log.info(
            "analysis skipped %d frame(s) to keep up (newest frame wins)", report.dropped_frames
        )
