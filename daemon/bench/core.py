"""``moodscore bench``: the speed figures, measured on this machine, as JSON.

Figures (later issues add theirs):

- ``analysis_ms_per_frame``: frame features + window bookkeeping for one 640x360 frame, p50/p95;
- ``demo_draw_ms_per_frame``: drawing one 640x360 demo frame, p50/p95;
- ``composer_ms_per_bar``: one bar with all five layers, mean/p95;
- ``engine_realtime_factor``: seconds of audio per second of wall time when the pyo engine is
  stepped as fast as possible, all five layers playing a dense score;
- ``engine_core_fraction``: CPU time of the engine thread per second of audio in that same
  dense five-layer score (the server's boot excluded): the share of one core live playback
  takes (target under 0.05);
- ``live_manual``: the real pipeline live in ``manual`` mode with the demo source analysed at
  30 fps for 60 s (5 s with ``--quick``): ``late_buffers`` blocks handed on after a listener
  with one block of buffer needed them (target 0), ``blocks``, composer ``underruns`` and
  analysis ``dropped_frames``;
- ``face``: the face analysis mode on 640x480 frames of a photo of a smiling face (skimage's
  astronaut) sliding about the frame, windows of 15 frames (0.5 s at 30 fps):
  ``ms_per_frame`` detection + landmarks + blendshapes + crop, plus the frame's share of its
  window's expression batch, p50/p95; ``detect_ms_per_frame`` the first part alone;
  ``window_ms`` one window's batched inference (15 faces through the mini-Xception in one call,
  fusion, smoothing); ``expression_ms_per_face`` batched vs one call per face;
  ``no_face_ms_per_frame`` a frame with no face in it (skimage's coffee);
- ``melody_ms_per_bar``: the melody LSTM's sampler writing one 4/4 bar (the melody alone, density
  alternating 0.9 / 0.3 every 4 bars, scale constraint on), p50/p95, on the CPU and, where torch
  sees one, on CUDA (else ``null``);
- ``scene``: the game mode (scene model, ``models/weights/scene_default.pt``) on 1280x720
  frames at 30 fps (the demo scene, drawn beforehand), 0.5 s windows: ``window_ms`` one
  window's inference (its new frames through the CNN in one batch, the GRU over the last
  second, and every picture cue of :mod:`models.scene_cues`, computed whether or not the model
  reads them), p50/p95, on one core (target: 10 ms), wall clock and, as ``window_cpu_ms``, the
  thread's CPU time (the cost itself, whatever else shares the machine);
  ``prepare_ms_per_frame`` the per-frame work (taking every 30/8th frame and shrinking it to
  96x72), p50/p95; ``cues_ms_per_frame`` the
  picture cues of one 96x72 frame alone; ``model_cues`` the cues the model reads;
  ``fps_sustained`` frames per second the whole analysis keeps up with (frames / (all prepare +
  infer time)); ``null`` when the weights are missing;
- ``scene_audio``: game mode's audio cues per 0.5 s window (:mod:`daemon.bench.game_audio`:
  the signal cues, the feedback check, the live fusion on the analysis thread, and the VAD in
  its worker), and ``window_with_picture_cpu_ms_p50``, the scene window plus the live fusion;
- ``scene_text``: game mode's on-screen text cue (:mod:`models.text_cues`), one frame a
  second, all in its worker thread (the analysis thread only hands the frame over):
  ``shrink_ms`` and ``detect_ms``, p50/p95, one core, and ``core_share``;
- ``mqtt``: a live ``manual`` session at 120 bpm publishing to a mosquitto started on a free
  port (60 s; 5 s with ``--quick``): ``beat_lead_ms`` how long before each beat sounds
  ``mosquitto_sub`` received it (p50/p5/min; the setting is ``mqtt.beat_lead_ms``),
  ``publish_lead_ms`` the same when published, ``beats_dropped_late`` (the session's first beat
  is never known ahead), ``command_round_trip_ms`` a command to its result, p50/p95; ``null``
  without mosquitto (see :mod:`daemon.bench.mqtt`);
- ``visuals``: the beat-synced visual renderer at 1280x720: ``fps`` on one core, ms per frame
  p50/p95 (opaque, transparent, and a live stream frame incl. YUV and VP8 encoding); see
  :mod:`daemon.bench.web`;
- ``webrtc_audio_latency``: glass-to-glass from a beat's audio time to the OBS page's audio
  output in headless Chromium over loopback WebRTC, ms p50/p95 (``skipped`` without Chromium);
- ``render_x_realtime``: ``moodscore render`` of a 640x360, 30 fps H.264 clip (60 s; 8 s with
  ``--quick``), as a whole command in a fresh process: clip length / wall time;
- ``library``: the music library on 200 files (15 with ``--quick``) moodscore composes and writes
  as WAV, FLAC, OGG and MP3: ``scan`` speed in ``x_realtime`` (target >= 20), ``rescan_s`` with
  nothing changed (target < 2), and ``recommend`` quality (mood queries, research seed 001's
  diversity measure against nearest-by-tempo); see :mod:`daemon.bench.library`;
- ``reaction``: how fast the music answers a cut, from rendered audio alone (frame mode, demo
  clips cutting calm -> intense and back at 12 s, at 70, 110 and 150 bpm; 110 calm -> intense
  alone with ``--quick``): ``first_change_s`` (the first sample differing from the uncut render) and
  ``half_done_s`` (activity half-way to its new level), in seconds after the cut; and
  ``live_cut_to_stinger_ms``, live (manual backend, a paced source stepping every 4 s) from the
  arrival of the frame that confirms a cut to the first sample of the stinger answering it,
  as heard, p50/p95; see :mod:`daemon.bench.reaction`;
- ``busy_machine``: late audio blocks per minute of a live ``run`` with three OBS-page viewers
  (headless Chromium) and two busy cores, 60 s, with the engine in the daemon's process
  (``engine.process = "shared"``, before) and in its own (``"own"``, the default, after), both
  at raised priority; target 0; not with ``--quick``; see :mod:`daemon.bench.busy`.

``--skip SECTION,...`` leaves sections out (:data:`SECTIONS`; the JSON lists them as
``skipped``): a figure re-measured after a change without waiting for the rest.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon import __version__
from daemon.bench import SECTIONS
from daemon.bench.game_text import game_text_figures
from daemon.config import Config

if TYPE_CHECKING:
    from daemon.engine import Engine


def run_bench(config: Config, *, quick: bool = False, skip: Collection[str] = ()) -> dict[str, Any]:
    """Measure every figure; ``quick`` uses shorter runs (for tests and a first look); the
    sections named in ``skip`` (of :data:`SECTIONS`, checked by :func:`daemon.bench.run_bench`)
    are not run and listed as ``skipped``."""
    from daemon.extras import require

    for extra in ("face", "library", "dev"):  # face mode, the reaction check, sample photos
        require(extra, what="`moodscore bench`")
    figures: dict[str, Any] = {
        "moodscore": __version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
        },
        "quick": quick,
        "skipped": [section for section in SECTIONS if section in skip],
    }

    def wanted(section: str) -> bool:
        return section not in skip

    if wanted("analysis"):
        figures["analysis_ms_per_frame"], figures["demo_draw_ms_per_frame"] = _analysis(
            config, frames=300 if quick else 1800
        )
    if wanted("face"):
        figures["face"] = _face(config, frames=150 if quick else 900)
    if wanted("scene"):
        figures["scene"] = _scene(config, seconds=10.0 if quick else 60.0)
        figures["scene_audio"] = _scene_audio(figures["scene"], seconds=10.0 if quick else 60.0)
        figures["scene_text"] = game_text_figures(calls=10 if quick else 60)
    if wanted("composer"):
        figures["composer_ms_per_bar"] = _composer(config, bars=200 if quick else 2000)
    if wanted("melody"):
        figures["melody_ms_per_bar"] = _melody(bars=200 if quick else 2000)
    if wanted("engine"):
        seconds = 10.0 if quick else 60.0
        figures["engine_realtime_factor"] = _engine(config, seconds=seconds)
        figures["engine_core_fraction"] = _engine_core_fraction(config, seconds=seconds)
    if wanted("live_manual"):
        figures["live_manual"] = _live_manual(config, seconds=5.0 if quick else 60.0)
    if wanted("mqtt"):
        figures["mqtt"] = _mqtt(config, seconds=5.0 if quick else 60.0)
    if wanted("web"):
        figures.update(_web(config, quick=quick))
    if wanted("render"):
        figures.update(_render(seconds=8.0 if quick else 60.0))
    if wanted("library"):
        from daemon.bench.library import library_figures

        figures["library"] = library_figures(config, quick=quick)
    if wanted("reaction"):
        from daemon.bench.reaction import all_reaction_figures

        figures["reaction"] = all_reaction_figures(config, quick=quick)
    if wanted("busy_machine") and quick:
        # Two daemons, three browsers and two busy cores for a minute each: not a quick look.
        figures["busy_machine"] = {
            "skipped": "not with --quick (python -m daemon.bench.busy SECONDS runs it alone)"
        }
    elif wanted("busy_machine"):
        from daemon.bench.busy import busy_figures

        figures["busy_machine"] = busy_figures(seconds=60.0)
    return figures


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.array(samples_s) * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "mean": round(float(ms.mean()), 3),
        "n": len(ms),
    }


def _analysis(config: Config, *, frames: int) -> tuple[dict[str, float], dict[str, float]]:
    from daemon.analysis import WindowAnalyzer
    from daemon.messages import Frame
    from daemon.sources.demo import demo_intensity, draw_demo_frame

    analyzer = WindowAnalyzer(config=config.analysis)
    analysis, drawing = [], []
    for index in range(frames):
        t = index / 30.0
        started = time.perf_counter()
        image = draw_demo_frame(t, intensity=demo_intensity(t), width=640, height=360)
        drawn = time.perf_counter()
        analyzer.push(Frame(pts=t, image=image, index=index))
        analysis.append(time.perf_counter() - drawn)
        drawing.append(drawn - started)
    return _percentiles(analysis), _percentiles(drawing)


def _scene(config: Config, *, seconds: float) -> dict[str, Any] | None:
    import cv2
    import torch

    from daemon.analysis.game import (
        GameModel,
        pace_game_text,
        resolve_model_path,
        shrink_to_store,
    )
    from daemon.messages import Frame
    from daemon.sources import draw_demo_frame
    from models.scene_cues import CueTracker

    if not resolve_model_path(config.game.model).is_file():
        return None
    fps, window = 30.0, 15
    pictures = [
        draw_demo_frame(k / fps, intensity=k / 60, width=1280, height=720) for k in range(60)
    ]
    model = GameModel(config=config.game, device=config.models.device)
    # Paced as live: the window never waits for the on-screen text, measured in its worker
    # (its cost: ``scene_text``).
    pace_game_text(model, live=True)
    # One core, as the budget is stated (the daemon itself lets the model use two).
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    prepare: list[float] = []
    infer: list[float] = []
    infer_cpu: list[float] = []
    prepared = []
    for index in range(int(seconds * fps)):
        frame = Frame(pts=index / fps, image=pictures[index % len(pictures)], index=index)
        started = time.perf_counter()
        prepared.append(model.prepare(frame))
        prepare.append(time.perf_counter() - started)
        if len(prepared) == window:
            started, cpu_started = time.perf_counter(), time.thread_time()
            model.infer(prepared, (index + 1 - window) / fps, (index + 1) / fps)
            infer.append(time.perf_counter() - started)
            infer_cpu.append(time.thread_time() - cpu_started)
            prepared = []
    cues_alone: list[float] = []
    tracker = CueTracker()
    for picture in pictures:
        small = shrink_to_store(picture)
        started = time.perf_counter()
        tracker.push(small)
        cues_alone.append(time.perf_counter() - started)
    model.close()
    torch.set_num_threads(threads)
    cv2.setNumThreads(cv_threads)
    return {
        "input": "1280x720 at 30 fps, 0.5 s windows, one core",
        "model_cues": list(model.cue_names),
        "window_ms": _percentiles(infer),
        "window_cpu_ms": _percentiles(infer_cpu),
        "prepare_ms_per_frame": _percentiles(prepare),
        "cues_ms_per_frame": _percentiles(cues_alone),
        "fps_sustained": round(len(prepare) / (sum(prepare) + sum(infer)), 1),
    }


def _scene_audio(scene: dict[str, Any] | None, *, seconds: float) -> dict[str, Any] | None:
    from daemon.bench.game_audio import game_audio_figures

    figures = game_audio_figures(seconds=seconds)
    if figures is not None and scene is not None:
        # The game window's cost on the analysis thread with the audio cues heard live.
        total = scene["window_cpu_ms"]["p50"] + figures["fuse_ms_per_window"]["p50"]
        figures["window_with_picture_cpu_ms_p50"] = round(total, 3)
    return figures


def _face(config: Config, *, frames: int) -> dict[str, Any]:
    import cv2
    import skimage.data

    from daemon.analysis.face import FaceModel
    from daemon.messages import Frame

    def on_canvas(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
        canvas = np.zeros((480, 640, 3), dtype=np.uint8)
        picture = cv2.resize(image, (400, 400), interpolation=cv2.INTER_AREA)
        canvas[40 + dy : 440 + dy, 120 + dx : 520 + dx] = picture
        return canvas

    face, coffee = skimage.data.astronaut(), skimage.data.coffee()
    model = FaceModel(config=config.face, device=config.models.device)
    window = 15
    detect: list[float] = []
    per_frame: list[float] = []
    windows: list[float] = []
    no_face: list[float] = []
    try:
        prepared = []
        for index in range(frames):
            # A face that moves a little, as a person in front of a camera does.
            dx, dy = round(30 * np.sin(index / 20)), round(20 * np.sin(index / 31))
            image = on_canvas(face, dx, dy)
            started = time.perf_counter()
            prepared.append(model.prepare(Frame(pts=index / 30, image=image, index=index)))
            detect.append(time.perf_counter() - started)
            if len(prepared) == window:
                started = time.perf_counter()
                model.infer(prepared, (index - window + 1) / 30, (index + 1) / 30)
                windows.append(time.perf_counter() - started)
                per_frame += [d + windows[-1] / window for d in detect[-window:]]
                prepared = []
        crops = np.stack([model.prepare(Frame(0.0, on_canvas(face, 0, 0), 0))[0].crop] * window)
        batched, single = [], []
        for _ in range(20):
            started = time.perf_counter()
            model.classifier.probabilities(crops)
            batched.append((time.perf_counter() - started) / window)
            started = time.perf_counter()
            for crop in crops:
                model.classifier.probabilities(crop[None])
            single.append((time.perf_counter() - started) / window)
        blank = on_canvas(coffee, 0, 0)
        for index in range(min(frames, 150)):
            started = time.perf_counter()
            model.prepare(Frame(pts=1000 + index / 30, image=blank, index=index))
            no_face.append(time.perf_counter() - started)
    finally:
        model.close()
    return {
        "size": "640x480",
        "device": str(model.classifier.device),
        "ms_per_frame": _percentiles(per_frame),
        "detect_ms_per_frame": _percentiles(detect),
        "window_ms": {**_percentiles(windows), "faces": window},
        "expression_ms_per_face": {
            "batched": round(float(np.median(batched)) * 1e3, 3),
            "one_call_each": round(float(np.median(single)) * 1e3, 3),
        },
        "no_face_ms_per_frame": _percentiles(no_face),
    }


def _dense_plans(config: Config, bars: int) -> list[Any]:
    from daemon.messages import Plan

    return [
        Plan(
            bar=bar,
            bpm=150.0,
            layers=5,
            tonic=2,
            mode="major" if bar % 16 < 8 else "minor",
            density=0.9,
            valence=0.5,
            arousal=0.9,
            beats_per_bar=config.conductor.beats_per_bar,
        )
        for bar in range(bars)
    ]


def _composer(config: Config, *, bars: int) -> dict[str, float]:
    from daemon.composer import Composer

    composer = Composer(config=config.composer)
    timings = []
    for plan in _dense_plans(config, bars):
        started = time.perf_counter()
        composer.compose_bar(plan)
        timings.append(time.perf_counter() - started)
    figures = _percentiles(timings)
    figures.pop("p50")
    return figures


def _melody(*, bars: int) -> dict[str, Any]:
    import torch

    from daemon.composer import load_lstm_model
    from models.melody_sampler import time_bars

    figures: dict[str, Any] = {}
    for device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            figures[device] = None
            continue
        figures[device] = time_bars(load_lstm_model(device=device), bars=bars)
    return figures


def _dense_engine(config: Config, *, seconds: float) -> Engine:
    """An offline engine with ``seconds`` of dense five-layer bars already composed."""
    from daemon.composer import Composer
    from daemon.engine import BackendChoice, Engine, ScoreQueue

    composer = Composer(config=config.composer)
    scores = ScoreQueue()
    bar_seconds = config.conductor.beats_per_bar * 60.0 / 150.0
    for plan in _dense_plans(config, int(seconds / bar_seconds) + 2):
        scores.put(composer.compose_bar(plan))
    return Engine(
        config=config.engine,
        backend=BackendChoice("offline", "bench"),
        scores=scores,
        realtime=False,
    )


def _engine(config: Config, *, seconds: float) -> float:
    engine = _dense_engine(config, seconds=seconds)
    engine.set_end_time(seconds)
    started = time.perf_counter()
    engine.start()
    engine.wait()
    elapsed = time.perf_counter() - started
    engine.stop()
    return round(seconds / elapsed, 1)


def _engine_core_fraction(config: Config, *, seconds: float) -> float:
    engine = _dense_engine(config, seconds=seconds)
    marks: list[tuple[float, float]] = []  # (engine thread CPU seconds, audio time)
    # Runs on the engine thread, so thread_time() is the engine's own CPU time.
    engine.add_audio_listener(lambda block, t: marks.append((time.thread_time(), t)))
    engine.set_end_time(seconds)
    engine.start()
    engine.wait()
    engine.stop()
    (cpu0, t0), (cpu1, t1) = marks[0], marks[-1]
    return round((cpu1 - cpu0) / max(t1 - t0, 1e-9), 4)


def _live_manual(config: Config, *, seconds: float) -> dict[str, Any]:
    import asyncio

    from daemon.app import LiveRequest, build_live
    from daemon.engine import BackendChoice
    from daemon.sources import open_source

    # The music alone: no web page, MQTT or MIDI port beside it.
    config = config.replace("web", enabled=False).replace("mqtt", enabled=False)
    config = config.replace("midi", enabled=False)
    source = open_source("demo", config.source, paced=True, duration=seconds)
    session = build_live(
        config, LiveRequest(duration=seconds), source, BackendChoice("manual", "bench")
    )
    report = asyncio.run(session.run())
    return {
        "seconds": seconds,
        "late_buffers": session.engine.late_blocks,
        "blocks": session.engine.blocks,
        "underruns": report.underruns,
        "dropped_frames": report.dropped_frames,
        "analysis_fps": config.source.fps,
    }


def _mqtt(config: Config, *, seconds: float) -> dict[str, Any] | None:
    from daemon.bench.mqtt import mqtt_figures

    return mqtt_figures(config, seconds=seconds)


def _web(config: Config, *, quick: bool) -> dict[str, Any]:
    from daemon.bench.web import web_figures

    return web_figures(config, quick=quick)


def _render(*, seconds: float) -> dict[str, Any]:
    from daemon.sources.demo import write_demo_clip

    with tempfile.TemporaryDirectory(prefix="moodscore-bench-") as scratch:
        clip = Path(scratch) / "clip.mp4"
        write_demo_clip(
            clip, duration=seconds, intensity=lambda t: 0.05 if t < seconds / 2 else 0.95
        )
        command = [
            sys.executable, "-m", "daemon.cli", "render", str(clip),
            "-o", str(Path(scratch) / "scored.mp4"), "-q",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        return {"render_x_realtime": None, "render_error": result.stderr.strip()[-500:]}
    return {
        "render_x_realtime": round(seconds / elapsed, 2),
        "render_clip": {
            "seconds": seconds,
            "size": "640x360",
            "fps": 30,
            "wall_s": round(elapsed, 2),
        },
    }
