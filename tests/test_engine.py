"""The engine, rendered for real with pyo (offline backend) and judged by what a listener hears."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import threading
import time
from collections.abc import Iterable

import numpy as np
import pytest

from daemon.clock import STEPS_PER_BEAT, BarGrid, ScheduledNote, bar_length_samples
from daemon.config import EngineConfig
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.engine.envelopes import EnvShape, envelope_points, level_at
from daemon.engine.process import ProcessEngine
from daemon.engine.sequencer import Missing, Sequencer
from daemon.errors import EngineError
from daemon.messages import (
    CLOSED_HAT,
    KICK,
    OPEN_HAT,
    SNARE,
    BarScore,
    BarStarted,
    Beat,
    Chord,
    Layer,
    NoteEvent,
    Plan,
)

SR = 48000
OFFLINE = BackendChoice("offline", "test")
A_MINOR = Chord(root=9, quality="min", pitches=(57, 60, 64))


def plan(bar: int, *, bpm: float = 120.0, layers: int = 5) -> Plan:
    return Plan(
        bar=bar,
        bpm=bpm,
        layers=layers,
        tonic=9,
        mode="minor",
        density=0.5,
        valence=0.0,
        arousal=0.0,
    )


def band_notes(bar: int, *, drums: bool = True) -> tuple[NoteEvent, ...]:
    """One bar for the whole band: melody, bass, drums, a pad chord and a 16th arpeggio."""
    melody = (69, 72, 76, 74, 72, 71, 69, 67)
    notes = [NoteEvent(Layer.LEAD, melody[(i + bar) % 8], 100, i * 0.5, 0.45) for i in range(8)]
    notes += [NoteEvent(Layer.BASS, 45, 100, float(i), 0.8) for i in range(4)]
    if drums:
        notes += [
            NoteEvent(Layer.DRUMS, KICK if i % 2 == 0 else SNARE, 110, i, 0.2) for i in range(4)
        ]
        notes += [
            NoteEvent(Layer.DRUMS, OPEN_HAT if i % 4 == 3 else CLOSED_HAT, 90, i * 0.5, 0.2)
            for i in range(8)
        ]
    notes += [NoteEvent(Layer.PAD, p, 80, 0.0, 4.0) for p in A_MINOR.pitches]
    notes += [
        NoteEvent(Layer.ARP, A_MINOR.pitches[i % 3] + 12, 85, i * 0.25, 0.2) for i in range(16)
    ]
    return tuple(notes)


def bar_score(
    bar: int, notes: Iterable[NoteEvent] = (), *, bpm: float = 120.0, layers: int = 5
) -> BarScore:
    return BarScore(bar, plan(bar, bpm=bpm, layers=layers), A_MINOR, tuple(notes))


@dataclasses.dataclass
class Render:
    audio: np.ndarray  # [shape=(n, 2)]
    beats: list[Beat]
    bars: list[BarStarted]
    times: list[float]  # audio_time of each block
    engine: Engine


def render(
    scores: Iterable[BarScore],
    *,
    end: float | None,
    close: bool = True,
    realtime: bool = False,
    config: EngineConfig | None = None,
) -> Render:
    queue = ScoreQueue()
    for score in scores:
        queue.put(score)
    if close:
        queue.close()
    engine = Engine(
        config=config or EngineConfig(), backend=OFFLINE, scores=queue, realtime=realtime
    )
    blocks: list[np.ndarray] = []
    times: list[float] = []
    beats: list[Beat] = []
    bars: list[BarStarted] = []

    def on_audio(block: np.ndarray, audio_time: float) -> None:
        blocks.append(block)
        times.append(audio_time)

    engine.add_audio_listener(on_audio)
    engine.add_beat_listener(beats.append)
    engine.add_bar_listener(bars.append)
    if end is not None:
        engine.set_end_time(end)
    engine.start()
    assert engine.wait(timeout=60), "render did not finish"
    engine.stop()
    assert engine.error is None
    audio = np.concatenate(blocks) if blocks else np.zeros((0, 2), np.float32)
    return Render(audio, beats, bars, times, engine)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum of a mono signal (Hann window, 4x zero-padded) and its frequencies."""
    n = 4 * len(x)
    return np.fft.rfftfreq(n, 1 / SR), np.abs(np.fft.rfft(x * np.hanning(len(x)), n=n))


