"""Backend choice on this machine, and the engine on a real (dummy-driver) JACK server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from daemon.config import EngineConfig
from daemon.engine import (
    BackendChoice,
    Engine,
    ScoreQueue,
    backends,
    choose_backend,
    jack_running,
    probe_audio_devices,
)
from daemon.errors import EngineError
from daemon.messages import KICK, BarScore, Beat, Chord, Layer, NoteEvent, Plan


@pytest.fixture(scope="module")
def hardware() -> tuple[bool, bool]:
    """(has an audio device, a JACK server is running) on this machine, probed once."""
    return bool(probe_audio_devices()), jack_running()


def test_render_is_always_offline() -> None:
    for requested in ("auto", "offline", "manual", "device", "jack"):
        choice = choose_backend(requested, render=True)
        assert choice.name == "offline"
        assert choice.reason


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(EngineError, match="auto, device, jack, manual, offline"):
        choose_backend("alsa", render=False)


def test_auto_falls_back_to_manual_without_hardware(hardware: tuple[bool, bool]) -> None:
    has_device, has_jack = hardware
    choice = choose_backend("auto", render=False)
    expected = "device" if has_device else "jack" if has_jack else "manual"
    assert choice.name == expected
    assert "\n" not in choice.reason


def test_forced_device_without_a_device_says_what_to_do(hardware: tuple[bool, bool]) -> None:
    if hardware[0]:
        pytest.skip("this machine has an audio device")
    with pytest.raises(EngineError, match="no audio device found; use --backend manual"):
        choose_backend("device", render=False)


def test_forced_jack_without_a_server_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server name nobody runs, so a developer's own jackd does not change the answer.
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"moodscore-absent-{os.getpid()}")
    with pytest.raises(EngineError, match="no JACK server is running"):
        choose_backend("jack", render=False)


def test_forced_manual_and_offline_need_nothing() -> None:
    assert choose_backend("manual", render=False).name == "manual"
    assert choose_backend("offline", render=False).name == "offline"


def test_a_crashing_or_hanging_probe_means_no_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_PROBE_SCRIPT", "import os; os.abort()")
    assert probe_audio_devices() == []
    monkeypatch.setattr(backends, "_PROBE_SCRIPT", "import time; time.sleep(30)")
    started = time.monotonic()
    assert probe_audio_devices(timeout=0.5) == []
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- a real JACK server


@pytest.fixture
def jack_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A dummy-driver jackd under a server name of its own, stopped after the test."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.skip("jackd is not installed (Debian: apt install jackd2)")
    name = f"moodscore-test-{os.getpid()}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    proc = subprocess.Popen(
        [jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not jack_running():
            if proc.poll() is not None:
                stderr = proc.stderr.read() if proc.stderr else ""
                pytest.skip(f"jackd did not start: {stderr.strip()[-300:]}")
            if time.monotonic() > deadline:
                pytest.fail("jackd did not accept clients within 10 s")
            time.sleep(0.1)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.jack
def test_jack_is_seen_when_it_runs(jack_server: str, hardware: tuple[bool, bool]) -> None:
    assert jack_running()
    assert choose_backend("jack", render=False).name == "jack"
    if not hardware[0]:
        assert choose_backend("auto", render=False).name == "jack"


@pytest.mark.jack
def test_engine_plays_live_on_jack(jack_server: str) -> None:
    chord = Chord(root=9, quality="min", pitches=(57, 60, 64))
    queue = ScoreQueue()
    for bar in range(4):
        plan = Plan(
            bar=bar,
            bpm=120.0,
            layers=3,
            tonic=9,
            mode="minor",
            density=0.5,
            valence=0.0,
            arousal=0.0,
        )
        notes = (
            NoteEvent(Layer.LEAD, 69, 100, 0.0, 1.0),
            NoteEvent(Layer.DRUMS, KICK, 110, 0.0, 0.25),
            NoteEvent(Layer.BASS, 45, 100, 0.0, 2.0),
        )
        queue.put(BarScore(bar, plan, chord, notes))
    engine = Engine(
        config=EngineConfig(),
        backend=BackendChoice("jack", "test"),
        scores=queue,
        realtime=True,
    )
    beats: list[Beat] = []
    blocks: list[np.ndarray] = []
    engine.add_beat_listener(beats.append)
    engine.add_audio_listener(lambda block, audio_time: blocks.append(block))
    started = time.monotonic()
    engine.start()
    try:
        time.sleep(2.0)
        elapsed = time.monotonic() - started
        # JACK's clock drives the engine: audio time keeps up with the wall clock.
        assert engine.audio_time == pytest.approx(elapsed, abs=0.3)
        # ...and the engine knows when each moment of audio is heard (MIDI out schedules by it).
        heard = engine.wall_time(engine.audio_time)
        assert heard is not None and heard == pytest.approx(time.perf_counter(), abs=0.05)
    finally:
        engine.stop()
    engine.stop()
    assert engine.error is None
    assert [beat.audio_time for beat in beats[:4]] == [0.0, 0.5, 1.0, 1.5]
    audio = np.concatenate(blocks)
    assert audio.shape[1] == 2
    assert np.abs(audio).max() > 0.05
    assert np.abs(audio).max() < 1.0
