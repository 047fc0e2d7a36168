"""Frame features, window moods and the analysis stage, on frames whose properties are known."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.analysis import (
    AnalysisStage,
    FrameFeatures,
    WindowAnalyzer,
    frame_features,
    mood_from_features,
    shrink,
)
from daemon.analysis import features as features_module
from daemon.analysis.features import Previous
from daemon.config import AnalysisConfig, SourceConfig
from daemon.errors import EndOfStream
from daemon.messages import Frame, Mood
from daemon.sources import DemoSource, FrameSource, VideoFileSource
from tests.clips import write_clip

WIDTH, HEIGHT = 160, 90
FPS = 30.0
CONFIG = AnalysisConfig()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (WIDTH, HEIGHT)) -> np.ndarray:
    image = np.empty((size[1], size[0], 3), dtype=np.uint8)
    image[:] = rgb
    return image


def stripes(offset: int, period: int = 16) -> np.ndarray:
    """Black and white vertical bars, shifted right by ``offset`` pixels."""
    columns = ((np.arange(WIDTH) + offset) // (period // 2)) % 2 * 255
    return np.ascontiguousarray(
        np.broadcast_to(columns[None, :, None], (HEIGHT, WIDTH, 3)).astype(np.uint8)
    )


def measure(
    image: np.ndarray, pts: float = 0.0, previous: Previous | None = None
) -> tuple[FrameFeatures, Previous]:
    return frame_features(image, pts, previous, analysis_width=WIDTH)


def features_of(images: Sequence[np.ndarray], fps: float = FPS) -> list[FrameFeatures]:
    """The features of consecutive frames, ``1 / fps`` apart."""
    out: list[FrameFeatures] = []
    previous: Previous | None = None
    for i, image in enumerate(images):
        features, previous = measure(image, i / fps, previous)
        out.append(features)
    return out


def moving_stripes(count: int, step: int = 4) -> list[np.ndarray]:
    return [stripes(i * step) for i in range(count)]


def frames(images: Sequence[np.ndarray], start: float = 0.0, fps: float = FPS) -> list[Frame]:
    return [Frame(pts=start + i / fps, image=image, index=i) for i, image in enumerate(images)]


def triple(values: np.ndarray) -> tuple[float, float, float]:
    return float(values[0]), float(values[1]), float(values[2])


def rgb(values: np.ndarray) -> tuple[int, int, int]:
    return int(values[0]), int(values[1]), int(values[2])


def push_all(analyzer: WindowAnalyzer, items: Sequence[Frame]) -> list[Mood]:
    return [mood for frame in items for mood in analyzer.push(frame)]


def spans(moods: Sequence[Mood]) -> list[tuple[float, float]]:
    return [(round(m.t_start, 6), round(m.t_end, 6)) for m in moods]


# --- frame features -------------------------------------------------------------------------


def test_identical_frames_have_no_motion() -> None:
    first, previous = measure(stripes(0))
    second, _ = measure(stripes(0), 1 / FPS, previous)
    assert first.motion is None  # nothing to compare a stream's first frame with
    assert second.motion == 0.0


def test_a_shifted_pattern_has_motion() -> None:
    _, previous = measure(stripes(0))
    shifted, _ = measure(stripes(4), 1 / FPS, previous)
    assert shifted.motion is not None and shifted.motion > 0.2


def test_motion_is_expressed_per_thirtieth_of_a_second() -> None:
    _, previous = measure(stripes(0))
    one_frame, _ = measure(stripes(4), 1 / 30, previous)
    two_frames, _ = measure(stripes(4), 2 / 30, previous)
    assert one_frame.motion is not None
    assert two_frames.motion == pytest.approx(one_frame.motion / 2, rel=1e-4)


def test_a_change_of_frame_size_is_not_measured_as_motion_instead_of_failing() -> None:
    _, previous = measure(stripes(0))
    resized, _ = measure(solid((255, 255, 255), (80, 45)), 1 / FPS, previous)
    assert resized.motion is None


def test_white_is_brighter_than_grey_is_brighter_than_black() -> None:
    white, grey, black = (measure(solid(c))[0] for c in [(255,) * 3, (128,) * 3, (0,) * 3])
    assert white.brightness > grey.brightness > black.brightness
    assert white.brightness == pytest.approx(1.0, abs=0.01)
    assert black.brightness == pytest.approx(0.0, abs=0.01)


def test_saturated_red_is_vivid_and_warm() -> None:
    red, _ = measure(solid((255, 0, 0)))
    assert red.saturation > 0.9
    assert red.warmth > 0.5


def test_pure_blue_is_cold() -> None:
    blue, _ = measure(solid((0, 0, 255)))
    assert blue.warmth < -0.5
    assert blue.saturation > 0.9


@pytest.mark.parametrize("level", [0, 40, 128, 255])
def test_grey_is_neither_vivid_nor_warm(level: int) -> None:
    grey, _ = measure(solid((level, level, level)))
    assert grey.saturation == pytest.approx(0.0, abs=1e-6)
    assert grey.warmth == pytest.approx(0.0, abs=1e-6)


def test_a_dark_colour_is_less_saturated_than_the_same_hue_bright() -> None:
    bright, _ = measure(solid((240, 120, 0)))
    dark, _ = measure(solid((60, 30, 0)))
    assert dark.saturation < bright.saturation / 2
    assert dark.warmth == pytest.approx(bright.warmth)


def test_flat_frames_have_no_contrast_and_bars_have_full_contrast() -> None:
    flat, _ = measure(solid((128, 128, 128)))
    bars, _ = measure(stripes(0))
    assert flat.contrast == pytest.approx(0.0, abs=1e-3)
    assert bars.contrast > 0.9


def test_shrink_keeps_the_aspect_and_leaves_small_frames_alone() -> None:
    big = np.zeros((720, 1280, 3), dtype=np.uint8)
    assert shrink(big, 160).shape == (90, 160, 3)
    small = np.zeros((90, 120, 3), dtype=np.uint8)
    assert shrink(small, 160) is small


def test_features_do_not_depend_on_the_frame_size() -> None:
    scene = np.zeros((90, 160, 3), dtype=np.uint8)
    scene[:, :80] = (230, 60, 20)
    scene[:, 80:] = (20, 40, 90)
    big = np.repeat(np.repeat(scene, 8, axis=0), 8, axis=1)  # 1280x720, same picture
    small_features, _ = measure(scene)
    big_features, _ = measure(big)
    for name in ("brightness", "saturation", "warmth", "contrast"):
        assert getattr(big_features, name) == pytest.approx(
            getattr(small_features, name), abs=0.02
        ), name


# --- window moods ---------------------------------------------------------------------------


def test_bright_warm_vivid_window_has_higher_valence_than_dark_cold_grey() -> None:
    sunny = mood_from_features(features_of([solid((255, 190, 60))] * 5), CONFIG, 0.0, 0.5)
    gloomy = mood_from_features(features_of([solid((30, 34, 42))] * 5), CONFIG, 0.0, 0.5)
    assert sunny.valence > gloomy.valence + 1.0
    assert sunny.valence > 0 > gloomy.valence


def test_heavy_motion_raises_arousal() -> None:
    still = mood_from_features(features_of([stripes(0)] * 8), CONFIG, 0.0, 0.5)
    moving = mood_from_features(features_of(moving_stripes(8)), CONFIG, 0.0, 0.5)
    assert moving.features["motion"] > still.features["motion"]
    assert moving.arousal > still.arousal + 0.8


def test_mood_stays_in_range_for_random_frames(rng: np.random.Generator) -> None:
    for _ in range(60):
        count = int(rng.integers(1, 6))
        width, height = int(rng.integers(1, 400)), int(rng.integers(1, 300))
        kind = rng.integers(0, 3)
        images: list[np.ndarray] = []
        for _ in range(count):
            if kind == 0:  # noise
                images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
            elif kind == 1:  # a flat colour
                colour = rng.integers(0, 256, 3)
                images.append(
                    solid((int(colour[0]), int(colour[1]), int(colour[2])), (width, height))
                )
            else:  # extremes: every pixel black or white per channel
                images.append((rng.integers(0, 2, (height, width, 3)) * 255).astype(np.uint8))
        fps = float(rng.uniform(1.0, 240.0))
        features = features_of(images, fps=fps)
        config = AnalysisConfig(
            motion_full_scale=float(rng.uniform(1e-3, 1.0)),
            arousal_weights=triple(rng.uniform(0, 2, 3)),
            valence_weights=triple(rng.uniform(0, 2, 3)),
        )
        mood = mood_from_features(features, config, 0.0, 0.5)
        for f in features:
            assert f.motion is None or 0.0 <= f.motion <= 1.0, f
            for name in ("brightness", "saturation", "contrast"):
                assert 0.0 <= getattr(f, name) <= 1.0, (name, f)
            assert -1.0 <= f.warmth <= 1.0
        assert -1.0 <= mood.valence <= 1.0
        assert -1.0 <= mood.arousal <= 1.0
        assert 0.0 <= mood.confidence <= 1.0


def test_confidence_is_full_with_two_frames_and_half_with_one() -> None:
    two = features_of(moving_stripes(2))
    assert mood_from_features(two, CONFIG, 0.0, 0.5).confidence == 1.0
    assert mood_from_features(two[:1], CONFIG, 0.0, 0.5).confidence == 0.5


def test_zero_motion_weight_makes_motion_irrelevant() -> None:
    config = dataclasses.replace(CONFIG, arousal_weights=(0.0, 0.25, 0.15))
    still = mood_from_features(features_of([stripes(0)] * 6), config, 0.0, 0.5)
    moving = mood_from_features(features_of(moving_stripes(6)), config, 0.0, 0.5)
    assert moving.features["motion"] > 0.2
    assert moving.arousal == pytest.approx(still.arousal, abs=0.02)


def test_motion_only_weights_span_the_whole_arousal_range() -> None:
    config = dataclasses.replace(CONFIG, arousal_weights=(1.0, 0.0, 0.0))
    still = mood_from_features(features_of([stripes(0)] * 6), config, 0.0, 0.5)
    moving = mood_from_features(features_of(moving_stripes(6, step=8)), config, 0.0, 0.5)
    assert still.arousal == pytest.approx(-1.0)
    assert moving.arousal == pytest.approx(1.0)


def test_an_empty_window_raises_value_error() -> None:
    with pytest.raises(ValueError):
        mood_from_features([], CONFIG, 0.0, 0.5)


def test_mood_carries_its_window_and_feature_means() -> None:
    features = features_of([solid((255, 0, 0)), solid((0, 0, 255))])
    mood = mood_from_features(features, CONFIG, 1.5, 2.0)
    assert (mood.t_start, mood.t_end) == (1.5, 2.0)
    assert mood.features["frames"] == 2
    assert mood.features["warmth"] == pytest.approx(0.0, abs=1e-6)  # red and blue cancel


# --- windows --------------------------------------------------------------------------------


def test_windows_are_fixed_slices_of_source_time() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    moods = push_all(analyzer, frames(moving_stripes(48)))  # 0 .. 1.567 s
    assert spans(moods) == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5)]
    assert [m.features["frames"] for m in moods] == [15, 15, 15]


def test_a_window_completes_when_a_frame_at_or_past_its_end_arrives() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    assert analyzer.push(Frame(pts=0.0, image=stripes(0), index=0)) == []
    assert analyzer.push(Frame(pts=0.499, image=stripes(4), index=1)) == []
    completed = analyzer.push(Frame(pts=0.5, image=stripes(8), index=2))
    assert spans(completed) == [(0.0, 0.5)]
    assert completed[0].features["frames"] == 2


def test_a_gap_repeats_the_last_mood_with_zero_confidence() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    before = push_all(analyzer, frames(moving_stripes(12)))  # 0 .. 0.367 s
    assert before == []
    after_gap = analyzer.push(Frame(pts=2.1, image=stripes(0), index=12))
    assert spans(after_gap) == [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0)]
    measured, *held = after_gap
    assert measured.confidence == 1.0
    for mood in held:
        assert mood.confidence == 0.0
        assert (mood.valence, mood.arousal) == (measured.valence, measured.arousal)


def test_a_gap_before_the_first_frame_is_neutral_with_zero_confidence() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    moods = analyzer.push(Frame(pts=1.2, image=stripes(0), index=0))
    assert spans(moods) == [(0.0, 0.5), (0.5, 1.0)]
    assert all(m.confidence == 0.0 and m.valence == 0.0 and m.arousal == 0.0 for m in moods)


def test_flush_emits_the_partial_last_window_ending_at_end() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    moods = push_all(analyzer, frames(moving_stripes(21)))  # 0 .. 0.667 s
    last = analyzer.flush(0.7)
    assert spans(moods) == [(0.0, 0.5)]
    assert spans(last) == [(0.5, 0.7)]
    assert last[0].features["frames"] == 6


def test_nothing_is_emitted_twice() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    moods = push_all(analyzer, frames(moving_stripes(40)))
    moods += push_all(analyzer, frames([stripes(0)] * 3, start=2.6))  # after a gap
    moods += analyzer.flush(2.7)
    moods += analyzer.flush(2.7)
    assert analyzer.flush(3.0) == []
    starts = [m.t_start for m in moods]
    assert len(starts) == len(set(starts))
    assert spans(moods) == [(k * 0.5, (k + 1) * 0.5) for k in range(5)] + [(2.5, 2.7)]
    for earlier, later in itertools.pairwise(moods):
        assert later.t_start == pytest.approx(earlier.t_end)


def test_flush_without_frames_emits_nothing() -> None:
    assert WindowAnalyzer(config=CONFIG).flush(1.0) == []


def test_a_cut_on_the_first_frame_of_a_window_counts_as_motion() -> None:
    analyzer = WindowAnalyzer(config=CONFIG)
    calm = [solid((40, 40, 40))] * 15  # window [0, 0.5): nothing moves
    cut = [solid((250, 250, 250))] * 15  # window [0.5, 1.0): a hard cut on its first frame
    moods = push_all(analyzer, frames(calm + cut)) + analyzer.flush(1.0)
    assert spans(moods) == [(0.0, 0.5), (0.5, 1.0)]
    assert moods[1].features["motion"] > moods[0].features["motion"]


# --- the async stage ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_second_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("analysis") / "three.mp4"
    return write_clip(path, duration=3.0, size=(320, 180), intensity=lambda t: t / 3.0)


async def test_lossless_run_over_a_clip_analyses_every_frame(three_second_clip: Path) -> None:
    stage = AnalysisStage(config=CONFIG)
    moods: list[Mood] = []
    source = VideoFileSource(three_second_clip, paced=False)
    async with source:
        analysed = await stage.run(source, moods.append, lossless=True)
    assert analysed == stage.frames == 90
    assert stage.dropped == 0
    assert spans(moods) == [(k * 0.5, (k + 1) * 0.5) for k in range(6)]
    assert [m.features["frames"] for m in moods] == [15] * 6
    assert all(m.confidence == 1.0 for m in moods)


class BurstSource(FrameSource):
    """Hands out ``count`` frames as fast as asked, then ends after ``end_delay`` seconds."""

    def __init__(self, count: int, *, end_delay: float) -> None:
        self.description = "burst"
        self.fps = FPS
        self.size = (WIDTH, HEIGHT)
        self.duration = count / FPS
        self._count = count
        self._end_delay = end_delay
        self._sent = 0

    async def recv(self) -> Frame:
        await asyncio.sleep(0)
        if self._sent >= self._count:
            await asyncio.sleep(self._end_delay)
            raise EndOfStream
        frame = Frame(pts=self._sent / FPS, image=stripes(self._sent * 4), index=self._sent)
        self._sent += 1
        return frame

    async def close(self) -> None:
        pass


def slow_analysis(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make every frame's analysis take at least ``seconds`` (as on a loaded machine)."""
    measure_frame = features_module.frame_features

    def slow(*args: Any, **kwargs: Any) -> tuple[FrameFeatures, Previous]:
        time.sleep(seconds)
        return measure_frame(*args, **kwargs)

    monkeypatch.setattr(features_module, "frame_features", slow)