# --------------------------------------------------------------------------- the sound


def test_full_band_is_audible_and_never_reaches_full_scale() -> None:
    result = render([bar_score(b, band_notes(b)) for b in range(4)], end=8.0)
    audio = result.audio
    assert audio.shape == (8 * SR, 2)
    assert audio.dtype == np.float32
    assert rms(audio) > 0.03
    assert np.abs(audio).max() < 1.0
    # Both channels carry the mix, and they are not identical (the layers are placed).
    assert rms(audio[:, 0]) > 0.02 and rms(audio[:, 1]) > 0.02
    assert not np.allclose(audio[:, 0], audio[:, 1])


def test_hot_velocities_are_limited_below_full_scale() -> None:
    loud = [
        dataclasses.replace(note, velocity=127)
        for note in band_notes(0) + band_notes(1)
        if note.layer is not Layer.ARP
    ]
    stacked = [*loud, *(dataclasses.replace(n, pitch=n.pitch + 7) for n in loud)]
    config = EngineConfig(master_gain=1.0, reverb=1.0)
    result = render([bar_score(b, stacked) for b in range(2)], end=4.0, config=config)
    assert np.abs(result.audio).max() <= 0.98 + 1e-6


@pytest.mark.parametrize("pitch", [57, 69, 76])
def test_single_lead_note_sounds_at_its_pitch(pitch: int) -> None:
    note = NoteEvent(Layer.LEAD, pitch, 100, 0.0, 4.0)
    result = render([bar_score(0, [note], layers=1)], end=1.2)
    mono = result.audio.mean(axis=1)[int(0.05 * SR) : SR]
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    freqs, mags = spectrum(mono)
    # The lead is two saws detuned by ±0.4 % (7 cents): the peak is one of them.
    assert freqs[np.argmax(mags)] == pytest.approx(expected, rel=0.006)
    # Together they centre on the note.
    near = (freqs > expected * 0.95) & (freqs < expected * 1.05)
    centre = (mags[near] ** 2 * freqs[near]).sum() / (mags[near] ** 2).sum()
    assert centre == pytest.approx(expected, rel=0.002)


def test_note_onset_is_sample_accurate_inside_a_block() -> None:
    # 0.3 beats at 120 bpm = 7200 samples: 28.125 blocks of 256, deliberately not on a boundary.
    kick = NoteEvent(Layer.DRUMS, KICK, 120, 0.3, 0.25)
    result = render([bar_score(0, [kick], layers=3)], end=0.5)
    mono = np.abs(result.audio.mean(axis=1))
    onset = int(np.argmax(mono > 1e-4))
    assert mono[:7200].max() < 1e-6
    assert 7200 <= onset <= 7200 + 8


def test_velocity_changes_loudness_and_brightness() -> None:
    def lead(velocity: int) -> np.ndarray:
        note = NoteEvent(Layer.LEAD, 64, velocity, 0.0, 1.0)
        mono = render([bar_score(0, [note], layers=1)], end=0.5).audio.mean(axis=1)
        return mono[int(0.05 * SR) : int(0.3 * SR)]

    def centroid(x: np.ndarray) -> float:
        freqs, mags = spectrum(x)
        return float((mags * freqs).sum() / mags.sum())

    soft, hard = lead(40), lead(120)
    assert rms(hard) > 2 * rms(soft)
    assert centroid(hard) > 1.2 * centroid(soft)


def test_more_layers_add_energy_and_onsets() -> None:
    import librosa

    # The same notes all along; only the plan's layer count rises from 2 to 4 at bar 2.
    scores = [bar_score(b, band_notes(b), layers=2 if b < 2 else 4) for b in range(4)]
    mono = render(scores, end=8.0).audio.mean(axis=1)
    before, after = mono[int(2.5 * SR) : 4 * SR], mono[int(6.5 * SR) : 8 * SR]
    # Louder (the limiter holds the sum back a little) and much more percussive.
    assert rms(after) > 1.15 * rms(before)
    strength_before = librosa.onset.onset_strength(y=before, sr=SR).mean()
    strength_after = librosa.onset.onset_strength(y=after, sr=SR).mean()
    assert strength_after > 1.3 * strength_before


