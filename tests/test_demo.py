"""The built-in demo scene: its calm -> intense -> calm cycle, its pictures and its clips."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from daemon.analysis import FrameFeatures, frame_features
from daemon.config import SourceConfig
from daemon.errors import EndOfStream
from daemon.sources import DemoSource, demo_intensity, draw_demo_frame, probe_video
from tests.clips import write_clip

CYCLE = 60.0
WIDTH, HEIGHT = 320, 180


def samples(start: float, end: float, count: int = 200) -> np.ndarray:
    return np.linspace(start, end, count, endpoint=False)


def draw(t: float, intensity: float, seed: int = 0) -> np.ndarray:
    return draw_demo_frame(t, intensity=intensity, width=WIDTH, height=HEIGHT, seed=seed)


def mean_features(intensity: float, times: np.ndarray) -> dict[str, float]:
    """Colour features averaged over frames, and motion between frames 1/30 s apart."""
    measured: list[FrameFeatures] = []
    for t in times:
        _, previous = frame_features(draw(t, intensity), t, None, analysis_width=160)
        after, _ = frame_features(
            draw(t + 1 / 30, intensity), t + 1 / 30, previous, analysis_width=160
        )
        measured.append(after)
    names = ("motion", "brightness", "saturation", "warmth", "contrast")
    return {name: float(np.mean([getattr(f, name) for f in measured])) for name in names}


# --- intensity over a cycle -----------------------------------------------------------------


def test_intensity_is_calm_in_the_first_and_last_fifth() -> None:
    for t in np.concatenate([samples(0, CYCLE / 5), samples(CYCLE * 4 / 5, CYCLE)]):
        assert demo_intensity(float(t), CYCLE) == 0.0, t


def test_intensity_is_full_over_the_middle_third() -> None:
    for t in samples(CYCLE / 3, CYCLE * 2 / 3):
        assert demo_intensity(float(t), CYCLE) == 1.0, t


def test_intensity_rises_then_falls_smoothly_within_zero_to_one() -> None:
    step = CYCLE / 6000
    times = np.arange(0, CYCLE, step)
    values = np.array([demo_intensity(float(t), CYCLE) for t in times])
    assert values.min() == 0.0 and values.max() == 1.0
    assert np.abs(np.diff(values)).max() < 0.01  # no jumps anywhere in the cycle
    rise = values[(times >= CYCLE / 5) & (times < CYCLE / 3)]
    fall = values[(times >= CYCLE * 2 / 3) & (times < CYCLE * 4 / 5)]
    assert np.all(np.diff(rise) >= 0) and np.all(np.diff(fall) <= 0)
    # It also closes the cycle without a jump.
    assert demo_intensity(CYCLE - 1e-6, CYCLE) == demo_intensity(0.0, CYCLE)


@pytest.mark.parametrize("cycle", [10.0, 60.0, 90.0])
def test_intensity_repeats_every_cycle(cycle: float) -> None:
    for t in samples(0, cycle, 50):
        for k in (1, 2, 7):
            assert demo_intensity(float(t) + k * cycle, cycle) == pytest.approx(
                demo_intensity(float(t), cycle), abs=1e-6
            )


def test_a_shorter_cycle_compresses_the_phases() -> None:
    assert demo_intensity(5.0, 10.0) == 1.0  # the middle of a 10 s cycle
    assert demo_intensity(5.0, 60.0) == 0.0  # still calm in a 60 s one


# --- drawn frames ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(320, 180), (641, 359), (32, 18), (90, 160)])
def test_frames_have_the_requested_shape_and_type(size: tuple[int, int]) -> None:
    width, height = size
    image = draw_demo_frame(1.3, intensity=0.7, width=width, height=height)
    assert image.shape == (height, width, 3)
    assert image.dtype == np.uint8


@pytest.mark.parametrize("intensity", [0.0, 0.4, 1.0])
def test_drawing_is_deterministic(intensity: float) -> None:
    assert np.array_equal(draw(12.34, intensity, seed=3), draw(12.34, intensity, seed=3))


@pytest.mark.parametrize("intensity", [0.0, 1.0])
def test_seeds_give_different_pictures(intensity: float) -> None:
    a = draw(5.0, intensity, seed=0).astype(np.int16)
    b = draw(5.0, intensity, seed=1).astype(np.int16)
    assert np.abs(a - b).mean() > 5.0


def test_intensity_outside_zero_to_one_is_clamped() -> None:
    assert np.array_equal(draw(2.0, 1.7), draw(2.0, 1.0))
    assert np.array_equal(draw(2.0, -0.5), draw(2.0, 0.0))


def test_intense_frames_are_warmer_more_colourful_and_busier_than_calm_ones() -> None:
    times = samples(0.0, 6.0, 12)
    calm = mean_features(0.0, times)
    intense = mean_features(1.0, times)
    assert calm["warmth"] < 0 < intense["warmth"]
    assert intense["saturation"] > calm["saturation"] + 0.15
    assert intense["motion"] > 5 * calm["motion"]
    assert intense["brightness"] > calm["brightness"]


def test_calm_frames_still_drift() -> None:
    # A frozen picture would read as a paused player; the calm blobs keep moving slowly.
    assert np.abs(draw(0.0, 0.0).astype(np.int16) - draw(3.0, 0.0)).mean() > 5.0


# --- the demo as a source -------------------------------------------------------------------


async def test_demo_source_delivers_the_drawn_scene_at_its_frame_rate() -> None:
    config = SourceConfig(width=WIDTH, height=HEIGHT, fps=25, demo_cycle_s=10)
    source = DemoSource(config=config, paced=False, duration=6.0, seed=2)
    frames = []
    async with source:
        while True:
            try:
                frames.append(await source.recv())
            except EndOfStream:
                break
    assert len(frames) == 150
    assert np.allclose([f.pts for f in frames], np.arange(150) / 25)
    for frame in (frames[0], frames[100]):  # calm, then intense (t = 4 s of a 10 s cycle)
        expected = draw_demo_frame(
            frame.pts,
            intensity=demo_intensity(frame.pts, 10.0),
            width=WIDTH,
            height=HEIGHT,
            seed=2,
        )
        assert np.array_equal(frame.image, expected)
    assert source.size == (WIDTH, HEIGHT) and source.fps == 25


# --- clips ----------------------------------------------------------------------------------


def test_write_clip_writes_a_playable_file(tmp_path: Path) -> None:
    path = write_clip(
        tmp_path / "ramp.mp4",
        duration=2.0,
        fps=24,
        size=(WIDTH, HEIGHT),
        intensity=lambda t: min(1.0, t / 1.5),
        seed=4,
        with_audio=True,
    )
    info = probe_video(path)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert (info.fps, info.width, info.height, info.codec) == (24, WIDTH, HEIGHT, "h264")
    with av.open(str(path)) as container:
        images = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert len(images) == 48
    # The picture follows the intensity it was written with: calm first, intense at the end.
    first = draw_demo_frame(0.0, intensity=0.0, width=WIDTH, height=HEIGHT, seed=4)
    last = draw_demo_frame(47 / 24, intensity=1.0, width=WIDTH, height=HEIGHT, seed=4)
    assert np.abs(images[0].astype(np.int16) - first).mean() < 6
    assert np.abs(images[-1].astype(np.int16) - last).mean() < 6
    # The audio track is a quiet tone lasting the whole clip.
    assert sound.shape[0] == 2
    assert sound.shape[1] / 48000 == pytest.approx(2.0, abs=0.05)
    assert 0.05 < np.abs(sound[:, 4800:-4800]).max() <= 0.2
