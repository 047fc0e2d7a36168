"""``moodscore bench``: the cost of game mode's audio cues per 0.5 s window, on one core.

The audio is the voiced Ren'Py clip of ``models/footage/audio`` (speech over the game's music,
16 kHz mono), read window by window:

- ``fuse_ms_per_window``: what a live window costs the analysis thread
  (:meth:`~daemon.analysis.game_audio.GameAudioCues.fuse`: taking the window from the capture,
  handing it to the audio worker, reading the previous window's reading, the fusion);
- the audio worker's thread (one torch thread), beside the picture model, per window:
  ``signal_ms_per_window`` loudness, transient density and low end; ``feedback_ms_per_window``
  the check against what the engine played (live captures only: six band envelopes of the
  window and of 1.05 s of played audio at 48 kHz, and the correlation at every delay
  0-500 ms); ``vad_ms_per_window`` Silero VAD at 8 kHz (16 chunks of 32 ms), which alone would
  not fit beside the picture in a 10 ms window; ``worker_ms_per_window`` the three together;

each p50/p95 in thread CPU time (the cost itself, whatever else shares the machine).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import REPO_ROOT

CLIP = REPO_ROOT / "models" / "footage" / "audio" / "renpy_tutorial_960x540_voiced.mp4"


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    p50, p95 = np.percentile(ms, [50, 95])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}


def game_audio_figures(*, seconds: float, clip: Path = CLIP) -> dict[str, Any] | None:
    """The figures of the module docstring over ``seconds`` of the clip (None without it)."""
    import torch

    from daemon.analysis.game_audio import GameAudioCues, PlayedAudio
    from daemon.sources.game_audio import FileAudio, LiveCapture
    from models.audio_cues import (
        SignalCues,
        SpeechDetector,
        band_envelopes,
        feedback_match,
        resample,
    )

    if not clip.is_file():
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    audio = FileAudio(clip)
    start = 30.0  # past the clip's first seconds of silence and menus
    windows = []
    t = start
    while t + 0.5 <= start + seconds:
        samples = audio.window(t, t + 0.5)
        if samples is None:
            break
        windows.append(samples)
        t += 0.5
    audio.close()
    rng = np.random.default_rng(440)
    music = (0.1 * rng.standard_normal(round(48_000 * 1.05))).astype(np.float32)

    signal, vad_cost, feedback_cost = [], [], []
    cues, vad = SignalCues(), SpeechDetector()
    for samples in windows:
        began = time.thread_time()
        cues.push(samples)
        signal.append(time.thread_time() - began)
        began = time.thread_time()
        vad.push(samples)
        vad_cost.append(time.thread_time() - began)
        began = time.thread_time()
        feedback_match(band_envelopes(samples), band_envelopes(resample(music, 48_000, 16_000)))
        feedback_cost.append(time.thread_time() - began)

    # The live path as the analysis thread runs it, the capture fed from the clip.
    clock = [0.0]

    class Feed(LiveCapture):
        def __init__(self) -> None:
            super().__init__(description="bench feed", rate=16_000, now=lambda: clock[0])

        def put(self, samples: np.ndarray) -> None:
            self._add(samples)

    feed = Feed()
    played = PlayedAudio(sample_rate=lambda: 48_000, now=lambda: clock[0])
    live = GameAudioCues(open_input=lambda: feed, played=played)
    probs = np.array([0.25, 0.25, 0.25, 0.25])
    classes = ("combat", "exploration", "dialogue", "menu")
    fuse_cost: list[float] = []
    for k, samples in enumerate(windows):
        clock[0] = (k + 1) * 0.5
        played.listen(music[-24_000:, None].repeat(2, axis=1), k * 0.5)
        feed.put(samples)
        began = time.thread_time()
        live.fuse(classes, probs, k * 0.5, (k + 1) * 0.5)
        fuse_cost.append(time.thread_time() - began)
    live.close()
    torch.set_num_threads(threads)
    return {
        "input": f"{len(windows)} windows of 0.5 s, 16 kHz mono ({clip.name}), one core",
        "signal_ms_per_window": _percentiles(signal),
        "feedback_ms_per_window": _percentiles(feedback_cost),
        "fuse_ms_per_window": _percentiles(fuse_cost),
        "vad_ms_per_window": _percentiles(vad_cost),
        "worker_ms_per_window": _percentiles(
            [a + b + c for a, b, c in zip(signal, feedback_cost, vad_cost, strict=True)]
        ),
        "worker": "one thread of its own (one torch thread), beside the picture model",
    }