def test_leaving_layer_fades_over_one_beat_without_a_click() -> None:
    # A pad chord held across the bar line where the layer count drops from 4 to 3.
    pad = [NoteEvent(Layer.PAD, p, 100, 0.0, 8.0) for p in A_MINOR.pitches]
    scores = [bar_score(0, pad, layers=4), bar_score(1, layers=3)]
    mono = render(scores, end=3.0).audio.mean(axis=1)
    frame = int(0.05 * SR)
    levels = [rms(mono[2 * SR + i * frame : 2 * SR + (i + 1) * frame]) for i in range(10)]
    held = rms(mono[int(1.8 * SR) : 2 * SR])
    assert levels[0] > 0.7 * held  # no sudden cut at the bar line
    assert levels[4] < levels[0]  # fading during the beat (0.5 s at 120 bpm)...
    assert levels[9] < 0.25 * held  # ...and nearly gone by its end (the reverb still rings)


def test_steals_and_pitch_changes_do_not_click() -> None:
    from scipy import signal

    # Pad chords every half beat and lead notes every quarter beat, far more than either has
    # voices, so voices are stolen while they sound and retuned for the next pitch. A click is
    # broadband; both layers are low-passed, with next to nothing above 12 kHz.
    chords = [(57, 60, 64, 69), (53, 57, 60, 65), (55, 59, 62, 67), (52, 55, 59, 64)]
    pad = [NoteEvent(Layer.PAD, p, 110, i * 0.5, 1.5) for i in range(8) for p in chords[i % 4]]
    lead = [NoteEvent(Layer.LEAD, 60 + (i * 5) % 17, 64, i * 0.25, 0.3) for i in range(16)]
    mono = render([bar_score(0, pad + lead, layers=4)], end=2.5).audio.mean(axis=1)
    highpass = signal.butter(8, 12000, "highpass", fs=SR, output="sos")

    def worst_hf_frame(x: np.ndarray) -> float:
        high = signal.sosfilt(highpass, x.astype(np.float64))
        frames = high[: len(high) // 240 * 240].reshape(-1, 240)
        return float(np.sqrt((frames**2).mean(axis=1)).max())

    assert rms(mono) > 0.02
    # Envelope corners leave traces near -100 dBFS up there; a click is far above them.
    assert worst_hf_frame(mono) < 2e-5
    # The detector does hear a click: a step of 0.001 (-60 dBFS) added to the same audio.
    clicked = mono.copy()
    clicked[SR + 123 :] += 0.001
    assert worst_hf_frame(clicked) > 2e-5


# --------------------------------------------------------------------------- the clock


def test_beats_follow_the_grid_and_a_tempo_jump_at_a_bar() -> None:
    scores = [bar_score(b, bpm=120.0) for b in range(2)] + [
        bar_score(b, bpm=90.0) for b in range(2, 4)
    ]
    result = render(scores, end=4.0 + 2 * 8 / 3, config=EngineConfig(tempo_ramp=0.0))
    times = [beat.audio_time for beat in result.beats]
    expected = [i * 0.5 for i in range(8)] + [4.0 + i * 2 / 3 for i in range(8)]
    assert len(times) == 16
    assert times == pytest.approx(expected, abs=1.0 / SR)
    assert [b.index for b in result.beats] == list(range(16))
    assert [(b.bar, b.beat_in_bar) for b in result.beats[6:10]] == [(1, 2), (1, 3), (2, 0), (2, 1)]
    assert [b.bpm for b in result.beats] == [120.0] * 8 + [90.0] * 8
    bar_times = [started.audio_time for started in result.bars]
    assert bar_times == pytest.approx([0.0, 2.0, 4.0, 4.0 + 8 / 3], abs=1.0 / SR)
    assert [started.plan.bpm for started in result.bars] == [120.0, 120.0, 90.0, 90.0]


def test_a_tempo_change_ramps_across_the_bar_and_beats_integrate_it() -> None:
    scores = [bar_score(b, bpm=120.0) for b in range(2)] + [
        bar_score(b, bpm=90.0) for b in range(2, 5)
    ]
    grids: list[BarGrid] = []
    queue = ScoreQueue()
    for score in scores:
        queue.put(score)
    queue.close()
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    beats: list[Beat] = []
    engine.add_beat_listener(beats.append)
    engine.add_grid_listener(grids.append)
    engine.set_end_time(12.0)
    engine.start()
    assert engine.wait(30)
    engine.stop()
    ramp = grids[2]
    assert (ramp.bpm_from, ramp.bpm, ramp.ramp_steps) == (120.0, 90.0, 4 * STEPS_PER_BEAT)
    # The ramp bar lasts longer than a bar at 120 bpm and shorter than one at 90; a tempo
    # falling evenly over its four beats, 120 - 7.5 b bpm at beat b, takes
    # integral_0^4 60 / (120 - 7.5 b) db = 8 ln(120 / 90) s; 16 steps come within 0.1 %.
    assert 2.0 * SR < ramp.length < 8 / 3 * SR
    assert ramp.length / SR == pytest.approx(8 * math.log(120 / 90), rel=1e-3)
    assert grids[3].start == ramp.start + ramp.length
    # Beats land where the ramped tempo puts them, each a little later than the last.
    times = [beat.audio_time for beat in beats[8:13]]
    assert times == pytest.approx([ramp.time_at(i) for i in range(4)] + [grids[3].time_at(0)])
    gaps = np.diff([beat.audio_time for beat in beats[7:14]])
    assert (
        np.all(np.diff(gaps) > 0)
        and gaps[0] == pytest.approx(0.5)
        and gaps[-1] == pytest.approx(2 / 3, abs=1e-4)
    )
    # Each beat of the ramp bar reports the ramp's tempo there, to within one 16th-note step
    # (30 bpm over 16 steps).
    for i, beat in enumerate(beats[8:12]):
        assert beat.bpm == pytest.approx(120.0 - 7.5 * i, abs=30 / 16), i
    assert [b.bpm for b in beats[8:12]] == sorted((b.bpm for b in beats[8:12]), reverse=True)
    assert beats[12].bpm == 90.0 and grids[3].ramp_steps == 0


def test_bar_grid_arithmetic() -> None:
    flat = BarGrid.build(
        bar=0, start=0, sample_rate=SR, plan=plan(0, bpm=133.0), first_beat=0, bpm_from=None, ramp=1
    )
    assert flat.length == bar_length_samples(plan(0, bpm=133.0), SR)
    assert flat.tempo_segments() == [(0.0, 4.0, 133.0)]
    half = BarGrid.build(
        bar=1, start=flat.end, sample_rate=SR, plan=plan(1, bpm=100.0), first_beat=4,
        bpm_from=133.0, ramp=0.5,
    )  # fmt: skip
    segments = half.tempo_segments()
    assert len(segments) == 2 * STEPS_PER_BEAT + 1 and segments[-1] == (2.0, 4.0, 100.0)
    assert [a for a, _, _ in segments] == sorted(a for a, _, _ in segments)
    assert half.bpm_at(3.0) == 100.0 and 100.0 < half.bpm_at(1.9) < half.bpm_at(0.0) < 133.0
    # Positions past the bar continue at the new tempo (a note held over the bar line).
    assert half.seconds_at(5.0) - half.seconds_at(4.0) == pytest.approx(0.6)
    assert half.sample_at(4.0) == half.end


def test_a_layer_fades_from_the_exact_downbeat_sample() -> None:
    # 133 bpm puts the bar line mid-block. Until that sample the audio is identical whether or
    # not the pad leaves at bar 1; from it on, the fade makes them differ.
    pad = [NoteEvent(Layer.PAD, p, 100, 0.0, 8.0) for p in A_MINOR.pitches]
    stays = [bar_score(0, pad, bpm=133.0, layers=4), bar_score(1, bpm=133.0, layers=4)]
    leaves = [bar_score(0, pad, bpm=133.0, layers=4), bar_score(1, bpm=133.0, layers=3)]
    a = render(stays, end=2.5).audio
    b = render(leaves, end=2.5).audio
    downbeat = bar_length_samples(plan(0, bpm=133.0), SR)
    assert downbeat % 256 != 0
    assert np.array_equal(a[:downbeat], b[:downbeat])
    assert not np.array_equal(a[downbeat : downbeat + 8], b[downbeat : downbeat + 8])


def test_note_listeners_hear_each_bar_before_it_sounds() -> None:
    kick = NoteEvent(Layer.DRUMS, KICK, 120, 0.3, 0.25)
    queue = ScoreQueue()
    queue.put(bar_score(0, [kick], layers=3))
    queue.close()
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    heard: list[tuple[ScheduledNote, float]] = []
    engine.add_note_listener(lambda notes: heard.extend((n, engine.audio_time) for n in notes))
    blocks: list[np.ndarray] = []
    engine.add_audio_listener(lambda block, t: blocks.append(block))
    engine.set_end_time(0.5)
    engine.start()
    assert engine.wait(30)
    engine.stop()
    assert len(heard) == 1
    scheduled, clock = heard[0]
    assert scheduled.note == kick and scheduled.bar == 0
    assert scheduled.onset == 7200 and scheduled.time == pytest.approx(0.15)
    assert scheduled.end == 7200 + 6000  # a quarter beat at 120 bpm
    assert clock <= scheduled.time
    mono = np.abs(np.concatenate(blocks).mean(axis=1))
    assert 7200 <= int(np.argmax(mono > 1e-4)) <= 7208


def test_bar_grid_never_drifts_at_an_awkward_tempo() -> None:
    bpm = 133.0
    length = bar_length_samples(plan(0, bpm=bpm), SR)
    result = render([bar_score(b, bpm=bpm) for b in range(6)], end=6 * length / SR)
    assert [round(s.audio_time * SR) for s in result.bars] == [b * length for b in range(6)]


def test_events_come_from_the_block_that_contains_them() -> None:
    queue = ScoreQueue()
    for b in range(2):
        queue.put(bar_score(b))
    queue.close()
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    seen: list[tuple[float, float]] = []  # (beat time, clock when the listener ran)
    engine.add_beat_listener(lambda beat: seen.append((beat.audio_time, engine.audio_time)))
    engine.set_end_time(4.0)
    engine.start()
    assert engine.wait(30)
    engine.stop()
    block = 256 / SR
    for beat_time, clock in seen:
        assert clock <= beat_time < clock + block


def test_set_end_time_gives_exactly_that_many_samples() -> None:
    result = render([bar_score(b, band_notes(b)) for b in range(2)], end=2.5)
    assert result.audio.shape == (int(2.5 * SR), 2)
    assert result.engine.audio_time == pytest.approx(2.5, abs=256 / SR)
    # The last block is cut to size and the master has faded out by then.
    assert np.abs(result.audio[-24:]).max() < 0.01
    assert result.times == pytest.approx([i * 256 / SR for i in range(len(result.times))])


def test_render_is_deterministic() -> None:
    scores = [bar_score(b, band_notes(b)) for b in range(2)]
    first = render(scores, end=4.0).audio
    second = render(scores, end=4.0).audio
    assert np.array_equal(first, second)


# --------------------------------------------------------------------------- lifecycle


def test_stop_mid_render_is_prompt_and_idempotent() -> None:
    queue = ScoreQueue()
    queue.put(bar_score(0, band_notes(0)))
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    engine.start()
    # The render waits for bar 1, which never comes.
    deadline = time.monotonic() + 10
    while engine.audio_time < 2.0 - 256 / SR and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.wait(0.2)
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 1.0
    assert engine.wait(0)
    engine.stop()
    assert engine.error is None


def test_stop_from_another_thread_while_rendering() -> None:
    queue = ScoreQueue()
    for b in range(200):
        queue.put(bar_score(b, band_notes(b)))
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    engine.start()
    time.sleep(0.1)  # rendering by now
    started = time.monotonic()
    stopper = threading.Thread(target=engine.stop)
    stopper.start()
    stopper.join(5)
    took = time.monotonic() - started
    assert not stopper.is_alive()
    # A 30 ms fade rendered faster than real time, and the server shut down: well under 1 s.
    assert took < 1.0, took
    assert engine.wait(0)
    assert engine.audio_time < 400


def test_closed_queue_ends_the_render_after_a_tail() -> None:
    result = render([bar_score(b, band_notes(b)) for b in range(2)], end=None, close=True)
    assert result.engine.finished
    # Two bars, then the last notes ring for the tail before the engine stops.
    assert 4.0 < len(result.audio) / SR <= 4.0 + 2.5
    assert [s.bar for s in result.bars][:2] == [0, 1]


def test_closing_the_queue_wakes_a_waiting_render() -> None:
    queue = ScoreQueue()
    queue.put(bar_score(0))
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    engine.start()
    time.sleep(0.2)
    assert not engine.finished
    queue.close()
    assert engine.wait(10)
    engine.stop()


def test_stop_before_start_and_twice() -> None:
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=ScoreQueue(), realtime=False)
    engine.stop()
    engine.stop()
    assert engine.wait(0)


