"""The composer: what a listener would notice in the bars it writes."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from daemon.composer import (
    Composer,
    diatonic_triads,
    load_lstm_model,
    load_melody_model,
    parse_structure,
    scale_pitch_classes,
)
from daemon.composer.form import Form, Section
from daemon.composer.harmony import strong_beats
from daemon.config import ComposerConfig
from daemon.errors import ConfigError, ModelError
from daemon.messages import (
    CLOSED_HAT,
    KICK,
    LAYER_ORDER,
    OPEN_HAT,
    SNARE,
    BarScore,
    Layer,
    Plan,
)
from models.melody_net import MelodyLSTM
from models.ngram import NgramMelodyModel

MelodyModel = MelodyLSTM | NgramMelodyModel


@pytest.fixture(scope="module", params=["lstm", "ngram"])
def model(request: pytest.FixtureRequest) -> MelodyModel:
    """Every composer behaviour holds for both melody models."""
    return load_lstm_model() if request.param == "lstm" else load_melody_model()


@pytest.fixture(scope="module")
def lstm() -> MelodyLSTM:
    return load_lstm_model()


def make_plan(bar: int = 0, **changes: object) -> Plan:
    plan = Plan(
        bar=bar,
        bpm=120.0,
        layers=5,
        tonic=2,
        mode="major",
        density=0.5,
        valence=0.3,
        arousal=0.0,
        beats_per_bar=4,
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


def compose(
    model: MelodyModel, bars: int, *, seed: int = 0, temperature: float = 0.9, **changes
) -> tuple[Composer, list[BarScore]]:
    composer = Composer(config=ComposerConfig(seed=seed, temperature=temperature), model=model)
    return composer, [composer.compose_bar(make_plan(b, **changes)) for b in range(bars)]


def melody_of(composer: Composer, plans: list[Plan]) -> list[tuple]:
    """Each bar's lead as (pitch, offset, duration) triples, rests included."""
    bars = []
    for plan in plans:
        composer.compose_bar(plan)
        bars.append(tuple((n.pitch, n.offset, n.duration) for n in composer.last_melody))
    return bars


def lead(score: BarScore) -> list:
    return [n for n in score.notes if n.layer == Layer.LEAD]


def test_notes_stay_inside_their_bar(model):
    for beats in (2, 3, 4, 5, 6, 7):
        _, scores = compose(model, 8, beats_per_bar=beats, density=0.8)
        for score in scores:
            for note in score.notes:
                assert 0 <= note.offset < beats, (beats, note)
                assert note.duration > 0
            for note in lead(score):
                assert note.offset + note.duration <= beats + 1e-9


def test_melody_notes_and_rests_fill_the_bar_without_overlap(model):
    composer = Composer(config=ComposerConfig(seed=4), model=model)
    for bar in range(16):
        beats = 3 if bar >= 8 else 4
        composer.compose_bar(make_plan(bar, beats_per_bar=beats, density=bar / 16))
        melody = composer.last_melody
        assert sum(n.duration for n in melody) == pytest.approx(beats)
        position = 0.0
        for note in melody:
            assert note.offset == pytest.approx(position)
            position += note.duration


