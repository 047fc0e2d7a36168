"""The n-gram melody model, its token codec, the dataset helpers and the training tools."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from models.melody_data import (
    Dataset,
    MelodyNote,
    TuneRecord,
    augment_transpositions,
    load_dataset,
    save_dataset,
    split_by_tune,
    transpose,
)
from models.ngram import (
    DEFAULT_WEIGHTS,
    DURATIONS,
    NgramMelodyModel,
    TokenCodec,
    UnigramMelodyModel,
    accent,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
METRICS = DEFAULT_WEIGHTS.with_name("ngram_melody.metrics.json")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


def _tune(
    tune_id: str,
    pitches: Sequence[int | None],
    *,
    tonic: int = 2,
    mode: str = "major",
    meter: str = "4/4",
    duration: float = 0.5,
) -> TuneRecord:
    bar = {"4/4": 4.0, "2/4": 2.0, "3/4": 3.0, "6/8": 3.0}[meter]
    notes = []
    offset = 0.0
    for pitch in pitches:
        notes.append(MelodyNote(pitch, duration, offset % bar))
        offset += duration
    return TuneRecord(
        id=tune_id,
        collection="test",
        tonic=tonic,
        mode=mode,  # type: ignore[arg-type]
        beats_per_bar=bar,
        meter=meter,
        notes=tuple(notes),
    )


def _scale_tunes(n: int) -> list[TuneRecord]:
    """Tunes that run up and down the D major scale: a pattern an n-gram learns at once."""
    up = [62, 64, 66, 67, 69, 71, 73, 74]
    line = (up + up[::-1]) * 4
    return [_tune(f"scale/{i}", line) for i in range(n)]


def _load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- codec ---------------------------------------------------------------------------------


def test_codec_pitches_are_tonic_relative_and_fold_into_range():
    codec = TokenCodec()
    assert codec.relative_pitch(codec.pitch_id(7)) == 7
    assert codec.relative_pitch(codec.pitch_id(None)) is None
    assert codec.relative_pitch(codec.pitch_id(31)) == 19  # an octave folded down
    assert codec.relative_pitch(codec.pitch_id(-15)) == -3
    assert codec.n_pitches == codec.rest_id + 1


def test_codec_snaps_durations_to_the_grid():
    codec = TokenCodec()
    assert codec.duration(codec.duration_id(0.5)) == 0.5
    assert codec.duration(codec.duration_id(1 / 3)) == 0.25
    assert codec.duration(codec.duration_id(8.0)) == 4.0
    assert all(d * 4 == int(d * 4) for d in DURATIONS)


def test_tonic_reference_sits_below_the_tune_median():
    tune = _tune("t", [74, 76, 78, 79, 81, 83], tonic=2)
    reference = TokenCodec.tonic_reference(tune)
    assert reference % 12 == 2
    assert 0 <= 79 - reference <= 12


def test_encoded_positions_follow_the_bar():
    tune = _tune("t", [62, 64, 66, 67, 69], meter="3/4", duration=1.0)
    positions = [t.position for t in TokenCodec().encode(tune)]
    assert positions == [0, 4, 8, 0, 4]
    assert accent("6/8", 6) == 1 and accent("4/4", 2) == 2 and accent("4/4", 1) == 3


# -- model ---------------------------------------------------------------------------------


def test_distributions_are_normalised():
    model = NgramMelodyModel(order=3).fit(_scale_tunes(3))
    context = model.start(mode="minor", metre="6/8")  # unseen mode and metre: backs off
    for probs in (model.pitch_distribution(context), model.duration_distribution(context)):
        assert probs.sum() == pytest.approx(1.0)
        assert (probs > 0).all()


def _scale_walk(seed: int, notes: int = 64) -> TuneRecord:
    """8ths stepping up or down the D major scale at random: one pattern, a new tune per seed."""
    scale = [62, 64, 66, 67, 69, 71, 73, 74, 76, 78, 79, 81]
    rng = np.random.default_rng(seed)
    degree, pitches = 4, []
    for _ in range(notes):
        pitches.append(scale[degree])
        degree = min(len(scale) - 1, max(0, degree + (1 if rng.random() < 0.5 else -1)))
    return _tune(f"walk/{seed}", pitches)


def test_model_learns_the_pattern_better_than_a_unigram():
    train = [_scale_walk(seed) for seed in range(20)]
    # A tune that is none of the training tunes (an n-gram scores a copy of one perfectly).
    held_out = [_scale_walk(99)]
    assert all(held_out[0].notes != t.notes for t in train)
    model = NgramMelodyModel(order=4).fit(train)
    unigram = UnigramMelodyModel().fit(train)
    assert model.nll_per_note(held_out) < 0.5 * unigram.nll_per_note(held_out)
    assert model.baseline.nll_per_note(held_out) == pytest.approx(unigram.nll_per_note(held_out))


def test_sampling_is_seeded_and_obeys_the_weights(rng):
    model = NgramMelodyModel(order=3).fit(_scale_tunes(3))
    context = model.start(mode="major", metre="4/4")
    first = [model.sample_next(context, np.random.default_rng(1)) for _ in range(3)]
    assert first[0] == first[1] == first[2]

    only_rest = np.zeros(model.codec.n_pitches)
    only_rest[model.codec.rest_id] = 1.0
    whole = np.zeros(model.codec.n_durations)
    whole[DURATIONS.index(4.0)] = 1.0
    for _ in range(20):
        token = model.sample_next(
            context, rng, 1.3, duration_weights=whole, pitch_weights=only_rest
        )
        assert token.pitch == model.codec.rest_id
        assert DURATIONS[token.duration] == 4.0
    with pytest.raises(ValueError):
        model.sample_next(context, rng, 0.0)


def test_sampling_with_all_weights_zero_falls_back_to_the_model(rng):
    model = NgramMelodyModel(order=3).fit(_scale_tunes(3))
    context = model.start(mode="major", metre="4/4")
    token = model.sample_next(context, rng, pitch_weights=lambda _: np.zeros(38))
    assert 0 <= token.pitch < model.codec.n_pitches


def test_save_and_load_round_trip(tmp_path):
    model = NgramMelodyModel(order=3).fit(_scale_tunes(3))
    path = tmp_path / "m.json.gz"
    model.save(path)
    with gzip.open(path, "rt") as handle:
        assert json.load(handle)["format"] == "moodscore-ngram-melody"
    loaded = NgramMelodyModel.load(path)
    context = loaded.start(mode="major", metre="4/4")
    np.testing.assert_allclose(
        loaded.pitch_distribution(context), model.pitch_distribution(context)
    )
    assert loaded.nll_per_note(_scale_tunes(1)) == pytest.approx(
        model.nll_per_note(_scale_tunes(1))
    )
    (tmp_path / "bad.json.gz").write_bytes(gzip.compress(b'{"format": "other"}'))
    with pytest.raises(ValueError):
        NgramMelodyModel.load(tmp_path / "bad.json.gz")


# -- dataset helpers -----------------------------------------------------------------------


def test_dataset_round_trip_and_split(tmp_path):
    tunes = [_tune(f"t/{i}", [62, None, 66, 69]) for i in range(30)]
    path = tmp_path / "d.json.gz"
    save_dataset(Dataset(tunes=tuple(tunes), meta={"tunes": 30}), path)
    loaded = load_dataset(path)
    assert loaded.tunes == tuple(tunes)
    assert loaded.meta == {"tunes": 30}

    train, test = split_by_tune(tunes, seed=3)
    _, again_test = split_by_tune(list(reversed(tunes)), seed=3)
    assert [t.id for t in test] == [t.id for t in again_test]
    assert len(test) == 3 and len(train) == 27
    assert not {t.id for t in train} & {t.id for t in test}
    assert split_by_tune(tunes[:2])[1]  # a tiny run still has a test tune
    with pytest.raises(FileNotFoundError, match="prepare_melodies"):
        load_dataset(tmp_path / "missing.json.gz")


def test_transposition_moves_pitches_and_tonic_only():
    tune = _tune("t", [62, None, 66], tonic=2)
    up = transpose(tune, 3)
    assert [n.pitch for n in up.notes] == [65, None, 69]
    assert up.tonic == 5 and [n.duration for n in up.notes] == [n.duration for n in tune.notes]
    augmented = augment_transpositions([tune], shifts=range(-2, 3), low=61, high=70)
    assert {t.tonic for t in augmented} == {1, 2, 3, 4}  # +3 would pass the ceiling


# -- the corpus parser ---------------------------------------------------------------------


ABC_TUNE = """X:1
T:Test Jig
M:6/8
L:1/8
K:G
D|GAB c2d|(3efg e d2B|G3- G2:|
"""


def test_parser_places_pickups_ties_and_triplets_on_the_grid():
    from music21 import converter

    prepare = _load_tool("prepare_melodies")
    score = converter.parse(ABC_TUNE, format="abc")
    tune = prepare.tune_from_score(score, tune_id="x/1", collection="x")
    assert isinstance(tune, TuneRecord), tune
    assert tune.meter == "6/8" and tune.beats_per_bar == 3.0
    assert (tune.tonic, tune.mode) == (7, "major")
    first = tune.notes[0]
    assert (first.pitch, first.offset, first.duration) == (62, 2.5, 0.5)  # the pickup D
    # "G3- G2" is one tied note; the closing bar is short by the pickup's length.
    assert (tune.notes[-1].pitch, tune.notes[-1].duration) == (67, 2.5)
    onsets = [n.offset for n in tune.notes]
    assert all(o * 4 == int(o * 4) for o in onsets)  # the triplet landed on 16ths
    total = sum(n.duration for n in tune.notes)
    assert total == pytest.approx(0.5 + 3.0 + 3.0 + 2.5)


# -- the shipped model ---------------------------------------------------------------------


def test_shipped_weights_are_small_and_load():
    assert DEFAULT_WEIGHTS.is_file(), "run tools/train_ngram.py"
    assert DEFAULT_WEIGHTS.stat().st_size <= 5 * 1024 * 1024
    model = NgramMelodyModel.load()
    assert model.order == 4
    assert model.info["tunes"] > 3000


def test_shipped_model_beats_unigram_on_held_out_tunes():
    """Held-out tunes (from the training split's own record) parsed afresh from the corpus."""
    from music21 import corpus

    prepare = _load_tool("prepare_melodies")
    held_out = json.loads(METRICS.read_text())["test_ids"]
    # Ryan's Mammoth keeps one tune per file, so a few held-out tunes parse in a second.
    ids = [i for i in held_out if i.startswith("ryansMammoth/")][:4]
    folder = Path(corpus.getComposer("ryansMammoth")[0]).parent
    tunes: list[TuneRecord] = []
    for tune_id in ids:
        stem = tune_id.split("/")[1]
        file_tunes, _ = prepare.parse_file(("ryansMammoth", str(folder / f"{stem}.abc")))
        tunes.extend(t for t in file_tunes if t.id == tune_id)
    assert len(tunes) >= 3
    model = NgramMelodyModel.load()
    assert model.nll_per_note(tunes) < model.baseline.nll_per_note(tunes) - 0.5


@pytest.mark.slow
def test_prepare_and_train_run_end_to_end(tmp_path):
    env = {**os.environ, "PYO_GUI_WX": "0"}
    data = tmp_path / "melodies.json.gz"
    weights = tmp_path / "ngram.json.gz"
    subprocess.run(
        [sys.executable, "tools/prepare_melodies.py", "--limit", "2", "--workers", "1",
         "-o", str(data)],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    dataset = load_dataset(data)
    assert len(dataset.tunes) > 50  # two O'Neill's files of 50 tunes each
    assert dataset.meta["files"] == 2
    result = subprocess.run(
        [sys.executable, "tools/train_ngram.py", "--data", str(data), "--order", "3",
         "--seed", "1", "-o", str(weights)],
        cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "held-out NLL" in result.stdout
    model = NgramMelodyModel.load(weights)
    assert model.order == 3
    # Scored here on tunes from another collection than the two files it was trained on.
    from music21 import corpus

    prepare = _load_tool("prepare_melodies")
    folder = Path(corpus.getComposer("ryansMammoth")[0]).parent
    others: list[TuneRecord] = []
    for path in sorted(folder.glob("*.abc"))[:6]:
        others.extend(prepare.parse_file(("ryansMammoth", str(path)))[0])
    assert len(others) >= 3
    nll, unigram = model.nll_per_note(others), model.baseline.nll_per_note(others)
    assert nll < unigram - 0.15, (nll, unigram)