def test_one_engine_per_process_at_a_time() -> None:
    waiting = ScoreQueue()
    waiting.put(bar_score(0))
    first = Engine(config=EngineConfig(), backend=OFFLINE, scores=waiting, realtime=False)
    done = ScoreQueue()
    done.put(bar_score(0))
    done.close()
    second = Engine(config=EngineConfig(), backend=OFFLINE, scores=done, realtime=False)
    second.set_end_time(0.1)
    first.start()
    try:
        with pytest.raises(EngineError, match="another Engine"):
            second.start()
    finally:
        first.stop()
    third = Engine(config=EngineConfig(), backend=OFFLINE, scores=done, realtime=False)
    third.set_end_time(0.1)
    third.start()
    try:
        assert third.wait(10)
    finally:
        third.stop()


def test_live_underrun_replays_the_previous_bar() -> None:
    notes = [NoteEvent(Layer.LEAD, 69, 100, 0.0, 1.0)]
    result = render([bar_score(0, notes)], end=6.0, close=False, realtime=True)
    assert [s.bar for s in result.bars] == [0, 1, 2]
    assert [s.plan.bar for s in result.bars] == [0, 1, 2]
    assert result.engine.underruns == 2
    # Each replayed bar plays the note again at its downbeat.
    mono = np.abs(result.audio.mean(axis=1))
    for bar in (1, 2):
        assert mono[bar * 2 * SR + 2400 : bar * 2 * SR + 12000].max() > 0.05


