"""The seams of a session, checked on real runs: the beat map output, a preset edited while the
music plays, and the order in which outputs close."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from daemon.cli import main
from daemon.clock import MusicClock
from daemon.messages import KICK, BarStarted, Layer
from daemon.outputs.base import Output, Stage
from daemon.outputs.midi import MidiFileOutput
from tests.live import build, live_config, running
from tests.test_midi import tempo_map_seconds

pytestmark = pytest.mark.slow


def test_the_beat_map_agrees_with_the_midi_files_tempo_map(tmp_path: Path) -> None:
    """``render --beats``: every beat where the MIDI file's tempo map (tempo ramps included)
    puts it, within 1 ms, and the bars say what plays."""
    beats_path, midi_path = tmp_path / "beats.json", tmp_path / "music.mid"
    code = main(
        ["render", "demo", "--duration", "24", "--seed", "4", "-o", str(tmp_path / "music.wav"),
         "--midi", str(midi_path), "--beats", str(beats_path)]
    )  # fmt: skip
    assert code == 0
    document = json.loads(beats_path.read_text())
    assert document["format"] == "moodscore-beats" and document["version"] == 1
    beats = document["beats"]
    bars = document["bars"]
    times = np.array([b["time"] for b in beats])
    assert np.all(np.diff(times) > 0) and times[-1] < document["duration"] <= 24.0 + 1e-6
    assert [b["index"] for b in beats] == list(range(len(beats)))
    # The demo grows busier: the tempo changes, so the map crosses tempo ramps.
    assert len({b["bpm"] for b in beats}) > 3
    midi = mido.MidiFile(str(midi_path))
    seconds_at = tempo_map_seconds(midi)
    file_beats = np.array([seconds_at(i * midi.ticks_per_beat) for i in range(len(beats))])
    assert np.max(np.abs(file_beats - times)) < 0.001
    # Each bar: its downbeat is a beat of the map, and it names its scene, layers and key.
    downbeats = {b["time"] for b in beats if b["downbeat"]}
    assert {bar["time"] for bar in bars} == downbeats
    assert all(bar["scene"] and 1 <= bar["layers"] <= 5 and bar["key"] for bar in bars)


def _preset(drums: str, lead: str, pad: str) -> str:
    return (
        'description = "edited while playing"\nbpm_min = 120\nbpm_max = 120\n'
        f'lead = "{lead}"\npad = "{pad}"\ndrums = "{drums}"\nlayers_min = 5\nlayers_max = 5\n'
    )


async def test_a_preset_edited_while_playing_changes_sounds_drums_and_midi_at_one_bar(
    tmp_path: Path,
) -> None:
    """Edit the preset file in force during ``run``: the band's sounds, the drum pattern and the
    MIDI programs all change at the same bar line."""
    presets = tmp_path / "presets"
    presets.mkdir()
    preset = presets / "stage.toml"
    preset.write_text(_preset("backbeat", "saw", "strings"))
    config = live_config(conductor={"scene": "stage", "preset_dirs": [str(presets)]})
    # The test looks into the band, which is in this process only with the engine "shared".
    config = config.replace("web", enabled=False).replace("engine", process="shared")
    session = build(config, seconds=30.0)
    midi = MidiFileOutput(tmp_path / "live.mid")
    session.outputs.append(midi)
    sounds: dict[int, tuple[str, str]] = {}

    def remember_sounds(started: BarStarted) -> None:
        # On the audio thread, right after the band applied the bar's plan: what it plays now.
        band = session.engine._band
        if band is not None:
            lead = band.current[Layer.LEAD]
            name = next(n for n, sound in band.sounds[Layer.LEAD].items() if sound is lead)
            sounds[started.bar] = (name, band.drums.style)

    session.engine.add_bar_listener(remember_sounds)
    async with running(session):
        await asyncio.sleep(3.0)
        edited_at = session.planner.sounding.bar if session.planner.sounding else 0
        preset.write_text(_preset("four_on_floor", "flute", "organ"))
        for _ in range(100):
            scores = [s for s in session.planner.written if s.plan.preset.lead == "flute"]
            sounding = session.planner.sounding
            if scores and sounding is not None and sounding.bar > scores[0].bar + 1:
                break
            await asyncio.sleep(0.1)
    first_new = min(s.bar for s in session.planner.written if s.plan.preset.lead == "flute")
    # The next bar still to be planned (the look-ahead re-plans nothing on its own).
    assert edited_at < first_new <= edited_at + 3
    # The band plays the new sounds and drum style from that bar, not before.
    assert sounds[first_new - 1] == ("saw", "backbeat")
    assert sounds[first_new] == ("flute", "four_on_floor")
    # The drums' notes follow the new pattern from that bar: a kick on every beat.
    by_bar = {s.bar: s for s in session.planner.written}
    kicks = sorted(
        n.offset for n in by_bar[first_new].notes if n.layer is Layer.DRUMS and n.pitch == KICK
    )
    assert kicks[:4] == [0.0, 1.0, 2.0, 3.0]
    # MIDI: the programs change at that bar's downbeat, on every pitched channel.
    written = mido.MidiFile(str(tmp_path / "live.mid"))
    beats_per_bar = 4
    flute_at = _program_tick(written, channel=0, program=73)
    organ_at = _program_tick(written, channel=2, program=16)
    assert flute_at == organ_at == first_new * beats_per_bar * written.ticks_per_beat


def _program_tick(midi: mido.MidiFile, *, channel: int, program: int) -> int | None:
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if (
                message.type == "program_change"
                and message.channel == channel
                and message.program == program
            ):
                return tick
    return None


class _Witness(Output):
    """Writes down when it closes, and whether the engine still ran then."""

    def __init__(self, stage: Stage, log: list[tuple[str, bool]]) -> None:
        self.stage = stage  # type: ignore[misc]
        self.name = f"witness-{stage.name}"  # type: ignore[misc]
        self._log = log

    def _attach(self, clock: MusicClock) -> None:
        self._engine = clock

    async def _aclose(self) -> None:
        engine = self._engine
        self._log.append((self.stage.name, not engine.finished))  # type: ignore[attr-defined]


async def test_outputs_close_in_the_documented_order_around_pyos_stop() -> None:
    """Stopping a live session: SOUND outputs close while pyo still runs; then pyo stops; then
    RECORDING, PEERS and ANNOUNCE, in that order."""
    closed: list[tuple[str, bool]] = []
    session = build(live_config(web={"enabled": False}), seconds=60.0)
    session.outputs.extend(_Witness(stage, closed) for stage in reversed(Stage))  # out of order
    started = time.perf_counter()
    async with running(session):
        await asyncio.sleep(1.0)
    assert time.perf_counter() - started < 20  # the stop was prompt, not the duration
    assert closed == [
        ("SOUND", True),
        ("RECORDING", False),
        ("PEERS", False),
        ("ANNOUNCE", False),
    ]
