"""MIDI clock in: moodscore follows a DAW's 24 PPQN clock, its tempo and its Start/Stop/Continue.

The live test is the whole daemon (``run --midi-clock-in``) on a dummy JACK server, with an
independent JACK client in its own process (JACK-Client, as a DAW sends clock) and the recording
judged by what librosa hears.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from daemon.control.midi_clock import PULSES_PER_BEAT, TempoFollower
from tests.hardware import hardware_reason
from tests.jack import dummy_jackd
from tests.live import build, live_config, running
from tests.sync_peers import peer


def _pulses(bpm: float, count: int, start: float, rng: np.random.Generator) -> list[float]:
    """Pulse arrival times: due every 1/24 beat, delivered at the end of a 2.7 ms JACK cycle."""
    period = 60.0 / (PULSES_PER_BEAT * bpm)
    due = start + period * np.arange(1, count + 1)
    cycle = 128 / 48000
    return list(np.ceil(due / cycle) * cycle + rng.uniform(0, 0.0005, count))


def test_follower_finds_the_tempo_through_jitter_and_refuses_an_absurd_clock() -> None:
    rng = np.random.default_rng(seed=440)
    follower = TempoFollower()
    said = [(i, follower.pulse(t)) for i, t in enumerate(_pulses(100.0, 8 * 24, 0.0, rng))]
    told = [(i, bpm) for i, bpm in said if bpm is not None]
    # One tempo, after two beats, within 0.3 %.
    assert len(told) == 1 and told[0][0] <= 2 * 24 + 1
    assert told[0][1] == pytest.approx(100.0, rel=0.003)
    # A jump to 140: one new tempo within three beats, no glide through the tempi between.
    start = _pulses(100.0, 8 * 24, 0.0, np.random.default_rng(seed=440))[-1]
    faster = [follower.pulse(t) for t in _pulses(140.0, 8 * 24, start, rng)]
    changed = [(i, bpm) for i, bpm in enumerate(faster) if bpm is not None]
    assert len(changed) == 1 and changed[0][0] <= 3 * 24
    assert changed[0][1] == pytest.approx(140.0, rel=0.003)
    # A clock at 2000 bpm: refused within three of its beats (0.0: stop following), then quiet.
    start += 8 * 24 * 60 / (24 * 140)
    absurd = [follower.pulse(t) for t in _pulses(2000.0, 4 * 24, start, rng)]
    assert [bpm for bpm in absurd if bpm is not None] == [0.0]
    assert absurd.index(0.0) <= 3 * 24  # 0.1 s of such a clock
    assert follower.out_of_range is not None and follower.out_of_range > 1000


def _say(daw: subprocess.Popen[str], command: object) -> None:
    assert daw.stdin is not None
    daw.stdin.write(json.dumps(command) + "\n")
    daw.stdin.flush()


def _connect_when_there() -> None:
    """Connect the DAW to moodscore's clock input as soon as it appears."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ports = subprocess.run(["jack_lsp"], capture_output=True, text=True).stdout.splitlines()
        if "moodscore-clock-in:moodscore-clock-in" in ports:
            subprocess.run(
                ["jack_connect", "daw:out", "moodscore-clock-in:moodscore-clock-in"], check=True
            )
            return
        time.sleep(0.05)
    raise TimeoutError("moodscore's MIDI clock input did not appear")


def _heard_bpm(audio: np.ndarray, rate: int, start: float, end: float, prior: float) -> float:
    """The tempo librosa hears in ``audio[start:end]`` (seconds): the strongest period of the
    onset envelope's autocorrelation within 20 % of the ``prior`` tempo's beat, to a fraction
    of a hop. Not ``beat_track``'s tempo: it is quantised to its tempogram's bins (136.0 or
    143.6 near 140 bpm, both more than 2 % off), and on a few seconds its beats follow that bin."""
    hop = 128
    part = audio[round(start * rate) : round(end * rate)].mean(axis=1)
    envelope = librosa.onset.onset_strength(y=part, sr=rate, hop_length=hop)
    correlation = librosa.autocorrelate(envelope - envelope.mean())
    beat_lag = 60.0 / prior * rate / hop
    low, high = int(0.8 * beat_lag), int(1.25 * beat_lag) + 1
    peak = low + int(np.argmax(correlation[low:high]))
    before, at, after = correlation[peak - 1 : peak + 2]
    shift = 0.5 * (before - after) / (before - 2 * at + after)  # the parabola's top
    return 60.0 / ((peak + shift) * hop / rate)