def test_live_manual_backend_is_paced_to_the_wall_clock() -> None:
    queue = ScoreQueue()
    for b in range(4):
        queue.put(bar_score(b, band_notes(b)))
    config = EngineConfig(live_ahead_s=0.1)
    engine = Engine(
        config=config, backend=BackendChoice("manual", "test"), scores=queue, realtime=True
    )
    beats: list[Beat] = []
    engine.add_beat_listener(beats.append)
    started = time.perf_counter()
    engine.start()
    time.sleep(1.0)
    now = time.perf_counter()
    heard_from = engine.wall_time(0.0)  # when audio time 0 is heard (stepping began)
    ahead = engine.audio_time
    engine.stop()
    # Audio time 0 is heard after start() was called, once pyo had booted (how long that takes
    # depends on the machine's load, so the pacing is measured from there).
    assert heard_from is not None and started < heard_from < now - 0.5
    # Paced, not racing: the engine keeps live_ahead_s (0.1 s) ahead of the wall clock, give or
    # take a block and the stop's own lag.
    ahead -= now - heard_from
    assert -0.05 < ahead < 0.1 + 0.05
    # The beats (120 bpm) that lie before where it got, each once, on the grid.
    played = engine.audio_time
    assert [b.audio_time for b in beats] == pytest.approx([i * 0.5 for i in range(len(beats))])
    assert len(beats) in (math.ceil(played / 0.5) - 1, math.ceil(played / 0.5))
    assert engine.wait(0)
    assert engine.late_blocks == 0


