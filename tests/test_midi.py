"""MIDI out: the file a DAW opens, the port a synth or lighting desk listens to, the clock."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest

from daemon.clock import BarGrid, ScheduledNote, Scheduling
from daemon.config import EngineConfig
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.errors import ConfigError, EngineError
from daemon.messages import KICK, SNARE, BarScore, Beat, Chord, Layer, NoteEvent, Plan
from daemon.outputs.midi import CHANNELS, MidiFileOutput, build_midi_file
from daemon.outputs.midi_port import MidiPortOutput, open_port, resolve_backend
from daemon.scenes import load_scene
from tests.hardware import hardware_reason
from tests.jack import dummy_jackd
from tests.sync_peers import peer

SR = 48000
OFFLINE = BackendChoice("offline", "test")
A_MINOR = Chord(root=9, quality="min", pitches=(57, 60, 64))


def plan(bar: int, bpm: float, *, layers: int = 5, scene: str = "default") -> Plan:
    return Plan(
        bar=bar,
        bpm=bpm,
        layers=layers,
        tonic=9,
        mode="minor",
        density=0.5,
        preset=load_scene(scene),
        valence=0.0,
        arousal=0.0,
    )


def band(bar: int) -> tuple[NoteEvent, ...]:
    """A kick on every beat, a snare on 2 and 4, a lead line, a bass and a pad chord."""
    notes = [NoteEvent(Layer.DRUMS, KICK, 120, float(b), 0.25) for b in range(4)]
    notes += [NoteEvent(Layer.DRUMS, SNARE, 100, b, 0.25) for b in (1.0, 3.0)]
    notes += [NoteEvent(Layer.LEAD, 69 + (i + bar) % 5, 96, i * 0.5, 0.5) for i in range(8)]
    notes += [NoteEvent(Layer.BASS, 45, 100, 0.0, 2.0), NoteEvent(Layer.BASS, 52, 90, 2.0, 2.0)]
    notes += [NoteEvent(Layer.PAD, p, 70, 0.0, 4.0) for p in A_MINOR.pitches]
    return tuple(notes)


def perform(
    scores: Sequence[BarScore], path: Path, *, end: float
) -> tuple[np.ndarray, list[Beat], list[ScheduledNote]]:
    """Render offline with a MIDI file writer listening; audio [shape=(n, 2)], beats, notes."""
    queue = ScoreQueue()
    for score in scores:
        queue.put(score)
    queue.close()
    engine = Engine(config=EngineConfig(), backend=OFFLINE, scores=queue, realtime=False)
    writer = MidiFileOutput(path)
    writer.attach(engine)
    blocks: list[np.ndarray] = []
    beats: list[Beat] = []
    notes: list[ScheduledNote] = []
    engine.add_audio_listener(lambda block, t: blocks.append(block))
    engine.add_beat_listener(beats.append)
    engine.add_note_listener(notes.extend)
    engine.set_end_time(end)
    engine.start()
    assert engine.wait(60)
    engine.stop()
    assert engine.error is None
    asyncio.run(writer.aclose())
    assert writer.written == path
    return np.concatenate(blocks), beats, notes


def tempo_map_seconds(midi: Any) -> Callable[[int], float]:
    """tick -> seconds from the file's own tempo track, as a DAW computes it."""
    changes: list[tuple[int, int]] = []
    tick = 0
    for message in midi.tracks[0]:
        tick += message.time
        if message.type == "set_tempo":
            changes.append((tick, message.tempo))

    def seconds(target: int) -> float:
        total, last, tempo = 0.0, 0, 500000
        for at, value in changes:
            if at > target:
                break
            total += mido.tick2second(at - last, midi.ticks_per_beat, tempo)
            last, tempo = at, value
        return total + mido.tick2second(target - last, midi.ticks_per_beat, tempo)

    return seconds


def note_ons(track: Any) -> list[tuple[int, Any]]:
    tick, found = 0, []
    for message in track:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            found.append((tick, message))
    return found


# --------------------------------------------------------------------------- the file


