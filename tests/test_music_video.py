"""`moodscore render --visuals`: music videos whose pictures pulse on the beats their own sound
track carries, as a viewer sees and librosa hears them."""

from __future__ import annotations

from pathlib import Path

import av
import librosa
import numpy as np
import pytest

from daemon.cli import main
from tests.clips import write_clip

pytestmark = pytest.mark.slow

FPS = 30


def _frames(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each video frame's time and its picture (RGB)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    return np.array([t for t, _ in decoded]), [image for _, image in decoded]


def _sound(path: Path) -> tuple[np.ndarray, int]:
    """The MP4's own audio track, mono, from its first sample."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        rate = stream.codec_context.sample_rate
        frames = list(container.decode(stream))
    assert frames[0].time == pytest.approx(0.0, abs=1e-3)
    return np.concatenate([f.to_ndarray() for f in frames], axis=1).mean(axis=0), rate


def test_the_visuals_pulse_on_the_beats_librosa_hears(tmp_path: Path) -> None:
    # 17 s: the demo's calm opening at one tempo (librosa's tracker assumes one; at 18.2 s the
    # music answers the rising picture and the tempo jumps within a beat).
    video = tmp_path / "demo.mp4"
    code = main(
        ["render", "demo", "--duration", "17", "-o", str(video), "--visuals", "only",
         "--seed", "3"]
    )  # fmt: skip
    assert code == 0
    times, pictures = _frames(video)
    assert len(times) == 17 * FPS and pictures[0].shape == (360, 640, 3)
    brightness = np.array([p.mean() for p in pictures])
    # A peak: brighter than both neighbours and clearly above the frames around it.
    padded = np.concatenate([[-np.inf], brightness, [-np.inf]])
    peaks = np.array(
        [
            times[k]
            for k in range(len(brightness))
            if padded[k] < brightness[k] >= padded[k + 2]
            and brightness[k] > np.median(brightness[max(0, k - 15) : k + 15]) + 3
        ]
    )
    audio, rate = _sound(video)
    assert len(audio) / rate == pytest.approx(17.0, abs=0.05)
    _, beats = librosa.beat.beat_track(y=audio, sr=rate, units="time")
    assert len(beats) >= 15
    # Every beat librosa finds has the brightness peak within one video frame of it, and
    # every pulse is a beat it hears (no flashes off the beat).
    offsets = np.array([np.min(np.abs(peaks - beat)) for beat in beats])
    assert offsets.max() <= 1.0 / FPS, np.round(offsets * FPS, 2)
    assert len(peaks) == pytest.approx(len(beats), abs=1)


def test_overlay_keeps_the_picture_and_flashes_on_the_beat(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "busy.mp4", duration=6.0, intensity=lambda t: 0.9)
    video = tmp_path / "overlay.mp4"
    assert main(["render", str(clip), "-o", str(video), "--visuals", "overlay"]) == 0
    _, originals = _frames(clip)
    times, pictures = _frames(video)
    assert len(pictures) == len(originals) == 6 * FPS
    pairs = list(zip(pictures, originals, strict=True))
    lift = np.array([p.astype(float).mean() - o.astype(float).mean() for p, o in pairs])
    untouched = np.array([np.median(np.abs(p.astype(int) - o)) for p, o in pairs])
    # Between beats the input shows through untouched (bar compression noise) around the
    # notes; on a beat the whole picture flashes brighter.
    assert np.percentile(untouched, 25) <= 2
    assert lift.max() > 20
    flashes = times[lift > lift.max() / 2]
    assert 3 <= len(flashes) <= len(times) / 3
