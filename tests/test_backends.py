"""Backend choice on this machine, and the engine on a real (dummy-driver) JACK server."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

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


def _machine(monkeypatch: pytest.MonkeyPatch, *, jack: bool, device: bool) -> None:
    """Make the probes see a JACK server and/or a sound card (or neither)."""
    monkeypatch.setattr(backends, "jack_running", lambda timeout=3.0: jack)
    monkeypatch.setattr(
        backends, "probe_audio_devices", lambda timeout=5.0: ["HDA Intel PCH"] if device else []
    )


def test_render_is_always_offline() -> None:
    for requested in ("auto", "offline", "manual", "device", "jack"):
        choice = choose_backend(requested, render=True)
        assert choice.name == "offline"
        assert choice.reason


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(EngineError, match="auto, device, jack, manual, offline"):
        choose_backend("alsa", render=False)


# README, "Audio without a sound card": `auto` uses JACK when a server is running, else a
# portaudio device when one exists, else manual. Written out, not derived from the code.
@pytest.mark.parametrize(
    ("jack", "device", "expected"),
    [
        (True, True, "jack"),
        (True, False, "jack"),
        (False, True, "device"),
        (False, False, "manual"),
    ],
)
def test_auto_takes_jack_then_a_device_then_manual(
    monkeypatch: pytest.MonkeyPatch, jack: bool, device: bool, expected: str
) -> None:
    _machine(monkeypatch, jack=jack, device=device)
    choice = choose_backend("auto", render=False)
    assert choice.name == expected
    assert choice.reason.startswith("auto: ") and "\n" not in choice.reason
    if expected == "device":
        assert "HDA Intel PCH" in choice.reason  # the log names the card it will open


@pytest.mark.parametrize("jack", [True, False])
def test_forced_device_needs_a_device_whether_or_not_jack_runs(
    monkeypatch: pytest.MonkeyPatch, jack: bool
) -> None:
    _machine(monkeypatch, jack=jack, device=False)
    with pytest.raises(EngineError, match="no audio device found; use --backend manual"):
        choose_backend("device", render=False)
    _machine(monkeypatch, jack=jack, device=True)
    assert choose_backend("device", render=False).name == "device"


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
        pytest.fail("jackd is not installed: tools/setup.sh installs jackd2")
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
                pytest.fail(f"jackd did not start: {stderr.strip()[-300:]}")
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
def test_jack_is_seen_when_it_runs(jack_server: str) -> None:
    assert jack_running()
    assert choose_backend("jack", render=False).name == "jack"
    # A running server wins over any sound card this machine may have.
    assert choose_backend("auto", render=False).name == "jack"


def _connections(client: Any, port: Any) -> list[str]:
    return sorted(other.name for other in client.get_all_connections(port))


@pytest.mark.jack
def test_engine_plays_live_on_jack(jack_server: str) -> None:
    """What another JACK client sees (JACK-Client, not pyo): moodscore's two output ports,
    connected to the system playback ports, carrying the music."""
    import jack

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
    listener = jack.Client("listener", no_start_server=True, servername=jack_server)
    ears = [listener.inports.register(f"in_{k}") for k in (1, 2)]
    heard: list[np.ndarray] = []

    @listener.set_process_callback
    def process(frames: int) -> None:
        heard.append(np.stack([ear.get_array().copy() for ear in ears], axis=1))

    listener.activate()
    beats: list[Beat] = []
    engine.add_beat_listener(beats.append)
    engine.start()
    try:
        outputs = listener.get_ports("moodscore:", is_audio=True, is_output=True)
        assert [p.name for p in outputs] == ["moodscore:output_1", "moodscore:output_2"]
        speakers = listener.get_ports("system:", is_audio=True, is_input=True, is_physical=True)
        assert [p.name for p in speakers] == ["system:playback_1", "system:playback_2"]
        # Left to the left speaker, right to the right one, by moodscore itself.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not all(map(_connections, [listener] * 2, outputs)):
            time.sleep(0.02)
        assert [_connections(listener, p) for p in outputs] == [
            ["system:playback_1"],
            ["system:playback_2"],
        ]
        # Listen to what it sends the speakers.
        for output, ear in zip(outputs, ears, strict=True):
            listener.connect(output, ear)
        # JACK's clock drives the engine: audio time keeps up with the wall clock (measured
        # once it runs: booting pyo under load takes a while of its own).
        started, audio_started = time.monotonic(), engine.audio_time
        time.sleep(2.0)
        elapsed = time.monotonic() - started
        assert engine.audio_time - audio_started == pytest.approx(elapsed, abs=0.15)
        # ...and the engine knows when each moment of audio is heard (MIDI out schedules by it).
        heard_at = engine.wall_time(engine.audio_time)
        assert heard_at is not None and heard_at == pytest.approx(time.perf_counter(), abs=0.05)
    finally:
        engine.stop()
        listener.deactivate()
        listener.close()
    engine.stop()
    assert engine.error is None
    assert [beat.audio_time for beat in beats[:4]] == [0.0, 0.5, 1.0, 1.5]
    audio = np.concatenate(heard)
    # About two seconds of it, both channels: the lead, the kick and the bass, never clipping.
    assert len(audio) > 1.5 * 48000
    peaks = np.abs(audio).max(axis=0)
    assert np.all(peaks > 0.05), peaks
    assert np.all(peaks < 1.0), peaks