@pytest.mark.slow
def test_tempo_change_file_and_audio_agree_on_every_beat(tmp_path: Path) -> None:
    import librosa

    path = tmp_path / "ramp.mid"
    # A bar of silence first, so that the first kick is an onset the detector can see.
    scores = [
        BarScore(b, plan(b, 100.0 if b < 3 else 140.0), A_MINOR, band(b) if b else ())
        for b in range(10)
    ]
    audio, beats, _ = perform(scores, path, end=20.0)
    midi = mido.MidiFile(str(path))
    seconds = tempo_map_seconds(midi)
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos[0] == 600000 and tempos[-1] == pytest.approx(428571, abs=2)
    assert len(tempos) >= 16  # the ramp bar moves in 16th-note steps

    # 1. The engine's beat clock: every beat, through the ramp, to the microsecond.
    file_times = np.array([seconds(beat.index * midi.ticks_per_beat) for beat in beats])
    clock_times = np.array([beat.audio_time for beat in beats])
    assert len(beats) > 40
    assert np.abs(file_times - clock_times).max() < 1e-4

    # 2. What a listener hears: the kicks librosa finds in the audio sit where the file's kick
    # notes are, within 10 ms, before, during and after the ramp.
    drums = next(t for t in midi.tracks if t.name == "drums")
    kicks = np.array([seconds(tick) for tick, m in note_ons(drums) if m.note == KICK])
    mono = audio.mean(axis=1)
    onsets = librosa.onset.onset_detect(y=mono, sr=SR, hop_length=128, units="time")
    nearest = np.array([np.min(np.abs(onsets - k)) for k in kicks])
    assert len(kicks) == 36  # nine bars of four
    assert nearest.max() < 0.010, nearest.max()


def test_file_has_a_tempo_track_and_a_track_per_layer(tmp_path: Path) -> None:
    path = tmp_path / "band.mid"
    scores = [BarScore(b, plan(b, 120.0), A_MINOR, band(b)) for b in range(2)]
    _, _, notes = perform(scores, path, end=4.0)
    midi = mido.MidiFile(str(path))
    assert midi.type == 1
    assert [t.name for t in midi.tracks] == ["moodscore", "lead", "bass", "drums", "pad", "arp"]
    meta = {m.type: m for m in midi.tracks[0] if m.is_meta}
    assert meta["time_signature"].numerator == 4
    assert meta["key_signature"].key == "Am"
    assert meta["marker"].text == "scene: default"
    for track, layer in zip(midi.tracks[1:], ["lead", "bass", "drums", "pad", "arp"], strict=True):
        channels = {m.channel for m in track if not m.is_meta}
        if layer == "arp":
            assert channels <= {CHANNELS[Layer.ARP]}  # no arp notes, only its program
            continue
        assert channels == {CHANNELS[Layer(layer)]}
        ons = note_ons(track)
        assert len(ons) == sum(1 for n in notes if n.note.layer.value == layer)
    drums = next(t for t in midi.tracks if t.name == "drums")
    assert {m.channel for m in drums if not m.is_meta} == {9}  # GM channel 10
    assert midi.length == pytest.approx(4.0, abs=0.01)
    # Every note ends: as many note-offs as note-ons, none before its note-on.
    for track in midi.tracks[1:]:
        sounding: dict[int, int] = {}
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on":
                sounding[message.note] = sounding.get(message.note, 0) + 1
            elif message.type == "note_off":
                assert sounding.get(message.note, 0) > 0
                sounding[message.note] -= 1
        assert not any(sounding.values())


def test_notes_past_the_end_are_cut_and_a_repeated_pitch_restarts(tmp_path: Path) -> None:
    grid = BarGrid.build(
        bar=0, start=0, sample_rate=SR, plan=plan(0, 120.0), first_beat=0, bpm_from=None, ramp=1
    )
    long = NoteEvent(Layer.PAD, 60, 80, 0.0, 4.0)
    again = NoteEvent(Layer.PAD, 60, 80, 1.0, 1.0)  # the same pitch while the first sounds
    late = NoteEvent(Layer.LEAD, 72, 80, 3.5, 0.5)
    scheduled = [
        ScheduledNote(n, 0, grid.sample_at(n.offset), grid.sample_at(n.offset + n.duration), 0, 0)
        for n in (long, again, late)
    ]
    midi = build_midi_file([grid], scheduled, end_time=1.5)  # the audio ended at beat 3
    pad = next(t for t in midi.tracks if t.name == "pad")
    events = []
    tick = 0
    for message in pad:
        tick += message.time
        if message.type in ("note_on", "note_off"):
            events.append((tick, message.type))
    assert events == [(0, "note_on"), (480, "note_off"), (480, "note_on"), (960, "note_off")]
    lead = next(t for t in midi.tracks if t.name == "lead")
    assert not note_ons(lead)


