"""The WAV recorder: what goes in comes back out of the file, on the engine's clock."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from daemon.outputs.recorder import WavRecorder

SR = 48000
BLOCK = 256
PCM16_STEP = 1.0 / 32768


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


def blocks(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    return [rng.uniform(-0.9, 0.9, size=(BLOCK, 2)).astype(np.float32) for _ in range(count)]


def test_blocks_round_trip_within_pcm16(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "rec" / "take.wav"
    recorder = WavRecorder(path, sample_rate=SR)
    sent = blocks(rng, 200)
    for i, block in enumerate(sent):
        recorder.write(block, i * BLOCK / SR)
    recorder.close()
    recorder.close()  # idempotent
    audio, rate = sf.read(path, dtype="float32")
    info = sf.info(path)
    assert rate == SR and info.subtype == "PCM_16" and info.format == "WAV"
    expected = np.concatenate(sent)
    assert audio.shape == expected.shape
    assert np.abs(audio - expected).max() <= 2 * PCM16_STEP
    assert recorder.seconds_written == pytest.approx(200 * BLOCK / SR)


def test_float_subtype_is_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    path = tmp_path / "take.wav"
    recorder = WavRecorder(path, sample_rate=SR, subtype="FLOAT")
    sent = blocks(rng, 10)
    for i, block in enumerate(sent):
        recorder.write(block, i * BLOCK / SR)
    recorder.close()
    audio, _ = sf.read(path, dtype="float32")
    assert np.array_equal(audio, np.concatenate(sent))


def test_the_file_follows_the_audio_clock(tmp_path: Path) -> None:
    path = tmp_path / "gaps.wav"
    recorder = WavRecorder(path, sample_rate=SR)
    ones = np.full((BLOCK, 2), 0.5, dtype=np.float32)
    recorder.write(ones, 10.0)  # the recording starts whenever the first block comes
    recorder.write(ones, 10.0 + 2 * BLOCK / SR)  # one block missing: silence in its place
    recorder.write(ones, 10.0 + 2.5 * BLOCK / SR)  # half overlaps what is written: dropped
    recorder.close()
    audio, _ = sf.read(path, dtype="float32")
    assert recorder.start_time == 10.0
    assert len(audio) == int(3.5 * BLOCK)
    assert np.all(audio[BLOCK : 2 * BLOCK] == 0)
    assert np.allclose(audio[2 * BLOCK :], 0.5, atol=PCM16_STEP)


def test_out_of_range_samples_are_clipped_not_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "hot.wav"
    recorder = WavRecorder(path, sample_rate=SR)
    recorder.write(np.full((BLOCK, 2), 1.5, dtype=np.float32), 0.0)
    recorder.write(np.full((BLOCK, 2), -1.5, dtype=np.float32), BLOCK / SR)
    recorder.close()
    audio, _ = sf.read(path, dtype="float32")
    assert audio[:BLOCK].min() > 0.99 and audio[BLOCK:].max() < -0.99


def test_the_file_is_readable_while_still_recording(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    path = tmp_path / "live.wav"
    recorder = WavRecorder(path, sample_rate=SR, header_interval_s=0.1)
    for i, block in enumerate(blocks(rng, 100)):  # ~0.53 s
        recorder.write(block, i * BLOCK / SR)
    deadline = threading.Event()
    while recorder.seconds_written < 100 * BLOCK / SR and not deadline.wait(0.01):
        pass
    # As if the daemon had died here: the header already counts (nearly) everything written.
    assert sf.info(path).frames >= int(0.4 * SR)
    recorder.close()
    assert sf.info(path).frames == 100 * BLOCK


def test_writes_after_close_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    recorder = WavRecorder(path, sample_rate=SR)
    recorder.write(np.zeros((BLOCK, 2), np.float32), 0.0)
    recorder.close()
    recorder.write(np.zeros((BLOCK, 2), np.float32), BLOCK / SR)
    assert sf.info(path).frames == BLOCK


def test_wrong_channel_count_is_refused(tmp_path: Path) -> None:
    recorder = WavRecorder(tmp_path / "x.wav", sample_rate=SR)
    with pytest.raises(ValueError, match="channels"):
        recorder.write(np.zeros((BLOCK, 3), np.float32), 0.0)
    recorder.close()


def test_an_unwritable_path_fails_at_once(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        WavRecorder(blocker / "take.wav", sample_rate=SR)


def test_recording_a_render(tmp_path: Path) -> None:
    from daemon.config import EngineConfig
    from daemon.engine import BackendChoice, Engine, ScoreQueue
    from daemon.messages import BarScore, Chord, Layer, NoteEvent, Plan

    plan = Plan(
        bar=0,
        bpm=120.0,
        layers=2,
        tonic=0,
        mode="major",
        density=0.5,
        valence=0.0,
        arousal=0.0,
    )
    queue = ScoreQueue()
    notes = (NoteEvent(Layer.LEAD, 72, 100, 0.0, 1.0), NoteEvent(Layer.BASS, 48, 100, 0.0, 2.0))
    queue.put(BarScore(0, plan, Chord(0, "maj", (60, 64, 67)), notes))
    queue.close()
    engine = Engine(
        config=EngineConfig(),
        backend=BackendChoice("offline", "test"),
        scores=queue,
        realtime=False,
    )
    recorder = WavRecorder(tmp_path / "render.wav", sample_rate=SR)
    heard: list[np.ndarray] = []
    engine.add_audio_listener(recorder.write)
    engine.add_audio_listener(lambda block, audio_time: heard.append(block))
    engine.set_end_time(1.25)
    engine.start()
    assert engine.wait(30)
    engine.stop()
    recorder.close()
    audio, _ = sf.read(tmp_path / "render.wav", dtype="float32")
    expected = np.concatenate(heard)
    assert audio.shape == expected.shape == (int(1.25 * SR), 2)
    assert np.abs(audio - expected).max() <= 2 * PCM16_STEP