@pytest.mark.jack
@pytest.mark.slow
async def test_the_music_follows_a_daws_clock_and_its_start_stop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="moodscore.midi")
    with (
        dummy_jackd(monkeypatch, "moodscore-clock-in-test", period=128),
        peer("midi-clock", "daw") as daw,
    ):
        # No tempo ramp: the clock's tempo from the bar line it lands on, so short segments do.
        config = live_config(midi={"clock_in": True, "backend": "jack"}, engine={"tempo_ramp": 0.0})
        session = build(config, record_dir=tmp_path)
        _say(daw, {"bpm": 100})  # already running when moodscore starts, as a DAW's may be
        connect = asyncio.create_task(asyncio.to_thread(_connect_when_there))
        async with running(session) as task:
            await connect
            marks = {"100": 0.0}
            await asyncio.sleep(7.0)
            for step, command, seconds in (
                ("140", {"bpm": 140}, 8.0),
                ("stop", "stop", 4.5),  # a whole silent bar after the bar line Stop lands on
                ("continue", "continue", 3.0),
            ):
                marks[step] = session.engine.audio_time
                _say(daw, command)
                await asyncio.sleep(seconds)
            marks["end"] = session.engine.audio_time
        bars = task.result().bars
    (wav,) = await asyncio.to_thread(lambda: list(tmp_path.glob("*.wav")))
    audio, rate = soundfile.read(wav, dtype="float32")
    lead = 60 * 4  # seconds per bar is lead / bpm

    # The plans took the clock's tempo (the conductor yielded), one bar line or two after it
    # came, and the recording plays it: librosa hears it within 2 %.
    for step, nxt, bpm, before in (("100", "140", 100.0, 100.0), ("140", "stop", 140.0, 100.0)):
        followed = [b for b in bars if marks[step] <= b.audio_time < marks[nxt]]
        steady = [b for b in followed if b.plan.bpm == pytest.approx(bpm, rel=0.03)]
        assert steady, [(b.bar, round(b.audio_time, 2), b.plan.bpm) for b in followed]
        # Two and a half beats to be sure of the tempo, then the next bar line or the one after.
        assert steady[0].audio_time - marks[step] < 2.5 + 2 * lead / before
        start = steady[0].audio_time
        heard = _heard_bpm(audio, rate, start, marks[nxt], bpm)
        print(f"clock {bpm:g} bpm: plans {steady[-1].plan.bpm:g}, heard {heard:.2f} bpm")
        assert heard == pytest.approx(bpm, rel=0.02)

    # Stop: silence from a bar line after it; Continue: the music comes back at a bar line.
    def rms(start: float, end: float) -> float:
        part = audio[round(start * rate) : round(end * rate)]
        return float(np.sqrt(np.mean(part**2))) if len(part) else float("nan")

    loud = rms(marks["140"], marks["stop"])
    downbeats = [b.audio_time for b in bars if b.audio_time > marks["stop"]]
    silent = [
        (t, rms(t + 0.3, min(after, marks["continue"])))
        for t, after in itertools.pairwise(downbeats)
        if t + 0.6 < marks["continue"]
    ]
    assert any(level < loud / 30 for _, level in silent), (loud, silent)
    back = [t for t in downbeats if t > marks["continue"]]
    assert back and rms(back[0], back[0] + 1.0) > loud / 4, (loud, back)
    said = [r.getMessage() for r in caplog.records if r.name == "moodscore.midi"]
    assert any("Stop" in s for s in said) and any("Continue" in s for s in said), said


async def test_transport_and_a_clock_that_stops_reach_the_router_as_commands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Messages as rtmidi hands them over (bytes, seconds since the last): Start, a beat's
    worth of clock at 120 bpm, Stop; then no pulse for longer than the timeout: one warning
    and the conductor gets its own tempo back."""
    from daemon.control.commands import FollowTempoCommand, TransportCommand
    from daemon.control.hub import ControlHub
    from daemon.control.midi_clock import CLOCK, START, STOP, MidiClockIn

    hub = ControlHub()
    clock_in = MidiClockIn(hub=hub, timeout_s=0.4)
    clock_in._loop = asyncio.get_running_loop()
    watchdog = asyncio.create_task(clock_in._watchdog())
    clock_in._on_message(([START], 0.0))
    for _ in range(3 * 24):
        clock_in._on_message(([CLOCK], 0.5 / 24))
    clock_in._on_message(([STOP], 0.0))
    await asyncio.sleep(0.05)
    got = hub.take_all()
    assert got == [
        TransportCommand(action="play"),
        FollowTempoCommand(bpm=120.0),
        TransportCommand(action="stop"),
    ]
    with caplog.at_level(logging.WARNING, logger="moodscore.midi"):
        await asyncio.sleep(1.0)
    watchdog.cancel()
    assert hub.take_all() == [FollowTempoCommand(bpm=None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "no clock" in warnings[0], warnings
    assert clock_in.refused == 1


@pytest.mark.skipif(
    os.path.exists("/dev/snd/seq"),
    reason=hardware_reason("ALSA sequencer", "this machine has one; the test needs it missing"),
)
def test_an_unusable_backend_is_one_clear_line() -> None:
    from daemon.control.midi_clock import open_clock_input
    from daemon.errors import EngineError

    with pytest.raises(EngineError, match=r"MIDI clock in: backend .* does not work here") as err:
        open_clock_input("", "alsa")
    assert "\n" not in str(err.value)