def test_a_patched_bar_keeps_its_notes_before_the_patch_and_its_stingers(tmp_path: Path) -> None:
    """The file output keeps its notes as columns; a bar patched from beat 2 (a reaction) loses
    its notes from there on, as its new notes come again, and keeps those before and the bar
    before's."""
    grids = [
        BarGrid.build(
            bar=b, start=b * 2 * SR, sample_rate=SR, plan=plan(b, 120.0), first_beat=4 * b,
            bpm_from=None if b == 0 else 120.0, ramp=1,
        )
        for b in range(2)
    ]  # fmt: skip

    def scheduled(grid: BarGrid, notes: Sequence[NoteEvent]) -> list[ScheduledNote]:
        return [
            ScheduledNote(
                n, grid.bar, grid.sample_at(n.offset), grid.sample_at(n.offset + 0.5), 0, 0
            )
            for n in notes
        ]

    output = MidiFileOutput(tmp_path / "patched.mid")
    output._on_grid(grids[0])
    output._on_notes(scheduled(grids[0], band(0)))
    output._on_grid(grids[1])
    stinger = NoteEvent(Layer.STINGER, 84, 110, 2.5, 0.5)
    output._on_notes(scheduled(grids[1], [*band(1), stinger]))
    patched = dataclasses.replace(grids[1], plan=plan(1, 120.0, scene="combat"), patched_from=2.0)
    output._on_grid(patched)
    new_lead = NoteEvent(Layer.LEAD, 81, 100, 2.0, 1.0)
    output._on_notes(scheduled(patched, [new_lead]))
    assert output.write() is not None
    midi = mido.MidiFile(str(tmp_path / "patched.mid"))
    lead = [
        (tick // 480, m.note)
        for tick, m in note_ons(next(t for t in midi.tracks if t.name == "lead"))
    ]
    # Bar 0's eight lead notes, bar 1's four before beat 2, then the patch's one note.
    assert [beat for beat, _ in lead] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert lead[-1] == (6, 81)
    stingers = next(t for t in midi.tracks if t.name == "stinger")
    assert [m.note for _, m in note_ons(stingers)] == [84]
    drums = next(t for t in midi.tracks if t.name == "drums")
    assert len(note_ons(drums)) == 6 + 3  # bar 1 keeps its kicks on 1 and 2 and the snare on 2


# --------------------------------------------------------------------------- the port


class RecordingPort(mido.ports.BaseOutput):
    """A mido output port that keeps what it is sent, with the time it arrived."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.received: list[tuple[float, Any]] = []

    def _send(self, message: Any) -> None:
        self.received.append((time.perf_counter(), message))


class FakeEngine(Scheduling):
    """Hands a MIDI output the grids and notes an engine would, at times of our choosing, and
    schedules on the clock's thread as the engine does (the engine's own ``call_at``)."""

    playing = True

    def __init__(self, wall_time: Callable[[float], float | None]) -> None:
        self.grid_listeners: list[Callable[[BarGrid], None]] = []
        self.note_listeners: list[Callable[[Sequence[ScheduledNote]], None]] = []
        self._wall_time = wall_time

    def wall_time(self, audio_time: float) -> float | None:
        return self._wall_time(audio_time)

    def add_grid_listener(self, fn: Callable[[BarGrid], None]) -> None:
        self.grid_listeners.append(fn)

    def add_note_listener(self, fn: Callable[[Sequence[ScheduledNote]], None]) -> None:
        self.note_listeners.append(fn)

    def bar(self, grid: BarGrid, notes: Sequence[NoteEvent]) -> None:
        for on_grid in self.grid_listeners:
            on_grid(grid)
        placed = []
        for note in notes:
            onset = grid.sample_at(note.offset)
            end = grid.sample_at(note.offset + note.duration)
            placed.append(ScheduledNote(note, grid.bar, onset, end, onset / SR, end / SR))
        for on_notes in self.note_listeners:
            on_notes(placed)


def test_port_output_plays_in_step_with_clock_start_and_panic() -> None:
    port = RecordingPort()
    t0 = time.perf_counter() + 0.1
    output = MidiPortOutput(port=port, clock=True)
    engine = FakeEngine(lambda t: t0 + t)
    output.attach(engine)  # type: ignore[arg-type]
    grid = BarGrid.build(
        bar=0, start=0, sample_rate=SR, plan=plan(0, 240.0), first_beat=0, bpm_from=None, ramp=1
    )
    held = NoteEvent(Layer.PAD, 57, 70, 0.0, 8.0)  # still sounding when we stop
    kick = NoteEvent(Layer.DRUMS, KICK, 110, 1.0, 0.25)
    lead = NoteEvent(Layer.LEAD, 69, 90, 2.0, 1.0)
    engine.bar(grid, [held, kick, lead])
    time.sleep(0.1 + 1.0 + 0.15)  # the whole 4-beat bar at 240 bpm, and a little more
    asyncio.run(output.aclose())
    asyncio.run(output.aclose())
    engine.close_scheduler()
    got = [(t - t0, m) for t, m in port.received]
    types = [m.type for _, m in got]
    assert types[:5] == ["program_change"] * 5  # lead, bass, pad, arp, stingers
    assert types[5:8] == ["songpos", "start", "clock"]
    clocks = [t for t, m in got if m.type == "clock"]
    assert len(clocks) == 4 * 24
    assert np.mean(np.diff(clocks)) == pytest.approx(0.25 / 24, rel=0.05)

    def first(kind: str, note: int) -> tuple[float, Any]:
        return next((t, m) for t, m in got if m.type == kind and getattr(m, "note", -1) == note)

    kick_at, kick_on = first("note_on", KICK)
    assert kick_on.channel == 9 and abs(kick_at - 0.25) < 0.01
    assert abs(first("note_off", KICK)[0] - 0.3125) < 0.01
    lead_at, lead_on = first("note_on", 69)
    assert lead_on.channel == CHANNELS[Layer.LEAD] and abs(lead_at - 0.5) < 0.01
    assert abs(first("note_off", 69)[0] - 0.75) < 0.01
    # Panic on close: the held pad note is released, every channel hears All Notes Off, and
    # the clock stops.
    tail = [m for _, m in got if m.type != "clock"][-(2 * len(CHANNELS) + 2) :]
    assert any(m.type == "note_off" and m.note == 57 for m in tail)
    all_off = {m.channel for _, m in got if m.type == "control_change" and m.control == 123}
    assert all_off == set(CHANNELS.values())
    assert "stop" in types[-16:]
    assert port.closed


def test_unknown_backend_is_clear() -> None:
    with pytest.raises(ConfigError, match="unknown MIDI backend 'coreaudio'"):
        resolve_backend("coreaudio")
    assert resolve_backend("jack") == "mido.backends.rtmidi/UNIX_JACK"


@pytest.mark.skipif(
    os.path.exists("/dev/snd/seq"),
    reason=hardware_reason("ALSA sequencer", "this machine has one; the test needs it missing"),
)
def test_unusable_alsa_is_clear() -> None:
    with pytest.raises(EngineError, match="does not work here"):
        open_port("", "alsa")


# --------------------------------------------------------------------------- JACK


@pytest.fixture
def jack_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A dummy-driver jackd (128-frame periods) under a name of its own, stopped afterwards.

    RtMidi hands JACK every message at the start of a period, so the period bounds how evenly
    clock pulses can arrive: 128 frames is 2.7 ms.
    """
    with dummy_jackd(monkeypatch, "moodscore-midi-test", period=128) as name:
        yield name


