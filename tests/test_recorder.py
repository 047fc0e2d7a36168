"""The WAV recorder: what goes in comes back out of the file, on the engine's clock."""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
from collections.abc import Iterator
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


def test_a_recording_past_the_size_limit_rolls_over_into_readable_files(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    """The 4 GiB limit, scaled down: a cap of 1 MB and 3 MB of audio (16 s of stereo PCM_16)."""
    path = tmp_path / "long.wav"
    recorder = WavRecorder(path, sample_rate=SR, max_file_bytes=1_000_000)
    sent = blocks(rng, 3000)  # 16 s
    for i, block in enumerate(sent):
        recorder.write(block, 5.0 + i * BLOCK / SR)
    recorder.close()
    parts = recorder.parts
    assert [p.path.name for p in parts] == [
        "long.wav",
        "long-002.wav",
        "long-003.wav",
        "long-004.wav",
    ]
    heard = []
    for part in parts:
        assert part.path.stat().st_size <= 1_000_000
        info = sf.info(part.path)
        assert info.format == "WAV" and info.frames == part.frames
        audio, _ = sf.read(part.path, dtype="float32")
        heard.append(audio)
    # Each file starts where the one before ended, on the audio clock; together they hold
    # every sample, in order.
    for before, after in itertools.pairwise(parts):
        assert after.start_time == pytest.approx(before.start_time + before.frames / SR)
    assert parts[0].start_time == 5.0
    expected = np.concatenate(sent)
    together = np.concatenate(heard)
    assert together.shape == expected.shape
    assert np.abs(together - expected).max() <= 2 * PCM16_STEP


def test_the_real_size_limit_is_just_under_4_gib(tmp_path: Path) -> None:
    from daemon.outputs.recorder import WAV_LIMIT_BYTES

    recorder = WavRecorder(tmp_path / "x.wav", sample_rate=SR)
    recorder.close()
    frames = recorder._part_frames
    assert WAV_LIMIT_BYTES == 2**32 - 1
    assert 4 * frames + 44 < 2**32 and frames / SR / 3600 > 6.2  # 6 h 12 min a file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 600 kB file system (tmpfs; the tests run as root, as the web tests' namespace does)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, (
        f"cannot mount a small tmpfs ({done.stderr.strip()}): this test fills a real file "
        "system, which needs root (as the web tests' network namespace does)"
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_full_disk_stops_the_recording_with_one_message(
    small_disk: Path, rng: np.random.Generator, caplog: pytest.LogCaptureFixture
) -> None:
    path = small_disk / "take.wav"
    recorder = WavRecorder(path, sample_rate=SR)
    for i, block in enumerate(blocks(rng, 1000)):  # 5.3 s = 1 MB: the disk fills at ~3 s
        recorder.write(block, i * BLOCK / SR)
    recorder.close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "disk is full" in errors[0].getMessage(), caplog.text
    assert "music plays on" in errors[0].getMessage()
    assert recorder.failed is not None
    # What fitted is a valid WAV: its header counts what was written (the failed block's
    # first frames included, when libsndfile got them down).
    info = sf.info(path)
    assert 2.0 * SR < info.frames <= recorder.seconds_written * SR + BLOCK
    audio, _ = sf.read(path, dtype="float32")
    assert len(audio) == info.frames


def test_a_full_disk_during_run_stops_the_recording_not_the_music(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main

    code = main(
        ["run", "--source", "demo", "--backend", "manual", "--duration", "6", "--no-web",
         "--record", str(small_disk)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    stopped = [line for line in err.splitlines() if "recording stopped at" in line]
    assert len(stopped) == 1 and "disk is full" in stopped[0] and "music plays on" in stopped[0]
    # The music went on to the end: the run's health line covers the whole run, and no bar
    # came late from the composer. (Late blocks are not asserted: on a loaded machine they come
    # from the other work, not from the disk.)
    summary = next(line for line in err.splitlines() if "health: " in line)
    assert " 0 bars late" in summary, summary
    # 6 s of music, plus the start (the engine process's included; more on a loaded machine).
    over = re.search(r"over (\d+) s", summary)
    assert over is not None and 6 <= int(over.group(1)) <= 10, summary
    (wav,) = small_disk.glob("*.wav")
    assert sf.info(wav).frames > 2.0 * SR


def test_kill_9_during_run_record_loses_at_most_a_second(tmp_path: Path) -> None:
    """``moodscore run --record`` in its own process, killed without warning: the WAV written so
    far opens in soundfile and ffprobe and holds all but at most the last second."""
    import json
    import os
    import signal
    import sys
    import time
    import urllib.request

    record = tmp_path / "rec"
    process = subprocess.Popen(
        [sys.executable, "-c", "import sys; from daemon.cli import main; sys.exit(main())",
         "run", "--source", "demo", "--backend", "manual", "--web", "127.0.0.1:0",
         "--record", str(record)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYO_GUI_WX": "0"}, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    try:
        assert process.stderr is not None
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            line = process.stderr.readline()
            if "OBS page: " in line:
                url = line.split("OBS page: ")[1].split()[0]
        assert url, "the daemon did not start"

        def audio_time() -> float:
            with urllib.request.urlopen(url + "api/state", timeout=5) as answer:
                return float(json.load(answer)["audio_time"])

        while audio_time() < 7.3:
            time.sleep(0.1)
        heard = audio_time()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    (wav,) = record.glob("*.wav")
    info = sf.info(wav)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == SR and len(audio) == info.frames
    assert heard - 1.0 <= info.frames / SR <= heard + 0.2, (heard, info.frames / SR)
    assert np.abs(audio[SR:]).max() > 0.01  # music, not an empty file of the right length
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name",
         "-of", "json", str(wav)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["streams"][0]["codec_name"] == "pcm_s16le"
    assert float(found["format"]["duration"]) == pytest.approx(info.frames / SR, abs=0.01)
