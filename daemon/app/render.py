"""``moodscore render`` (score a video file or the demo as fast as the machine allows) and
``moodscore analyze`` (the analysis alone, as a timeline)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from daemon.analysis import AnalysisStage, make_window_model
from daemon.analysis.game import attach_game_audio
from daemon.app.core import (
    build_core,
    build_session,
    common_outputs,
    file_game_audio,
    session_timeline,
)
from daemon.app.live import run_with_signals
from daemon.config import Config
from daemon.engine import BackendChoice, choose_backend
from daemon.errors import ConfigError
from daemon.messages import Mood
from daemon.outputs.progress import ProgressOutput
from daemon.outputs.timeline import build_timeline, write_timeline
from daemon.sources import FrameSource, TappedSource, open_source

log = logging.getLogger("moodscore")


RENDER_SUFFIXES = (".mp4", ".mov", ".mkv", ".wav")


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
                    game_audio=file_game_audio(config, request.input),
                )
                report = await run_with_signals(session)
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
        png = session_timeline(config, report, request.timeline, seed=config.composer.seed)
        log.info("timeline: %s%s", request.timeline, f" (plot: {png})" if png else "")
    log.info(
        "wrote %s: %.1f s in %.1f s (%.1fx real time)",
        output,
        report.audio_seconds,
        elapsed,
        report.audio_seconds / max(elapsed, 1e-9),
    )
    return 130 if report.interrupted else 0


# --------------------------------------------------------------------------- analyze


def analyze(
    config: Config,
    input_spec: str,
    output: Path,
    *,
    duration: float | None = None,
    progress: ProgressBar | None = None,
) -> int:
    """``moodscore analyze``: the analysis alone, every window of ``input_spec`` (a file or
    ``demo``) as a timeline JSON at ``output`` (and a PNG plot beside it).

    Raises
    ------
    MoodscoreError
        A duration on a file, a source that does not open, a model file that is missing.
    """
    is_demo = input_spec == "demo"
    if duration is not None and not is_demo:
        raise ConfigError("--duration applies to `analyze demo`; a file is analysed whole")
    length = (duration or config.source.demo_cycle_s) if is_demo else None
    source = open_source(input_spec, config.source, paced=False, duration=length)
    moods = asyncio.run(_analyze(config, source, progress, input_spec))
    document = build_timeline(
        moods,
        source=source.description,
        mode=config.analysis.mode,
        window_s=config.analysis.window_s,
        duration=moods[-1].t_end if moods else 0.0,
    )
    png = write_timeline(document, output)
    log.info("wrote %s: %d windows%s", output, len(moods), f" (plot: {png})" if png else "")
    return 0


async def _analyze(
    config: Config, source: FrameSource, progress: ProgressBar | None, input_spec: str
) -> list[Mood]:
    moods: list[Mood] = []
    with progress(source.duration) if progress else nullcontext(None) as report:

        def collect(mood: Mood) -> None:
            moods.append(mood)
            if report is not None:
                report(mood.t_end)

        try:
            model = make_window_model(config)
            game_audio = file_game_audio(config, input_spec)
            if game_audio is not None:
                attach_game_audio(model, game_audio)
            stage = AnalysisStage(config=config.analysis, model=model)
            try:
                await stage.run(source, collect, lossless=True)
            finally:
                await asyncio.to_thread(stage.close)
        finally:
            await source.close()
    return moods