def test_an_engine_process_that_dies_is_one_clear_error_and_a_clean_stop() -> None:
    # engine.process = "own": pyo plays in a child process; killed, the daemon's engine ends
    # with an error the session shows as one line, and stop() never hangs.
    queue = ScoreQueue()
    for b in range(4):
        queue.put(bar_score(b, band_notes(b)))
    engine = ProcessEngine(
        config=EngineConfig(), backend=BackendChoice("manual", "test"), scores=queue
    )
    heard: list[float] = []
    engine.add_audio_listener(lambda block, t: heard.append(float(np.abs(block).max())))
    engine.start()
    assert engine.pid is not None and engine.pid != os.getpid()
    deadline = time.monotonic() + 10
    while engine.audio_time < 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert max(heard) > 0.01  # the band plays through the shared ring
    os.kill(engine.pid, signal.SIGKILL)
    assert engine.wait(5.0)
    assert isinstance(engine.error, EngineError)
    assert "engine process ended unexpectedly (signal 9)" in str(engine.error)
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 3.0


def test_device_backends_cannot_render() -> None:
    with pytest.raises(EngineError, match="offline"):
        Engine(
            config=EngineConfig(),
            backend=BackendChoice("jack", "test"),
            scores=ScoreQueue(),
            realtime=False,
        )


