"""Conductor: mood -> plan mapping, smoothing, hysteresis, bar-by-bar decisions."""

from __future__ import annotations

import pytest

from daemon.conductor import Conductor
from daemon.config import ConductorConfig
from daemon.errors import ConfigError
from daemon.messages import Mood
from daemon.scenes import available_scenes, load_scene


def _conductor(**overrides: float) -> Conductor:
    config = ConductorConfig(**overrides)  # type: ignore[arg-type]
    return Conductor(config=config, preset=load_scene("default"))


def _feed(
    conductor: Conductor, valence: float, arousal: float, start: float, seconds: float
) -> float:
    t = start
    while t < start + seconds:
        conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=valence, arousal=arousal))
        t += 0.5
    return t


def test_calm_gives_slow_sparse_music_and_intense_gives_fast_full_music() -> None:
    calm, intense = _conductor(), _conductor()
    _feed(calm, 0.5, -0.9, 0.0, 20)
    _feed(intense, 0.5, 0.9, 0.0, 20)
    slow, fast = calm.plan_for_bar(0), intense.plan_for_bar(0)
    assert 60 <= slow.bpm < 90 < 150 < fast.bpm <= 180
    assert slow.layers <= 2 and fast.layers == 5
    assert slow.density < fast.density


def test_valence_picks_the_mode_and_the_preset_tonic() -> None:
    happy, sad = _conductor(), _conductor()
    _feed(happy, 0.8, 0.0, 0.0, 20)
    _feed(sad, -0.8, 0.0, 0.0, 20)
    preset = load_scene("default")
    assert happy.plan_for_bar(0).mode == "major"
    assert happy.plan_for_bar(0).tonic == preset.major_tonic
    assert sad.plan_for_bar(0).mode == "minor"
    assert sad.plan_for_bar(0).tonic == preset.minor_tonic


def test_hysteresis_holds_the_plan_when_the_mood_wobbles() -> None:
    conductor = _conductor(smoothing_s=0.0)
    _feed(conductor, 0.02, 0.0, 0.0, 2)
    first = conductor.plan_for_bar(0)
    plans = []
    for bar in range(1, 20):
        wobble = 0.04 if bar % 2 else -0.04
        _feed(conductor, wobble, wobble, bar * 2.0, 2)
        plans.append(conductor.plan_for_bar(bar))
    assert {p.bpm for p in plans} == {first.bpm}
    assert {p.layers for p in plans} == {first.layers}
    assert {p.mode for p in plans} == {first.mode}


def test_a_rise_that_holds_is_followed_at_once_and_a_fall_slowly() -> None:
    conductor = _conductor(attack_s=0.25, release_s=3.0, cue_threshold=0.35)
    t = _feed(conductor, 0.0, -1.0, 0.0, 10)
    # One intense window could be a flash: nothing moves, nothing is cued.
    assert conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=0.0, arousal=1.0)) == []
    assert conductor.mood[1] == -1.0
    # The second one says it holds: the attack (0.25 s) takes most of the way in half a second,
    # and the jump is a cue.
    cues = conductor.observe(Mood(t_start=t + 0.5, t_end=t + 1.0, valence=0.0, arousal=1.0))
    assert [c.kind for c in cues] == ["rise"] and cues[0].time == t + 1.0
    assert 0.6 < conductor.mood[1] < 0.8  # -1 + 2 * (1 - e^-2)
    t = _feed(conductor, 0.0, 1.0, t + 1.0, 5)
    assert conductor.mood[1] > 0.95  # the rest of the way as a drift
    # A fall: the first low window moves nothing, the second starts a slow release (3 s).
    assert conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=0.0, arousal=-1.0)) == []
    cues = conductor.observe(Mood(t_start=t + 0.5, t_end=t + 1.0, valence=0.0, arousal=-1.0))
    assert [c.kind for c in cues] == ["fall"]
    assert 0.6 < conductor.mood[1] < 0.8  # 1 - 2 * (1 - e^(-1/6))
    _feed(conductor, 0.0, -1.0, t + 1.0, 6)
    assert -0.85 < conductor.mood[1] < -0.6  # after 6 s more: still on its way down


def test_a_wobble_is_no_cue() -> None:
    conductor = _conductor(cue_threshold=0.35)
    t = _feed(conductor, 0.0, 0.0, 0.0, 4)
    cues = []
    for i in range(40):
        arousal = 0.2 if i % 2 else -0.2
        cues += conductor.observe(
            Mood(t_start=t + i * 0.5, t_end=t + i * 0.5 + 0.5, valence=0.0, arousal=arousal)
        )
    assert cues == []


def test_low_confidence_windows_barely_move_the_mood() -> None:
    conductor = _conductor(smoothing_s=1.0)
    _feed(conductor, 0.0, 0.0, 0.0, 2)
    conductor.observe(Mood(t_start=2, t_end=2.5, valence=1.0, arousal=1.0, confidence=0.0))
    assert conductor.mood == (0.0, 0.0)


def test_plans_carry_their_bar_and_stay_in_range() -> None:
    conductor = _conductor()
    for bar, arousal in enumerate([-1.0, -0.5, 0.0, 0.5, 1.0] * 3):
        _feed(conductor, arousal, arousal, bar * 2.0, 2)
        plan = conductor.plan_for_bar(bar)
        assert plan.bar == bar
        assert 60 <= plan.bpm <= 180 and 1 <= plan.layers <= 5 and 0 <= plan.density <= 1


def test_scene_presets_load_and_unknown_names_are_clear() -> None:
    assert "default" in available_scenes()
    with pytest.raises(ConfigError, match=r"available: .*default"):
        load_scene("no-such-scene")
