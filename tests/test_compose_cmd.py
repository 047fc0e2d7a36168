"""`moodscore compose`: music for a fixed mood, judged by what librosa hears in the WAV."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile

from daemon.cli import main

MOODSCORE = [sys.executable, "-m", "daemon.cli"]


def compose(tmp_path: Path, name: str, *args: str) -> Path:
    wav = tmp_path / f"{name}.wav"
    assert main(["compose", *args, "-o", str(wav), "-q"]) == 0
    return wav


def mono(path: Path) -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(str(path), dtype="float32")
    return audio.mean(axis=1), rate


@pytest.mark.slow
@pytest.mark.parametrize(("bpm", "arousal"), [(80, -0.3), (120, 0.3), (160, 0.8)])
def test_librosa_hears_the_tempo(tmp_path: Path, bpm: int, arousal: float) -> None:
    import librosa

    bars = int(30 * bpm / 240) + 1  # a little over 30 s
    wav = compose(
        tmp_path, "beat", "--valence", "0.3", "--arousal", str(arousal), "--bpm", str(bpm),
        "--layers", "3", "--bars", str(bars), "--seed", "0",
    )  # fmt: skip
    y, rate = mono(wav)
    y = y[: 30 * rate]
    tempo, beats = librosa.beat.beat_track(y=y, sr=rate, units="time")
    # The tracker's own estimate, and the mean spacing of the beats it placed.
    assert float(np.atleast_1d(tempo)[0]) == pytest.approx(bpm, rel=0.02)
    assert 60.0 * (len(beats) - 1) / (beats[-1] - beats[0]) == pytest.approx(bpm, rel=0.02)


@pytest.mark.slow
def test_each_layer_adds_onsets_and_loudness(tmp_path: Path) -> None:
    import librosa

    rates, levels = [], []
    for layers in range(1, 6):
        wav = compose(
            tmp_path, f"layers{layers}", "--scene", "menu", "--valence", "0.3",
            "--arousal", "0.3", "--layers", str(layers), "--bars", "12", "--seed", "0",
        )  # fmt: skip
        y, rate = mono(wav)
        onsets = librosa.onset.onset_detect(y=y, sr=rate, units="time")
        rates.append(len(onsets) / (len(y) / rate))
        levels.append(float(np.sqrt(np.mean(np.square(y)))))
    assert all(a < b for a, b in itertools.pairwise(rates)), rates
    assert all(a < b for a, b in itertools.pairwise(levels)), levels


def test_wav_and_midi_of_the_same_performance(tmp_path: Path) -> None:
    wav, mid = tmp_path / "out" / "piece.wav", tmp_path / "out" / "piece.mid"
    args = ["compose", "--valence", "-0.5", "--arousal", "0.2", "--scene", "combat"]
    args += ["--bars", "4", "--bpm", "150", "--seed", "7", "-o", str(wav), "-o", str(mid), "-q"]
    assert main(args) == 0
    y, rate = mono(wav)
    bar = 4 * 60 / 150
    # Four bars, then the last notes and the reverb ring out for about two seconds.
    assert 4 * bar + 1.5 < len(y) / rate < 4 * bar + 2.5
    assert np.sqrt(np.mean(np.square(y[: int(4 * bar * rate)]))) > 0.03
    midi = mido.MidiFile(str(mid))
    assert midi.length == pytest.approx(len(y) / rate, abs=0.01)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(150, abs=0.01)
    key = next(m.key for m in midi.tracks[0] if m.type == "key_signature")
    assert key.endswith("m")  # combat is always minor
    counts = {t.name: sum(1 for m in t if m.type == "note_on") for t in midi.tracks[1:]}
    assert all(counts[name] > 0 for name in ("lead", "bass", "drums"))  # combat: 3+ layers


def test_same_seed_same_samples(tmp_path: Path) -> None:
    args = ("--valence", "0.2", "--arousal", "0.4", "--bars", "2", "--seed", "3")
    first, _ = mono(compose(tmp_path, "a", *args))
    second, _ = mono(compose(tmp_path, "b", *args))
    other, _ = mono(compose(tmp_path, "c", *args[:-1], "4"))
    assert np.array_equal(first, second)
    assert not np.array_equal(first[: len(other)], other[: len(first)])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bpm", "300"], "--bpm 300"),
        (["--layers", "9"], "--layers 9"),
        (["--arousal", "3"], "--arousal 3"),
        (["--scene", "disco"], "no scene preset named 'disco'; available: calm"),
        (["-o", "out.mp3"], ".wav, .mid or .midi"),
    ],
)
def test_mistakes_are_one_clear_line(tmp_path: Path, args: list[str], words: str) -> None:
    base = ["--valence", "0", "--arousal", "0", "--bars", "1"]
    if "-o" not in args:
        base += ["-o", str(tmp_path / "x.wav")]
    env = {**os.environ, "PYO_GUI_WX": "0"}
    result = subprocess.run(
        [*MOODSCORE, "compose", *base, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("moodscore: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert words in errors[0]
