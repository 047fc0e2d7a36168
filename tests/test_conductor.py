"""Conductor: mood -> plan mapping, smoothing, hysteresis, bar-by-bar decisions."""

from __future__ import annotations

import math

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
    # After 6 s more it is still on its way down, and the fall was cued once, not per window.
    later = [
        cue
        for k in range(12)
        for cue in conductor.observe(
            Mood(t_start=t + 1.0 + k / 2, t_end=t + 1.5 + k / 2, valence=0.0, arousal=-1.0)
        )
    ]
    assert later == [] and -0.85 < conductor.mood[1] < -0.6
    # The next rise is a new change: cued again.
    t += 7.0
    conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=0.0, arousal=1.0))
    cues = conductor.observe(Mood(t_start=t + 0.5, t_end=t + 1.0, valence=0.0, arousal=1.0))
    assert [c.kind for c in cues] == ["rise"]


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


# -- the mapping at its documented points (README, "From mood to music") ---------------------


def _steady(conductor: Conductor, valence: float, arousal: float, start: float = 0.0) -> float:
    """Feed 10 s of one mood (enough for any smoothing here to settle within 0.01)."""
    return _feed(conductor, valence, arousal, start, 10)


@pytest.mark.parametrize(
    ("arousal", "bpm", "layers"),
    # Arousal -0.8 .. +0.8 spans the default preset's 66-168 bpm and 1-5 layers, clipped beyond.
    [(-1.0, 66, 1), (-0.8, 66, 1), (0.0, 117, 3), (0.8, 168, 5), (1.0, 168, 5)],
)
def test_arousal_spans_the_presets_tempo_and_layers(arousal: float, bpm: int, layers: int) -> None:
    conductor = _conductor(smoothing_s=0.0)
    _steady(conductor, 0.5, arousal)
    plan = conductor.plan_for_bar(0)
    assert (plan.bpm, plan.layers) == (bpm, layers)
    assert plan.beats_per_bar == 4 and plan.scene == "default"


def test_a_layer_is_added_only_past_the_band_widened_by_hysteresis() -> None:
    # Layers 1..5 over arousal -0.8..0.8: 3 layers at 0; the next one once the layer level
    # leaves 3 +- (0.5 + hysteresis 0.08 * 4 / 2) = 3 +- 0.66.
    conductor = _conductor(smoothing_s=0.0)
    _steady(conductor, 0.5, 0.0)
    assert conductor.plan_for_bar(0).layers == 3
    t = _steady(conductor, 0.5, 0.25, 10.0)  # layer level 3.625: inside the band
    assert conductor.plan_for_bar(1).layers == 3
    _steady(conductor, 0.5, 0.3, t)  # layer level 3.75: outside
    assert conductor.plan_for_bar(2).layers == 4


def test_the_mode_follows_valence_past_hysteresis_and_fixed_presets_keep_theirs() -> None:
    neutral, gloomy = _conductor(), _conductor()
    _steady(neutral, 0.0, 0.0)
    _steady(gloomy, -0.05, 0.0)
    assert neutral.plan_for_bar(0).mode == "major"  # a neutral start plays major
    assert gloomy.plan_for_bar(0).mode == "minor"
    conductor = _conductor(smoothing_s=0.0)
    t = _steady(conductor, 0.5, 0.0)
    modes = [conductor.plan_for_bar(0).mode]
    for bar, valence in enumerate((-0.05, -0.5, 0.05, 0.5), start=1):
        t = _steady(conductor, valence, 0.0, t)
        modes.append(conductor.plan_for_bar(bar).mode)
    assert modes == ["major", "major", "minor", "minor", "major"]
    menu = Conductor(config=ConductorConfig(), preset=load_scene("menu"))
    combat = Conductor(config=ConductorConfig(), preset=load_scene("combat"))
    _steady(menu, -0.9, 0.0)
    _steady(combat, 0.9, 0.0)
    assert (menu.plan_for_bar(0).mode, menu.plan_for_bar(0).tonic) == ("major", 9)  # A major
    assert (combat.plan_for_bar(0).mode, combat.plan_for_bar(0).tonic) == ("minor", 4)  # E minor


def test_valence_nudges_the_density_a_little() -> None:
    pleasant, unpleasant = _conductor(), _conductor()
    _steady(pleasant, 0.9, 0.0)
    _steady(unpleasant, -0.9, 0.0)
    lift = pleasant.plan_for_bar(0).density - unpleasant.plan_for_bar(0).density
    assert 0.0 < lift <= 0.3


