"""Scene presets: the shipped ones, a user's own, mistakes, and what a scene change sounds like."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest

from daemon.composer.accompaniment import drum_notes
from daemon.conductor import Conductor
from daemon.config import SCENES_DIR, ConductorConfig, EngineConfig
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.errors import ConfigError
from daemon.messages import KICK, STINGER_KINDS, BarScore, Chord, Layer, Mood, NoteEvent, Plan
from daemon.scenes import (
    ARP_SOUNDS,
    BASS_SOUNDS,
    DRUM_STYLES,
    LEAD_SOUNDS,
    PAD_SOUNDS,
    ScenePreset,
    available_scenes,
    get_scene,
    load_scene,
)

SR = 48000
SHIPPED = ("calm", "combat", "default", "dialogue", "exploration", "menu")


def test_the_shipped_presets_load_and_differ() -> None:
    assert set(SHIPPED) <= set(available_scenes())
    presets = [load_scene(name) for name in SHIPPED]
    for preset in presets:
        assert preset.description
        assert preset.lead in LEAD_SOUNDS and preset.bass in BASS_SOUNDS
        assert preset.pad in PAD_SOUNDS and preset.arp in ARP_SOUNDS
        assert preset.drums in DRUM_STYLES
    by_name = {p.name: p for p in presets}
    assert by_name["calm"].bpm_max < by_name["combat"].bpm_min
    assert by_name["combat"].mode == "minor" and by_name["menu"].mode == "major"
    assert by_name["dialogue"].drums == "none"
    # Together they use every sound and every drum style but "march".
    assert {p.lead for p in presets} == set(LEAD_SOUNDS)
    assert {p.drums for p in presets} >= set(DRUM_STYLES) - {"march"}


def test_default_toml_documents_every_key() -> None:
    text = (SCENES_DIR / "default.toml").read_text()
    for field in dataclasses.fields(ScenePreset):
        if field.name == "transitions":
            assert "\n[transitions]\n" in text
        elif field.name != "name":
            assert f"\n{field.name} = " in text, field.name
    choices = (*LEAD_SOUNDS, *BASS_SOUNDS, *PAD_SOUNDS, *ARP_SOUNDS, *DRUM_STYLES, *STINGER_KINDS)
    for choice in (*choices, "immediate", "beat", "bar", "bars:N"):
        assert f'"{choice}"' in text, choice


def test_a_user_adds_a_file_to_add_a_preset(tmp_path: Path) -> None:
    (tmp_path / "heist.toml").write_text(
        'description = "sneaking"\nbpm_min = 90\nbpm_max = 110\nlead = "flute"\n'
        'drums = "march"\nminor_tonic = "C#"\nmode = "minor"\n'
    )
    assert available_scenes(tmp_path) == ["heist"]
    preset = load_scene("heist", tmp_path)
    assert (preset.bpm_min, preset.lead, preset.drums, preset.minor_tonic) == (
        90.0,
        "flute",
        "march",
        1,
    )
    assert preset.bass == "saw"  # a key left out takes the default


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('lead = "kazoo"', "lead = 'kazoo' is not one of saw, square, flute, bell"),
        ('drums = "polka"', "drums = 'polka' is not one of none, brushes"),
        ("bmp_min = 80", "unknown key(s) bmp_min; valid: arp, bass, bpm_max"),
        ("bpm_min = 200", "need 60 <= bpm_min <= bpm_max <= 180"),
        ('bpm_min = "slow"', "bpm_min must be a number"),
        ('major_tonic = "H"', "'H' is not a note name"),
        ("layers_max = 9", "need 1 <= layers_min <= layers_max <= 5"),
        ('mode = "lydian"', "mode = 'lydian' is not one of valence, major, minor"),
    ],
)
def test_bad_keys_and_values_are_clear(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "bad.toml").write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_scene("bad", tmp_path)
    assert words in str(caught.value)
    assert "bad.toml" in str(caught.value)


def test_cached_presets_follow_an_edited_file(tmp_path: Path) -> None:
    path = tmp_path / "live.toml"
    path.write_text("bpm_min = 70\n")
    first = get_scene("live", tmp_path)
    assert get_scene("live", tmp_path) is first
    path.write_text("bpm_min = 80\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    assert get_scene("live", tmp_path).bpm_min == 80.0


# --------------------------------------------------------------------------- the conductor


def feed(conductor: Conductor, scene: str | None, start: float, seconds: float) -> float:
    t = start
    while t < start + seconds - 1e-9:
        conductor.observe(Mood(t_start=t, t_end=t + 0.5, valence=0.3, arousal=0.0, scene=scene))
        t += 0.5
    return t


def test_conductor_switches_to_a_named_scene_after_it_holds() -> None:
    conductor = Conductor(config=ConductorConfig(scene_hold_s=2.0), preset=load_scene("default"))
    t = feed(conductor, None, 0.0, 4.0)
    assert conductor.plan_for_bar(0).scene == "default"
    t = feed(conductor, "combat", t, 1.0)  # a blip is not a scene change
    t = feed(conductor, "default", t, 0.5)
    assert conductor.plan_for_bar(1).scene == "default"
    t = feed(conductor, "combat", t, 2.5)
    plan = conductor.plan_for_bar(2)
    combat = load_scene("combat")
    assert plan.scene == "combat" and plan.mode == "minor"
    assert combat.bpm_min <= plan.bpm <= combat.bpm_max and plan.layers >= combat.layers_min
    feed(conductor, "no-such-scene", t, 5.0)  # unknown names are ignored
    assert conductor.plan_for_bar(3).scene == "combat"


# --------------------------------------------------------------------------- the music


def plan(scene: str, *, bar: int = 0, arousal: float = 0.9, layers: int = 5) -> Plan:
    return Plan(
        bar=bar,
        bpm=120.0,
        layers=layers,
        tonic=2,
        mode="major",
        density=0.9,
        preset=load_scene(scene),
        valence=0.3,
        arousal=arousal,
    )


def test_drum_styles_play_their_own_patterns() -> None:
    rng = np.random.default_rng(440)
    styles = {}
    for scene in ("calm", "combat", "exploration", "default", "dialogue"):
        notes = drum_notes(plan(scene, bar=1), rng)
        styles[scene] = {(n.pitch, n.offset) for n in notes}
    assert styles["dialogue"] == set()  # drums = "none"
    kicks = {scene: sorted(o for p, o in hits if p == KICK) for scene, hits in styles.items()}
    assert kicks["combat"] == [0.0, 1.0, 2.0, 3.0]  # four on the floor
    assert 0.5 in kicks["exploration"] or 1.5 in kicks["exploration"]  # syncopated
    assert len({frozenset(h) for h in styles.values()}) == len(styles)


def render(scene: str, notes: tuple[NoteEvent, ...]) -> np.ndarray:
    queue = ScoreQueue()
    chord = Chord(root=2, quality="maj", pitches=(50, 54, 57))
    for bar in range(2):
        queue.put(BarScore(bar, plan(scene, bar=bar, arousal=0.0), chord, notes))
    queue.close()
    engine = Engine(
        config=EngineConfig(),
        backend=BackendChoice("offline", "test"),
        scores=queue,
        realtime=False,
    )
    blocks: list[np.ndarray] = []
    engine.add_audio_listener(lambda block, t: blocks.append(block))
    engine.set_end_time(4.0)
    engine.start()
    assert engine.wait(30)
    engine.stop()
    return np.concatenate(blocks).mean(axis=1)


def centroid(x: np.ndarray) -> float:
    mags = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float((mags * freqs).sum() / mags.sum())


def test_a_scene_picks_the_sound_of_each_layer() -> None:
    lead = tuple(NoteEvent(Layer.LEAD, 69 + 2 * (i % 3), 100, i * 1.0, 0.9) for i in range(4))
    saw = render("default", lead)  # saw lead
    flute = render("calm", lead)  # flute lead
    bell = render("menu", lead)  # FM electric piano
    assert centroid(flute) < 0.7 * centroid(saw)
    # The flute swells in; the electric piano strikes and decays.
    onset = slice(int(0.002 * SR), int(0.02 * SR))
    body = slice(int(0.3 * SR), int(0.45 * SR))
    attack_vs_body = [
        np.sqrt(np.mean(x[onset] ** 2)) / np.sqrt(np.mean(x[body] ** 2)) for x in (flute, bell)
    ]
    assert attack_vs_body[1] > 2 * attack_vs_body[0]