# --------------------------------------------------------------------------- pure parts


def test_score_queue_hand_off() -> None:
    queue = ScoreQueue()
    queue.put(bar_score(0))
    queue.put(bar_score(1, [NoteEvent(Layer.LEAD, 60, 90, 0, 1)]))
    queue.put(bar_score(1, [NoteEvent(Layer.LEAD, 62, 90, 0, 1)]))  # a rewrite wins
    assert queue.get(1, timeout=0) is not None  # bar 0 is dropped as stale
    assert len(queue) == 0
    assert queue.get(2, timeout=0.01) is None
    queue.put(bar_score(4))
    assert queue.get(3, timeout=None) is None  # bar 3 was skipped: do not wait for it
    got: list[BarScore | None] = []
    waiter = threading.Thread(target=lambda: got.append(queue.get(5, timeout=None)))
    waiter.start()
    queue.close()
    waiter.join(2)
    assert got == [None]
    queue.put(bar_score(5))
    assert queue.get(5, timeout=0) is None


def test_sequencer_without_pyo() -> None:
    class Sink:
        def __init__(self) -> None:
            self.notes: list[tuple[int, int]] = []
            self.bars: list[float] = []

        def note_on(
            self,
            layer: Layer,
            pitch: int,
            velocity: int,
            *,
            block_start: int,
            onset: int,
            duration: float,
        ) -> None:
            assert block_start <= onset < block_start + 256
            self.notes.append((pitch, onset))

        def bar(self, grid: BarGrid, *, block_start: int, first: bool) -> None:
            assert block_start <= grid.start < block_start + 256
            self.bars.append(grid.bpm)

        def change(self, plan: Plan, *, block_start: int, at: int, fade_s: float) -> None:
            raise AssertionError("no patch was sent: the band never changes mid-bar")

    scores = {0: bar_score(0, [NoteEvent(Layer.LEAD, 60, 90, 1.5, 1.0)])}
    ended: list[int] = []
    sink = Sink()
    sequencer = Sequencer(
        sample_rate=SR,
        scores=lambda bar: scores.get(bar, Missing.CLOSED),
        sink=sink,
        on_bar=lambda started: None,
        on_beat=lambda beat: None,
        on_end=ended.append,
    )
    for start in range(0, 5 * SR, 256):
        sequencer.advance(start, 256)
    assert sink.notes == [(60, 36000)]
    assert ended == [2 * SR]
    assert sink.bars == [120.0, 120.0, 120.0]


def test_envelopes_start_and_end_at_zero() -> None:
    shape = EnvShape(attack=0.01, decay=0.1, sustain=0.6, release=0.2)
    env = envelope_points(shape, peak=0.8, delay=0.002, duration=0.5)
    times = [t for t, _ in env.points]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert env.points[0] == (0.0, 0.0) and env.points[-1][1] == 0.0
    assert env.onset == 0.002 and env.end == pytest.approx(0.002 + 0.5 + 0.2)
    assert level_at(env.points, 0.012) == pytest.approx(0.8)
    stolen = envelope_points(shape, peak=0.8, delay=0.0, duration=0.5, start_level=0.5)
    assert stolen.points[0] == (0.0, 0.5) and stolen.points[1][1] == 0.0
    assert stolen.onset >= 0.003
    short = envelope_points(shape, peak=1.0, delay=0.0, duration=0.004)
    assert [t for t, _ in short.points] == sorted({t for t, _ in short.points})
