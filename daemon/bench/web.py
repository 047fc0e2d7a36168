"""``moodscore bench`` figures of the OBS page: the visual renderer's speed and the WebRTC audio
latency.

- ``visuals``: :func:`~daemon.visuals.render_frame` at 1280x720 over a dense five-layer score at
  150 bpm (bars from the real engine, rendered offline): ``fps`` frames per second one core
  draws (opaque), ``ms`` per frame p50/p95 opaque and ``transparent_ms`` for the overlay mode;
  ``stream_frame_ms`` is what each frame of the live stream costs in all: drawing, RGB ->
  YUV 4:2:0 and VP8 encoding, done once per frame however many viewers watch;
- ``webrtc_audio_latency``: glass-to-glass from a beat's audio time to its arrival at the
  browser's audio output (see :mod:`daemon.bench.latency`), ms p50/p95; ``skipped`` says why
  where Chromium or Playwright is missing.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from daemon.config import Config


def web_figures(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """The figures above; ``quick`` uses shorter runs."""
    from daemon.bench.latency import measure_audio_latency

    return {
        "visuals": visuals_figures(config, frames=120 if quick else 600),
        "webrtc_audio_latency": measure_audio_latency(seconds=5.0 if quick else 30.0),
    }


def visuals_figures(
    config: Config, *, frames: int, width: int = 1280, height: int = 720
) -> dict[str, Any]:
    """Renderer speed at ``width`` x ``height`` over ``frames`` frames at 30 fps of music."""
    import fractions

    from daemon.composer import Composer
    from daemon.engine import BackendChoice, Engine, ScoreQueue
    from daemon.messages import Plan
    from daemon.outputs.webrtc.vp8 import VisualsEncoder, stream_bitrate, yuv420_frame
    from daemon.visuals import VisualTimeline, render_frame

    seconds = frames / 30.0 + 2.0
    composer = Composer(config=config.composer)
    scores = ScoreQueue()
    bar_s = config.conductor.beats_per_bar * 60.0 / 150.0
    for bar in range(int(seconds / bar_s) + 2):
        plan = Plan(
            bar=bar, bpm=150.0, layers=5, tonic=2, mode="major", density=0.9,
            valence=0.5 if bar % 4 < 2 else -0.5, arousal=0.8,
            beats_per_bar=config.conductor.beats_per_bar,
        )  # fmt: skip
        scores.put(composer.compose_bar(plan))
    engine = Engine(
        config=config.engine, backend=BackendChoice("offline", "bench"), scores=scores,
        realtime=False,
    )  # fmt: skip
    timeline = VisualTimeline(keep_s=None)
    timeline.attach(engine)
    engine.set_end_time(seconds)
    engine.start()
    engine.wait()
    engine.stop()
    encoder = VisualsEncoder(
        width=width, height=height, fps=30.0, bitrate=stream_bitrate(width, height, 30.0)
    )
    opaque, transparent, convert = [], [], []
    for k in range(frames):
        t = 1.0 + k / 30.0
        state = timeline.state_at(t)
        started = time.perf_counter()
        image = render_frame(t, state, width=width, height=height)
        drawn = time.perf_counter()
        frame = yuv420_frame(image)
        frame.pts, frame.time_base = k * 3000, fractions.Fraction(1, 90_000)
        encoder.encode(frame, keyframe=k % 60 == 0)
        convert.append(time.perf_counter() - drawn)
        opaque.append(drawn - started)
        started = time.perf_counter()
        render_frame(t, state, width=width, height=height, transparent=True)
        transparent.append(time.perf_counter() - started)

    def ms(samples: list[float]) -> dict[str, float]:
        values = np.array(samples) * 1e3
        return {
            "p50": round(float(np.percentile(values, 50)), 2),
            "p95": round(float(np.percentile(values, 95)), 2),
        }

    return {
        "size": f"{width}x{height}",
        "fps": round(len(opaque) / sum(opaque), 1),
        "ms": ms(opaque),
        "transparent_ms": ms(transparent),
        "stream_frame_ms": ms([a + b for a, b in zip(opaque, convert, strict=True)]),
        "frames": frames,
    }