def _jack_port(prefix: str) -> str:
    listing = subprocess.run(["jack_lsp"], capture_output=True, text=True, check=True).stdout
    return next(line for line in listing.splitlines() if line.startswith(prefix))


@pytest.mark.jack
def test_named_port_that_does_not_exist_lists_the_ports(jack_server: str, tmp_path: Path) -> None:
    # The synth is a process of its own, as every JACK MIDI listener here is: RtMidi unregisters
    # a JACK input port while its process callback may still read it, and that race, rare as it
    # is, segfaults whoever closes the port (it once took a whole pytest pass with it).
    listing = r"no MIDI output port 'nope'.*available: .*synth"
    with (
        peer("midi-in", "synth", str(tmp_path / "synth.jsonl")),
        pytest.raises(ConfigError, match=listing),
    ):
        open_port("nope", "jack")


@pytest.mark.jack
@pytest.mark.slow
def test_midi_clock_over_jack_keeps_time(jack_server: str, tmp_path: Path) -> None:
    """10 s of MIDI clock from the live engine, sent to JACK and received on a JACK MIDI input.

    The engine runs live in manual mode (what a machine without a sound card uses). With pyo on
    the dummy JACK driver too, that driver's own timing on this 2-core machine dominates: at
    128-frame periods it falls about 1 % behind real time, at 256 frames the period alone
    makes pulses arrive 1.6 ms apart from even.

    Jitter is a property of the whole machine: a burst of other work on both cores (a test
    that ran just before, a build) can push a few pulses late. One measurement taken on a busy
    box is therefore repeated once; the clock must keep time in the second.
    """
    bpm = 120.0
    intervals = _clock_intervals(tmp_path / "desk.jsonl", bpm=bpm, seconds=10.0)
    if intervals.std() >= 0.002:
        intervals = _clock_intervals(tmp_path / "desk-again.jsonl", bpm=bpm, seconds=10.0)
    expected = 60.0 / (24 * bpm)
    assert len(intervals) == int(10.0 * bpm / 60 * 24) - 1
    assert intervals.mean() == pytest.approx(expected, rel=0.01)
    assert intervals.std() < 0.002, f"jitter {intervals.std() * 1e3:.2f} ms"


