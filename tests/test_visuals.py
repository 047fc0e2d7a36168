"""The beat-synced renderer, drawn from bars the real pyo engine played: a pulse a viewer sees on
every beat, colours that follow the mood, notes as shapes, transparency for overlays."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.composer import Composer
from daemon.config import load_config
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.messages import LAYER_ORDER, Layer, Plan
from daemon.visuals import (
    EMPTY_STATE,
    BeatMark,
    NoteMark,
    VisualState,
    VisualTimeline,
    composite,
    pack_alpha,
    render_frame,
)

BPM = 120.0
SECONDS = 8.0
W, H = 320, 180


@pytest.fixture(scope="module")
def timeline() -> VisualTimeline:
    """Four bars at 120 bpm with all five layers, pleasant then unpleasant, played offline."""
    config = load_config(use_user_file=False)
    composer = Composer(config=config.composer)
    scores = ScoreQueue()
    for bar in range(6):
        plan = Plan(
            bar=bar, bpm=BPM, layers=5, tonic=2, mode="major", density=0.7,
            valence=0.8 if bar < 2 else -0.8, arousal=0.5,
        )  # fmt: skip
        scores.put(composer.compose_bar(plan))
    engine = Engine(
        config=config.engine, backend=BackendChoice("offline", "test"), scores=scores,
        realtime=False,
    )  # fmt: skip
    timeline = VisualTimeline(keep_s=None)
    timeline.attach(engine)
    engine.set_end_time(SECONDS)
    engine.start()
    engine.wait()
    engine.stop()
    return timeline


def _brightness(t: float, timeline: VisualTimeline) -> float:
    return float(render_frame(t, timeline.state_at(t), width=W, height=H)[:, :, :3].mean())


def test_frames_are_a_pure_function_of_time_and_state(timeline: VisualTimeline) -> None:
    first = render_frame(2.5, timeline.state_at(2.5), width=W, height=H)
    again = render_frame(2.5, timeline.state_at(2.5), width=W, height=H)
    later = render_frame(2.6, timeline.state_at(2.6), width=W, height=H)
    assert first.shape == (H, W, 4) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, later)


def test_brightness_peaks_on_every_beat_and_most_on_the_bar(timeline: VisualTimeline) -> None:
    fps = 60
    times = np.arange(0, SECONDS, 1 / fps)
    curve = np.array([_brightness(t, timeline) for t in times])
    beat = 60.0 / BPM
    padded = np.concatenate([[-np.inf], curve, [-np.inf]])
    peaks = [k for k in range(len(curve)) if padded[k] < curve[k] >= padded[k + 2]]
    big = [times[k] for k in peaks if curve[k] > np.median(curve) + 10]
    # One pulse per beat, on the frame of the beat itself.
    assert len(big) == round(SECONDS / beat)
    assert np.allclose(big, np.arange(len(big)) * beat, atol=1 / fps)
    on_bar = [curve[round(b * fps)] for b in np.arange(0, SECONDS, 4 * beat)]
    off_bar = [curve[round(b * fps)] for b in np.arange(beat, SECONDS, 4 * beat)]
    assert min(on_bar) > max(off_bar) + 5


def test_colour_is_warm_when_pleasant_and_cool_when_not(timeline: VisualTimeline) -> None:
    # Between beats, at the end of bar 1 (valence +0.8) and of bar 3 (-0.8).
    warm = render_frame(3.9, timeline.state_at(3.9), width=W, height=H)[:, :, :3].mean((0, 1))
    cool = render_frame(7.9, timeline.state_at(7.9), width=W, height=H)[:, :, :3].mean((0, 1))
    assert warm[0] > warm[2]  # red over blue
    assert cool[2] > cool[0]


def test_each_layer_draws_its_notes_where_they_sound(timeline: VisualTimeline) -> None:
    t = 2.25
    state = timeline.state_at(t)
    assert {n.layer for n in state.notes} == set(LAYER_ORDER)
    base = render_frame(t, VisualState(beats=state.beats, valence=state.valence), width=W, height=H)
    for layer in LAYER_ORDER:
        only = VisualState(
            beats=state.beats,
            notes=tuple(n for n in state.notes if n.layer is layer),
            valence=state.valence,
        )
        drawn = render_frame(t, only, width=W, height=H)
        changed = np.any(drawn[:, :, :3] != base[:, :, :3], axis=2)
        assert changed.sum() > 50, layer


def test_bars_that_have_not_started_are_not_shown(timeline: VisualTimeline) -> None:
    state = timeline.state_at(1.9)  # bar 0; bar 1 starts at 2.0
    assert state.bar == 0
    assert all(n.time < 2.0 for n in state.notes)
    assert all(b.time <= 1.9 for b in state.beats)
    assert timeline.state_at(-0.1) is EMPTY_STATE


def test_a_live_timeline_forgets_old_bars() -> None:
    live = VisualTimeline(keep_s=4.0)
    from daemon.clock import BarGrid

    for bar in range(40):
        plan = Plan(bar=bar, bpm=120.0, layers=1, tonic=0, mode="major", density=0.5,
                    valence=0.0, arousal=0.0)  # fmt: skip
        live.on_grid(BarGrid.build(bar=bar, start=bar * 96000, sample_rate=48000, plan=plan,
                                   first_beat=bar * 4, bpm_from=120.0, ramp=0.0))  # fmt: skip
    assert live.bars <= 4
    assert live.state_at(79.0).bar == 39


def test_transparent_frames_show_only_the_flash_and_the_shapes() -> None:
    note = NoteMark(layer=Layer.LEAD, pitch=72, velocity=100, time=0.9, end_time=1.6)
    beat = BeatMark(time=1.0, downbeat=True, period=0.5)
    on_beat = render_frame(1.0, VisualState(beats=(beat,), notes=(note,)), width=W, height=H,
                           transparent=True)  # fmt: skip
    between = render_frame(1.45, VisualState(beats=(beat,), notes=(note,)), width=W, height=H,
                           transparent=True)  # fmt: skip
    alpha = between[:, :, 3]
    assert np.median(alpha) == 0  # the background is see-through between beats
    assert alpha.max() > 200  # the note is there
    assert np.median(on_beat[:, :, 3]) > 40  # the flash on the beat

    picture = np.full((H, W, 3), 77, dtype=np.uint8)
    mixed = composite(between, picture)
    clear = alpha == 0
    assert np.array_equal(mixed[clear], picture[clear])
    assert not np.array_equal(mixed[~clear], picture[~clear])
    packed = pack_alpha(between)
    assert packed.shape == (H, 2 * W, 3)
    assert np.array_equal(packed[:, W:, 0], alpha)