def test_same_seed_same_music_and_other_seeds_differ(model):
    plans = [make_plan(b, density=(b % 5) / 4, arousal=0.5, tonic=b // 8) for b in range(16)]
    runs = []
    for seed in (7, 7, 8):
        composer = Composer(config=ComposerConfig(seed=seed), model=model)
        runs.append([composer.compose_bar(p) for p in plans])
    assert runs[0] == runs[1]
    assert [lead(s) for s in runs[0]] != [lead(s) for s in runs[2]]


def test_layers_enter_in_order(model):
    for layers in range(1, 6):
        _, scores = compose(model, 4, layers=layers)
        heard = {n.layer for s in scores for n in s.notes}
        assert heard == set(LAYER_ORDER[:layers])
        assert all(n.layer.order <= layers for s in scores for n in s.notes)


def test_layer_count_does_not_change_the_melody(model):
    _, solo = compose(model, 8, seed=3, layers=1)
    _, full = compose(model, 8, seed=3, layers=5)
    assert [lead(s) for s in solo] == [lead(s) for s in full]
    assert [s.chord for s in solo] == [s.chord for s in full]


def test_bass_plays_the_chord_root_on_beat_one(model):
    for density in (0.1, 0.4, 0.7, 0.95):
        _, scores = compose(model, 8, density=density, layers=2)
        for score in scores:
            bass = [n for n in score.notes if n.layer == Layer.BASS]
            downbeat = [n for n in bass if n.offset == 0]
            assert len(downbeat) == 1
            assert downbeat[0].pitch % 12 == score.chord.root
            assert all(36 <= n.pitch <= 52 for n in bass)


def test_chords_are_diatonic_voiced_mid_register_and_fit_the_melody(model):
    _, scores = compose(model, 32, tonic=9, mode="minor")
    triads = A_MINOR_TRIADS
    fitted = 0
    for score in scores:
        chord = score.chord
        assert (chord.root, chord.quality) in triads
        assert chord.pitches[0] % 12 == chord.root
        assert all(45 <= p <= 64 for p in chord.pitches)
        tones = {p % 12 for p in chord.pitches}
        downbeat = [n for n in lead(score) if n.offset == 0]
        if downbeat and downbeat[0].pitch % 12 in tones:
            fitted += 1
    assert fitted >= 0.7 * len(scores)
    assert strong_beats(4) == (0.0, 2.0)


def test_pad_holds_the_chord_and_arp_sits_above_it(model):
    _, scores = compose(model, 4, density=0.3)
    for score in scores:
        pad = [n for n in score.notes if n.layer == Layer.PAD]
        arp = [n for n in score.notes if n.layer == Layer.ARP]
        assert sorted(n.pitch for n in pad) == sorted(score.chord.pitches)
        assert all(n.offset == 0 and n.duration == 4 for n in pad)
        assert all(n.velocity < 70 for n in pad)
        assert min(n.pitch for n in arp) > max(n.pitch for n in pad)
        assert {n.pitch % 12 for n in arp} <= {p % 12 for p in score.chord.pitches}
    _, dense = compose(model, 1, density=0.9)
    assert len([n for n in dense[0].notes if n.layer == Layer.ARP]) == 16


def test_drums_get_busier_with_arousal(model):
    counts = {}
    for arousal in (-0.9, 0.0, 0.9):
        _, scores = compose(model, 4, arousal=arousal, density=0.5, layers=3)
        drums = [n for s in scores for n in s.notes if n.layer == Layer.DRUMS]
        assert {n.pitch for n in drums} <= {KICK, SNARE, CLOSED_HAT, OPEN_HAT}
        counts[arousal] = len(drums)
        downbeat_kicks = [n for s in scores for n in s.notes if n.pitch == KICK and n.offset == 0]
        assert len(downbeat_kicks) == 4
    assert counts[-0.9] < counts[0.0] < counts[0.9]


def test_density_shapes_the_lead_rhythm(model):
    _, sparse = compose(model, 16, density=0.1)
    _, busy = compose(model, 16, density=0.9)
    n_sparse = sum(len(lead(s)) for s in sparse)
    n_busy = sum(len(lead(s)) for s in busy)
    assert n_busy > 2 * n_sparse


# Written out from music theory, not from the composer's tables. Minor keys allow the natural
# minor scale and the raised 7th of harmonic minor (the leading note of minor cadences).
C, CS, D, DS, E, F, FS, G, GS, A, AS, B = range(12)
SCALES = {
    (2, "major"): {D, E, FS, G, A, B, CS},  # D major
    (11, "minor"): {B, CS, D, E, FS, G, A, AS},  # B minor (+ A#)
    (5, "minor"): {F, G, GS, AS, C, CS, DS, E},  # F minor (+ E)
    (10, "major"): {AS, C, D, DS, F, G, A},  # Bb major
    (7, "minor"): {G, A, AS, C, D, DS, F, FS},  # G minor (+ F#)
}
# A minor's diatonic triads: i, ii°, III, iv, V (harmonic minor), VI, VII.
A_MINOR_TRIADS = {
    (A, "min"), (B, "dim"), (C, "maj"), (D, "min"), (E, "maj"), (F, "maj"), (G, "maj"),
}  # fmt: skip


def test_the_scale_tables_are_the_keys_scales():
    for (tonic, mode), pitch_classes in SCALES.items():
        assert scale_pitch_classes(tonic, mode) == pitch_classes  # type: ignore[arg-type]
    assert {(c.root, c.quality) for c in diatonic_triads(A, "minor")} == A_MINOR_TRIADS


def test_lead_is_in_scale_in_register_and_singable(model):
    for tonic, mode in ((2, "major"), (11, "minor"), (5, "minor"), (10, "major")):
        _, scores = compose(model, 24, tonic=tonic, mode=mode, temperature=1.5, density=0.8)
        scale = SCALES[(tonic, mode)]
        pitches = [n.pitch for s in scores for n in lead(s)]
        assert all(p % 12 in scale for p in pitches)
        assert all(60 <= p <= 84 for p in pitches)
        assert all(abs(a - b) <= 12 for a, b in itertools.pairwise(pitches))


@pytest.mark.parametrize(("tonic", "mode", "key_name"), [(2, "major", "D"), (11, "minor", "b")])
def test_music21_hears_the_planned_key(model, tonic, mode, key_name):
    from music21 import note, stream

    composer = Composer(config=ComposerConfig(seed=0), model=model)
    melody: stream.Stream = stream.Stream()
    for bar in range(16):
        composer.compose_bar(make_plan(bar, tonic=tonic, mode=mode))
        for n in composer.last_melody:
            melody.append(
                note.Rest(quarterLength=n.duration)
                if n.pitch is None
                else note.Note(n.pitch, quarterLength=n.duration)
            )
    key = melody.analyze("key")
    assert key.tonicPitchNameWithCase == key_name


def test_key_change_carries_the_melody_into_the_new_key(model):
    composer = Composer(config=ComposerConfig(seed=2), model=model)
    pitches = []
    for bar in range(12):
        tonic, mode = (2, "major") if bar < 6 else (7, "minor")
        score = composer.compose_bar(make_plan(bar, tonic=tonic, mode=mode))
        bar_pitches = [n.pitch for n in lead(score)]
        if bar >= 6:
            assert all(p % 12 in SCALES[(7, "minor")] for p in bar_pitches)
        pitches.extend(bar_pitches)
    assert all(abs(a - b) <= 12 for a, b in itertools.pairwise(pitches))


def test_missing_weights_say_how_to_build_them(tmp_path):
    with pytest.raises(ModelError, match=r"tools/train_ngram\.py"):
        load_melody_model(tmp_path / "missing.json.gz")
    with pytest.raises(ModelError, match="train-melody"):
        load_lstm_model(tmp_path / "missing.pt")
    missing = ComposerConfig(melody_model="lstm", melody_weights=str(tmp_path / "gone.pt"))
    with pytest.raises(ModelError, match="melody_weights"):
        Composer(config=missing)
    # The config refuses an unknown model by name before a Composer could see it.
    with pytest.raises(ConfigError, match=r"composer\.melody_model.*not one of lstm, ngram"):
        ComposerConfig().with_(melody_model="markov")


def test_default_config_composes_with_the_shipped_lstm():
    composer = Composer(config=ComposerConfig())
    assert isinstance(composer.model, MelodyLSTM)
    assert lead(composer.compose_bar(make_plan(0)))


# -- form and repetition (the LSTM writer) -------------------------------------------------


def test_structure_strings_parse_and_mistakes_are_config_errors(lstm):
    assert parse_structure("A B A' C A''") == (
        Section("A", 0),
        Section("B", 0),
        Section("A", 1),
        Section("C", 0),
        Section("A", 2),
    )
    assert parse_structure("aaba") == parse_structure("A A B A")
    assert parse_structure("") == ()
    form = Form(sections=parse_structure("AABA"), section_bars=2)
    role = form.role(11)  # second pass (bars 8-15), second A (10-11), its second bar
    assert role is not None and role.source_bar == 9 and role.bar_in_form == 3
    assert role.bar_in_section == 1 and role.section == Section("A", 0)
    opening = form.role(8)
    assert opening is not None and opening.source_bar is None  # a new pass writes new material
    assert Form(sections=(), section_bars=4).role(5) is None
    for bad in ("A1B", "'A", "A-B"):
        with pytest.raises(ConfigError, match=r"composer\.structure"):
            Composer(config=ComposerConfig(structure=bad), model=lstm)
    with pytest.raises(ConfigError, match="octave"):
        Composer(config=ComposerConfig(register=(70, 75)), model=lstm)


def test_aaba_repeats_a_exactly_and_b_is_new(lstm):
    config = ComposerConfig(seed=5, structure="AABA", section_bars=4)
    bars = melody_of(Composer(config=config, model=lstm), [make_plan(b) for b in range(32)])
    for start in (0, 16):  # two passes through the form
        a1, a2, b, a3 = (bars[start + 4 * i : start + 4 * i + 4] for i in range(4))
        assert a1 == a2 == a3
        assert b != a1
    assert bars[0:4] != bars[16:20]  # each pass writes new material


def test_primed_sections_vary_their_source(lstm):
    config = ComposerConfig(seed=6, structure="A B A' C A''", section_bars=4)
    bars = melody_of(Composer(config=config, model=lstm), [make_plan(b) for b in range(20)])
    a, a1, a2 = bars[0:4], bars[8:12], bars[16:20]

    def rhythm(bar: tuple) -> list:
        return [(offset, duration) for _, offset, duration in bar]

    # A': the first half as it was, the second half on A's rhythm with new pitches.
    assert a1[:2] == a[:2]
    assert [rhythm(x) for x in a1[2:]] == [rhythm(x) for x in a[2:]]
    assert a1[2:] != a[2:]
    # A'': the opening bar as it was, then A's rhythm, and a free last bar.
    assert a2[0] == a[0]
    assert rhythm(a2[1]) == rhythm(a[1]) and a2[1:] != a[1:]


def test_a_greedy_stream_never_plays_a_four_bar_window_three_times(lstm):
    """At temperature 0.05 the model alone falls into loops; the writer breaks them."""
    config = ComposerConfig(seed=1, temperature=0.05, top_p=0.5)
    bars = melody_of(Composer(config=config, model=lstm), [make_plan(b) for b in range(96)])
    windows = [tuple(bars[i : i + 4]) for i in range(len(bars) - 3)]
    repeats = [i for i in range(len(windows) - 8) if windows[i] == windows[i + 4] == windows[i + 8]]
    assert repeats == []


def test_register_and_scale_settings_reach_the_lead(model):
    config = ComposerConfig(seed=2, register=(48, 67))
    composer = Composer(config=config, model=model)
    pitches = [n.pitch for b in range(16) for n in lead(composer.compose_bar(make_plan(b)))]
    assert all(48 <= p <= 67 for p in pitches)
    assert sum(p < 60 for p in pitches) > 0.2 * len(pitches)  # it uses the low register


def test_without_the_scale_constraint_the_lstm_still_keeps_the_key(lstm):
    config = ComposerConfig(seed=3, scale_constraint=False)
    composer = Composer(config=config, model=lstm)
    pitches = [
        n.pitch
        for b in range(32)
        for n in lead(composer.compose_bar(make_plan(b, tonic=7, mode="minor")))
    ]
    scale = SCALES[(7, "minor")]
    assert sum(p % 12 in scale for p in pitches) >= 0.9 * len(pitches)