def _clock_intervals(out: Path, *, bpm: float, seconds: float) -> np.ndarray:
    """Seconds between the MIDI clock pulses received over ``seconds`` (after the first beat)."""
    # The desk reads rtmidi's arrival times (mido drops them): each is taken in the JACK process
    # cycle that delivered the message, free of Python's scheduling.
    port = open_port("", "jack")
    queue = ScoreQueue()
    for bar in range(12):
        notes = (NoteEvent(Layer.DRUMS, KICK, 100, 0.0, 0.25),)
        queue.put(BarScore(bar, plan(bar, bpm, layers=3), A_MINOR, notes))
    engine = Engine(
        config=EngineConfig(),
        backend=BackendChoice("manual", "test"),
        scores=queue,
        realtime=True,
    )
    output = MidiPortOutput(port=port, clock=True)
    output.attach(engine)
    with peer("midi-in", "desk", str(out)):
        subprocess.run(["jack_connect", _jack_port("moodscore-midi:"), "desk:in"], check=True)
        try:
            engine.start()
            time.sleep(seconds + 1.5)
        finally:
            asyncio.run(output.aclose())  # the panic comes before pyo stops, as in a session
            engine.stop()
            time.sleep(0.05)  # a few JACK cycles for the last messages to arrive
    arrivals = [(r["t"], r["data"][0]) for r in map(json.loads, out.read_text().splitlines())]
    statuses = [status for _, status in arrivals]
    assert 0xFA in statuses  # Start
    assert 0xFC in statuses  # Stop
    clocks = np.array([t for t, status in arrivals if status == 0xF8])
    window = clocks[24 : 24 + int(seconds * bpm / 60 * 24)]  # skip the first beat
    return np.diff(window)


@pytest.mark.jack
def test_midi_transport_over_jack_stops_and_continues_with_the_music(
    jack_server: str, tmp_path: Path
) -> None:
    """A JACK MIDI client sees Start, then Stop at the bar a transport stop silences, then Song
    Position and Continue at the bar that plays again, at the right place in the clock."""
    out = tmp_path / "daw.jsonl"
    port = open_port("", "jack")
    queue = ScoreQueue()
    for bar in range(8):  # a bar a second at 240 bpm
        queue.put(BarScore(bar, plan(bar, 240.0, layers=3), A_MINOR, band(bar)))
    engine = Engine(
        config=EngineConfig(), backend=BackendChoice("manual", "test"), scores=queue, realtime=True
    )
    output = MidiPortOutput(port=port, clock=True)
    output.attach(engine)
    with peer("midi-in", "daw", str(out)):
        subprocess.run(["jack_connect", _jack_port("moodscore-midi:"), "daw:in"], check=True)
        try:
            engine.start()
            time.sleep(1.4)
            engine.set_playing(False)  # bar 2 falls silent
            time.sleep(1.0)
            engine.set_playing(True)  # bar 3 plays again
            time.sleep(2.0)
        finally:
            asyncio.run(output.aclose())
            engine.stop()
            time.sleep(0.05)
    received = [(r["t"], r["data"]) for r in map(json.loads, out.read_text().splitlines())]
    names = {0xF2: "songpos", 0xFA: "start", 0xFC: "stop", 0xFB: "continue"}
    transport = [(t, m) for t, m in received if m[0] in names]
    assert [names[m[0]] for _, m in transport] == [
        "songpos", "start", "stop", "songpos", "continue", "stop"
    ]  # fmt: skip
    # Stop on bar 2's downbeat, Continue on bar 3's, a bar apart (the Start, sent as the engine
    # boots, may come a little late).
    times = [t for t, _ in transport]
    assert times[2] - times[1] == pytest.approx(2.0, abs=0.03)
    assert times[4] - times[2] == pytest.approx(1.0, abs=0.01)
    # Song Position counts sixteenth notes from the session's start: 3 bars of 16.
    songpos = transport[3][1]
    assert songpos[1] | (songpos[2] << 7) == 3 * 16
    # The pulses ran on while the music was stopped (96 a bar; a loaded dummy JACK server drops
    # a few in its late cycles): a follower keeps the tempo.
    assert sum(1 for t, m in received if m[0] == 0xF8 and times[2] < t < times[4]) >= 80
