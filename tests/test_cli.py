"""The `moodscore` command as a user meets it: clear errors, doctor, analyze, run, bench."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from daemon.cli import main
from tests.clips import write_clip

MOODSCORE = [sys.executable, "-m", "daemon.cli"]


def _moodscore(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYO_GUI_WX": "0"}
    return subprocess.run(
        [*MOODSCORE, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "short.mp4"
    return write_clip(path, duration=4.0, intensity=lambda t: 0.2)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("moodscore: error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    result = _moodscore("render", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"))
    _assert_one_line_error(result, "no such file", "nope.mp4")


def test_a_file_that_is_not_a_video_is_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a shopping list, not a video\n" * 50)
    result = _moodscore("analyze", str(fake), "-o", str(tmp_path / "t.json"))
    _assert_one_line_error(result, "notes.mp4", "not a video")


def test_unknown_source_is_one_clear_error() -> None:
    result = _moodscore("run", "--source", "telepathy", "--duration", "1")
    _assert_one_line_error(result, "telepathy")


def test_bad_config_key_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text("[engine]\nsampel_rate = 44100\n")
    result = _moodscore("run", "--source", "demo", "--duration", "1", "--config", str(config))
    _assert_one_line_error(result, "engine.sampel_rate", "did you mean engine.sample_rate")


def test_bad_flags_are_one_clear_error(tmp_path: Path) -> None:
    _assert_one_line_error(_moodscore("run", "--duration", "-3"), "--duration")
    _assert_one_line_error(_moodscore("run", "--backend", "alsa"), "alsa")
    _assert_one_line_error(_moodscore("render", "demo", "-o", str(tmp_path / "o.avi")), ".avi")


def test_doctor_reports_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["doctor"])
    out = capsys.readouterr().out
    assert code == 0, out
    for item in (
        "audio devices",
        "JACK",
        "audio backend",
        "cameras",
        "GPU",
        "MQTT broker",
        "library",
    ):
        assert item in out
    # No sound card here: doctor says what `auto` falls back to and what to do.
    assert "manual" in out
    assert "model: melody n-gram" in out


def test_analyze_writes_the_timeline_schema_and_a_plot(short_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "timeline.json"
    assert main(["analyze", str(short_clip), "-o", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["format"] == "moodscore-timeline" and document["version"] == 1
    windows = document["windows"]
    assert len(windows) == 8  # 4 s in 0.5 s windows
    for row in windows:
        assert set(row) >= {"t_start", "t_end", "valence", "arousal", "scene"}
        assert row["scene"] is None
        assert "bpm" not in row  # the analysis alone has no conductor fields
        assert -1 <= row["valence"] <= 1 and -1 <= row["arousal"] <= 1
    assert windows[0]["t_start"] == 0.0 and windows[-1]["t_end"] == pytest.approx(4.0, abs=0.05)
    assert out.with_suffix(".png").stat().st_size > 10_000


# Live runs, but beside another module in `make test`: nothing here is timed (the recording's
# length is counted in samples, the stop's order in the log).
def test_run_records_a_wav_and_stops_in_order_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYO_GUI_WX": "0"}
    process = subprocess.Popen(
        [*MOODSCORE, "run", "--source", "demo", "--record", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(tmp_path.glob("*.wav")):
            time.sleep(0.2)
        time.sleep(4.0)  # some music, then the stop a service manager would send
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    # The log names the source it opened (the demo, as asked).
    assert any(line.endswith("source: built-in demo scene") for line in stderr.splitlines())
    wavs = list(tmp_path.glob("*.wav"))
    assert len(wavs) == 1
    audio, rate = soundfile.read(str(wavs[0]))
    assert rate == 48000 and audio.shape[1] == 2
    assert audio.shape[0] / rate > 3.0
    assert np.sqrt(np.mean(audio**2)) > 0.005  # audible, not silence
    timeline = json.loads(next(tmp_path.glob("*.timeline.json")).read_text())
    assert timeline["windows"] and "bpm" in timeline["windows"][-1]


def test_run_with_duration_records_that_long(tmp_path: Path) -> None:
    result = _moodscore("run", "--source", "demo", "--duration", "5", "--record", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "recorded" in result.stderr and str(tmp_path) in result.stderr
    (wav,) = tmp_path.glob("*.wav")
    info = soundfile.info(str(wav))
    assert info.duration == pytest.approx(5.0, abs=0.01)


def _percentiles(node: object) -> list[dict]:
    """Every {"p50": ..., "p95": ...} figure in the bench's JSON."""
    if isinstance(node, dict):
        found = [node] if "p50" in node and "p95" in node else []
        return found + [d for value in node.values() for d in _percentiles(value)]
    return []


# Beside another module in `make test`: the figures are only checked for being consistent with
# one another and with --quick's settings, never against a speed. The reaction section (a third
# of --quick's time) is skipped here: its steps are measured by the same functions in
# test_reactions.py and test_game_mode.py, which assert on them.
def test_bench_prints_the_figures_as_json() -> None:
    started = time.monotonic()
    result = _moodscore("bench", "--quick", "--skip", "reaction", timeout=600)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["skipped"] == ["reaction"] and "reaction" not in figures
    for key in (
        "analysis_ms_per_frame",
        "composer_ms_per_bar",
        "engine_realtime_factor",
        "render_x_realtime",
    ):
        assert key in figures
    # Distributions are distributions: each median lies at or below its 95th percentile.
    spreads = _percentiles(figures)
    assert len(spreads) >= 10
    for spread in spreads:
        assert 0 <= spread["p50"] <= spread["p95"], spread
    # Counts that follow from --quick's own settings: 5 s of live audio at 48 kHz in blocks
    # of 256 samples; 5 s of beats at 120 bpm.
    assert figures["live_manual"]["blocks"] == -(-5 * 48000 // 256)  # the last block part-filled
    assert figures["mqtt"]["beats_expected"] == 10
    assert figures["mqtt"]["beats_received"] <= 10
    # A ratio is made of the parts it reports, and each part was timed within this run.
    clip = figures["render_clip"]
    assert figures["render_x_realtime"] == pytest.approx(clip["seconds"] / clip["wall_s"], rel=0.01)
    scan = figures["library"]["scan"]
    assert scan["x_realtime"] == pytest.approx(
        scan["music_minutes"] * 60 / scan["wall_s"], rel=0.03
    )
    assert scan["analysed"] == figures["library"]["library"]["files"] and scan["failed"] == 0
    assert clip["wall_s"] + scan["wall_s"] + figures["library"]["library"]["build_s"] < elapsed
    # The engine stepped flat out renders faster than real time, on less than a core.
    assert figures["engine_realtime_factor"] > 1
    assert 0 < figures["engine_core_fraction"] < 1


def test_bench_names_its_sections_when_asked_for_one_it_lacks() -> None:
    result = _moodscore("bench", "--quick", "--skip", "reaction,speed")
    assert result.returncode == 2
    assert "no section 'speed'" in result.stderr and "library, reaction" in result.stderr