def test_smoothing_moves_both_valence_and_arousal_by_the_time_constant() -> None:
    conductor = _conductor(smoothing_s=1.0)
    conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=0.0, arousal=0.0))
    conductor.observe(Mood(t_start=0.5, t_end=1.0, valence=1.0, arousal=-0.3))
    # Half a second of a 1 s filter: 1 - e^-0.5 = 39 % of the way. Arousal waits for a second
    # window that agrees (one odd window moves nothing).
    assert conductor.mood == pytest.approx((0.3935, 0.0), abs=0.01)
    conductor.observe(Mood(t_start=1.0, t_end=1.5, valence=1.0, arousal=-0.3))
    # A drift (below cue_threshold) follows smoothing_s: 39 % of -0.3 in the half second.
    assert conductor.mood == pytest.approx((1 - math.exp(-1.0), -0.3 * 0.3935), abs=0.01)
    instant = _conductor(smoothing_s=0.0)
    _feed(instant, 0.0, 0.0, 0.0, 1)
    instant.observe(Mood(t_start=1.0, t_end=1.5, valence=0.6, arousal=-0.2))
    instant.observe(Mood(t_start=1.5, t_end=2.0, valence=0.6, arousal=-0.2))
    assert instant.mood == pytest.approx((0.6, -0.2))
    assert instant.moods_seen == 4


def test_a_scene_must_be_named_without_a_break_for_the_hold_time() -> None:
    conductor = _conductor(scene_hold_s=2.0)

    def named(scene: str | None, start: float, seconds: float) -> float:
        t = start
        while t < start + seconds:
            conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=0, arousal=0, scene=scene))
            t += 0.5
        return t

    t = named("combat", 0.0, 1.5)
    t = named("default", t, 0.5)  # the scene in force, named again: the count starts over
    t = named("combat", t, 1.5)
    assert conductor.preset.name == "default"
    named("combat", t, 1.0)
    assert conductor.preset.name == "combat"


def test_an_unknown_scene_is_ignored_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    conductor = _conductor(scene_hold_s=1.0)
    for k in range(12):
        conductor.observe(
            Mood(t_start=k * 0.5, t_end=k * 0.5 + 0.5, valence=0, arousal=0, scene="disco")
        )
    assert conductor.preset.name == "default"
    warnings = [r for r in caplog.records if "disco" in r.getMessage()]
    assert len(warnings) == 1 and "keeping default" in warnings[0].getMessage()


def test_overrides_start_afresh_in_the_new_range_and_release_to_the_mood_at_once() -> None:
    conductor = _conductor(smoothing_s=0.0)
    t = _steady(conductor, 0.5, 0.0)
    assert conductor.plan_for_bar(0).bpm == 117  # the default preset's middle
    conductor.force_scene(load_scene("combat"))
    assert conductor.plan_for_bar(1).bpm == 148  # combat's middle (120-176), not 117 clamped
    conductor.force_scene(None)
    assert conductor.plan_for_bar(2).bpm == 117
    conductor.fix_tempo(150.0)
    conductor.fix_layers(5)
    t = _steady(conductor, 0.5, 0.05, t)  # within hysteresis of 117 bpm and of 3 layers
    fixed = conductor.plan_for_bar(3)
    assert (fixed.bpm, fixed.layers) == (150.0, 5)
    conductor.fix_tempo(None)
    conductor.fix_layers(None)
    released = conductor.plan_for_bar(4)
    # The mood's own tempo now (66 + 0.53 * 102 = 120), not the one before the override.
    assert (released.bpm, released.layers) == (120, 3)


def test_a_forced_scene_takes_its_own_tempo_even_within_hysteresis_of_the_old_one() -> None:
    # At arousal -1/6 (level 0.396) the default preset plays 106 bpm, exploration (84-132)
    # 103: within exploration's hysteresis of 106, yet a new preset starts afresh.
    conductor = _conductor(smoothing_s=0.0)
    _steady(conductor, 0.5, -1 / 6)
    assert conductor.plan_for_bar(0).bpm == 106
    conductor.force_scene(load_scene("exploration"))
    assert conductor.plan_for_bar(1).bpm == 103


def test_plans_carry_the_configured_metre() -> None:
    conductor = _conductor(beats_per_bar=3)
    _steady(conductor, 0.0, 0.0)
    assert conductor.plan_for_bar(0).beats_per_bar == 3


def test_a_nudge_before_any_window_plans_and_the_first_window_replaces_it() -> None:
    conductor = _conductor(smoothing_s=3.0)
    conductor.nudge_mood(0.5, 0.8)
    assert conductor.plan_for_bar(0).bpm == 168
    conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=-0.4, arousal=-0.8))
    assert conductor.mood == (-0.4, -0.8)
    conductor.nudge_mood(0.2, 0.3)
    assert conductor.mood == (0.2, 0.3)


def test_held_moods_are_clipped_to_the_plane() -> None:
    conductor = _conductor()
    conductor.hold_mood(5.0, -5.0)
    assert conductor.overrides == {"mood": {"valence": 1.0, "arousal": -1.0}}
    plan = conductor.plan_for_bar(0)
    assert (plan.valence, plan.arousal) == (1.0, -1.0)
    conductor.release_mood()
    conductor.nudge_mood(-3.0, 3.0)
    assert conductor.mood == (-1.0, 1.0)
