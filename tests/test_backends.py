"""Backend choice on this machine, and the engine on a real (dummy-driver) JACK server."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
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
    pick_device,
    probe_audio_devices,
)
from daemon.errors import EngineError
from daemon.messages import KICK, BarScore, Beat, Chord, Layer, NoteEvent, Plan
from tests.jack import dummy_jackd


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
    with dummy_jackd(monkeypatch, "moodscore-test", period=256) as name:
        yield name


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


# --------------------------------------------------------------------------- choosing the card


def test_a_device_is_picked_by_index_or_a_unique_part_of_its_name() -> None:
    outputs = [(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)"), (3, "USB Audio CODEC"), (7, "pulse")]
    assert pick_device("3", outputs) == (3, "USB Audio CODEC")
    assert pick_device("usb", outputs) == (3, "USB Audio CODEC")
    assert pick_device("pulse", outputs) == (7, "pulse")
    with pytest.raises(EngineError, match=r"'HDMI' matches none of: 0: HDA Intel.*7: pulse"):
        pick_device("HDMI", outputs)
    with pytest.raises(EngineError, match="could be any of"):
        pick_device("a", outputs)
    with pytest.raises(EngineError, match="no audio output device here"):
        pick_device("1", [])


@pytest.fixture
def null_sound_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment whose ALSA has one output PortAudio lists: a null sink (it plays and
    throws the sound away), declared in the test's own ~/.asoundrc (the device probe, a
    subprocess, sees it too)."""
    (tmp_path / ".asoundrc").write_text(
        "pcm.moodscore_null {\n  type null\n"
        '  hint { show on description "moodscore test sink" }\n}\n'
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    return dict(os.environ, HOME=str(tmp_path), PYO_GUI_WX="0")


def test_doctor_lists_the_card_and_run_refuses_one_not_there(
    null_sound_card: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main
    from daemon.config import load_config
    from daemon.doctor import gather_checks

    checks = gather_checks(load_config(use_user_file=False))
    devices = next(c for c in checks if c.name == "audio devices")
    assert devices.ok and "0: moodscore_null" in devices.detail
    code = main(["run", "--source", "demo", "--no-web", "--duration", "2", "--device", "9"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "matches none of: 0: moodscore_null" in err