async def test_live_run_drops_frames_it_cannot_keep_up_with(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_analysis(monkeypatch, 0.02)
    stage = AnalysisStage(config=CONFIG)
    moods: list[Mood] = []
    source = BurstSource(60, end_delay=0.3)
    analysed = await asyncio.wait_for(stage.run(source, moods.append, lossless=False), 10)
    assert stage.dropped > 0
    assert analysed + stage.dropped == 60
    assert moods[-1].t_end == pytest.approx(2.0)
    for earlier, later in itertools.pairwise(moods):
        assert later.t_start == pytest.approx(earlier.t_end)


async def test_live_run_ends_when_the_source_ends_while_analysis_is_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_analysis(monkeypatch, 0.05)
    stage = AnalysisStage(config=CONFIG)
    moods: list[Mood] = []
    config = SourceConfig(width=WIDTH, height=HEIGHT)
    source = DemoSource(config=config, paced=True, duration=0.5)
    async with source:
        await asyncio.wait_for(stage.run(source, moods.append, lossless=False), 2.5)
    assert moods[-1].t_end == pytest.approx(0.5)


async def test_demo_arousal_is_clearly_higher_in_the_intense_middle_third() -> None:
    config = SourceConfig(demo_cycle_s=30, width=320, height=180)
    source = DemoSource(config=config, paced=False, duration=30)
    moods: list[Mood] = []
    async with source:
        await AnalysisStage(config=CONFIG).run(source, moods.append, lossless=True)

    def mean_arousal(start: float, end: float) -> float:
        return float(np.mean([m.arousal for m in moods if start <= m.t_start and m.t_end <= end]))

    middle = mean_arousal(10.0, 20.0)
    assert middle > mean_arousal(0.0, 6.0) + 0.3
    assert middle > mean_arousal(24.0, 30.0) + 0.3
