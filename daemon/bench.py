"""``moodscore bench``: the speed figures, measured on this machine, as JSON.

Figures (later issues add theirs):

- ``analysis_ms_per_frame``: frame features + window bookkeeping for one 640x360 frame, p50/p95;
- ``demo_draw_ms_per_frame``: drawing one 640x360 demo frame, p50/p95;
- ``composer_ms_per_bar``: one bar with all five layers, mean/p95;
- ``engine_realtime_factor``: seconds of audio per second of wall time when the pyo engine is
  stepped as fast as possible, all five layers playing a dense score;
- ``render_x_realtime``: ``moodscore render`` of a 640x360, 30 fps H.264 clip (60 s; 15 s with
  ``--quick``), as a whole command in a fresh process: clip length / wall time.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from daemon import __version__
from daemon.config import Config


def run_bench(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """Measure every figure; ``quick`` uses shorter runs (for tests and a first look)."""
    figures: dict[str, Any] = {
        "moodscore": __version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "processor": platform.machine(),
        },
        "quick": quick,
    }
    figures["analysis_ms_per_frame"], figures["demo_draw_ms_per_frame"] = _analysis(
        config, frames=300 if quick else 1800
    )
    figures["composer_ms_per_bar"] = _composer(config, bars=200 if quick else 2000)
    figures["engine_realtime_factor"] = _engine(config, seconds=10.0 if quick else 60.0)
    figures.update(_render(seconds=15.0 if quick else 60.0))
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
            scene="default",
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


def _engine(config: Config, *, seconds: float) -> float:
    from daemon.composer import Composer
    from daemon.engine import BackendChoice, Engine, ScoreQueue

    composer = Composer(config=config.composer)
    scores = ScoreQueue()
    bar_seconds = config.conductor.beats_per_bar * 60.0 / 150.0
    for plan in _dense_plans(config, int(seconds / bar_seconds) + 2):
        scores.put(composer.compose_bar(plan))
    engine = Engine(
        config=config.engine,
        backend=BackendChoice("offline", "bench"),
        scores=scores,
        realtime=False,
    )
    engine.set_end_time(seconds)
    started = time.perf_counter()
    engine.start()
    engine.wait()
    elapsed = time.perf_counter() - started
    engine.stop()
    return round(seconds / elapsed, 1)


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
