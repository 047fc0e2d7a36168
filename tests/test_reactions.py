"""The music answers a cut like a game's own score: on the next beat, without flickering.

Real renders of real video files (the demo scene drawn into H.264 clips), measured from the
rendered audio (the first sample that differs from a render of the same clip without the cut),
the MIDI file (music21's key analysis) and the engine's own grid.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import mido
import numpy as np
import pytest

from daemon.app import build_core, build_session
from daemon.bench.reaction import measure_step
from daemon.clock import BarGrid, MusicClock
from daemon.config import Config, load_config
from daemon.engine import BackendChoice
from daemon.messages import Layer
from daemon.outputs.base import Output, Stage
from daemon.outputs.midi import CHANNELS, MidiFileOutput
from daemon.sources import open_source
from daemon.sources.demo import draw_demo_frame, write_demo_clip
from tests.test_mqtt import Broker, Subscriber, broker, subscribers  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

OFFLINE = BackendChoice("offline", "test")


def _config() -> Config:
    return load_config(use_user_file=False).replace("mqtt", enabled=False)


class _Grids(Output):
    """Keeps every grid the engine announces: bars as they start, and patched bars."""

    stage = Stage.RECORDING
    name = "grids"

    def __init__(self) -> None:
        self.grids: list[BarGrid] = []

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self.grids.append)

    async def _aclose(self) -> None:
        pass


def _render(config: Config, clip: Path, *outputs: Output) -> tuple[Any, Any, list[dict]]:
    """Render ``clip`` with ``outputs``: the stages, the report and the cues answered."""
    core = build_core(config, backend=OFFLINE, render=True)
    cues: list[dict] = []
    core.hub.add_event_listener(lambda name, payload: cues.append(payload))
    source = open_source(str(clip), config.source, paced=False)
    session = build_session(
        config, core, source=source, outputs=list(outputs), render=True, duration=None
    )
    return core, asyncio.run(session.run()), cues


@pytest.mark.parametrize(
    ("before", "after", "bpm"), [(0.0, 1.0, 70.0), (0.0, 1.0, 150.0), (1.0, 0.0, 110.0)]
)
def test_a_cut_is_heard_on_the_next_beat_and_half_done_within_a_bar(
    before: float, after: float, bpm: float, tmp_path: Path
) -> None:
    step = measure_step(_config(), before=before, after=after, bpm=bpm, scratch=tmp_path)
    beat, bar = 60.0 / bpm, 4 * 60.0 / bpm
    assert step.first_change_s is not None and 0.0 <= step.first_change_s <= beat + 0.3, step
    assert step.half_done_s is not None
    limit = bar + 0.5 if after > before else 4 * bar  # a fall may release slowly
    assert step.half_done_s <= limit, step


def _flash_clip(path: Path, *, seconds: float, at: float, fps: int = 30) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for index in range(round(seconds * fps)):
            t = index / fps
            image = draw_demo_frame(t, intensity=0.2, width=640, height=360)
            if index == round(at * fps):
                image = np.full_like(image, 255)  # one white frame: lightning
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_single_white_frame_changes_nothing_but_may_earn_one_stinger(tmp_path: Path) -> None:
    clip = _flash_clip(tmp_path / "flash.mp4", seconds=16.0, at=8.0)
    core, report, _ = _render(_config(), clip)
    plans = {(b.plan.bpm, b.plan.layers) for b in report.bars}
    assert len(plans) == 1, plans
    assert core.planner.reactor.stingers_played <= 1
    assert core.planner.reactor.patches_made == 0


def test_a_picture_flickering_every_third_of_a_second_gives_steady_music(tmp_path: Path) -> None:
    """Calm and intense alternate every 0.3 s: once the music has found its level (the first
    windows), tempo and layers hold."""
    clip = write_demo_clip(
        tmp_path / "flicker.mp4",
        duration=30.0,
        intensity=lambda t: 0.0 if int(t / 0.3) % 2 == 0 else 1.0,
    )
    grids = _Grids()
    _, report, _ = _render(_config(), clip, grids)
    settled = [(b.plan.bpm, b.plan.layers) for b in report.bars if b.audio_time >= 8.0]
    assert len(settled) >= 6 and len(set(settled)) == 1, settled
    assert not [g for g in grids.grids if g.patched_from is not None and g.time_at(0) >= 8.0]


def test_stingers_are_in_the_key_and_land_on_the_beat(tmp_path: Path) -> None:
    """Every stinger note is in the key music21 hears in the music around it (the MIDI file),
    and its accent falls on the engine's grid (a beat, or an 8th when the beat was far)."""

    clip = write_demo_clip(
        tmp_path / "steps.mp4", duration=36.0, intensity=lambda t: float(int(t / 6.0) % 2)
    )
    midi = MidiFileOutput(tmp_path / "steps.mid")
    grids = _Grids()
    config = _config().replace("conductor", stinger_interval_s=2.0)
    core, _, _ = _render(config, clip, midi, grids)
    assert core.planner.reactor.stingers_played >= 3
    notes = _notes_by_track(tmp_path / "steps.mid")
    stingers = notes.pop("stinger")
    music = [n for name, found in notes.items() if name != "drums" for n in found]
    checked = 0
    for beat, pitch in stingers:
        # The key a listener hears around the stinger: music21's analysis of the band's notes
        # within a bar either side.
        around = [p for b, p in music if abs(b - beat) <= 4.0]
        key = _music21_key(around)
        scale = {p.pitchClass for p in key.getScale().getPitches()}
        assert pitch % 12 in scale, (beat, pitch, key)
        checked += 1
    assert checked >= 9
    # The accents (each stinger's chord) land on the grid: a beat, or the 8th after one when
    # the beat was far.
    sr = config.engine.sample_rate
    eighths = {
        round(g.time_at(k / 2), 4)
        for g in grids.grids
        if g.patched_from is None
        for k in range(2 * g.beats + 1)
    }
    accents = _stinger_accents(tmp_path / "steps.mid")
    assert len(accents) >= 3
    for time in accents:
        nearest = min(eighths, key=lambda b: abs(b - time))
        assert abs(nearest - time) <= 256 / sr + 1e-4, (time, nearest)


def _notes_by_track(path: Path) -> dict[str, list[tuple[float, int]]]:
    """(beat, pitch) of every note in each named track of a MIDI file."""
    midi = mido.MidiFile(str(path))
    found: dict[str, list[tuple[float, int]]] = {}
    for track in midi.tracks:
        tick, notes = 0, []
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.velocity:
                notes.append((tick / midi.ticks_per_beat, message.note))
        found[track.name] = notes
    return found


def _music21_key(pitches: list[int]) -> Any:
    from music21 import key as _key
    from music21 import note, stream

    part: Any = stream.Stream([note.Note(p) for p in pitches])
    found = part.analyze("key")
    assert isinstance(found, _key.Key)
    return found


def _stinger_accents(path: Path) -> list[float]:
    """Audio times of the stinger chords (three or more notes at once) in a MIDI file."""
    from tests.test_midi import tempo_map_seconds

    midi = mido.MidiFile(str(path))
    seconds = tempo_map_seconds(midi)
    channel = CHANNELS[Layer.STINGER]
    onsets: dict[int, int] = {}
    for track in midi.tracks:
        tick = 0
        for message in track:
            tick += message.time
            if message.type == "note_on" and message.channel == channel and message.velocity:
                onsets[tick] = onsets.get(tick, 0) + 1
    return [seconds(tick) for tick, count in sorted(onsets.items()) if count >= 3]


def _rule_preset(folder: Path, exit_: str) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "rules.toml").write_text(
        "bpm_min = 100\nbpm_max = 160\nlayers_min = 1\nlayers_max = 5\n\n[transitions]\n"
        f'rise = {{ exit = "{exit_}", fade_beats = 0.25 }}\n'
    )
    return "rules"


@pytest.mark.parametrize("exit_", ["bar", "immediate", "bars:2"])
def test_transition_rules_from_a_preset_file_are_obeyed(exit_: str, tmp_path: Path) -> None:
    presets = tmp_path / "presets"
    scene = _rule_preset(presets, exit_)
    config = _config().replace("conductor", scene=scene, preset_dirs=[str(presets)])
    clip = write_demo_clip(
        tmp_path / "rise.mp4", duration=20.0, intensity=lambda t: 0.0 if t < 10.0 else 1.0
    )
    grids = _Grids()
    _, _, cues = _render(config, clip, grids)
    rises = [c["source_time"] for c in cues if c["kind"] == "rise" and c["seen_in"] == "window"]
    window_cue = next(t for t in rises if t >= 10.0)  # the rise the plan follows
    bars = [g for g in grids.grids if g.patched_from is None]
    patched = [g for g in grids.grids if g.patched_from is not None]
    layers_before = next(g.plan.layers for g in reversed(bars) if g.time_at(0) <= window_cue)
    if exit_ == "immediate":
        assert patched, "the change comes inside the bar"
        first = patched[0]
        start = first.time_at(first.patched_from or 0.0)
        beat = 60.0 / first.plan.bpm
        assert window_cue <= start <= window_cue + beat + 1e-6
        assert first.plan.layers > layers_before
        return
    assert not patched
    changed = next(g for g in bars if g.time_at(0) > window_cue and g.plan.layers > layers_before)
    lines = [g for g in bars if g.time_at(0) > window_cue]
    wanted = 1 if exit_ == "bar" else 2
    assert changed.bar == lines[wanted - 1].bar, (changed.bar, [g.bar for g in lines])


@pytest.mark.alone  # live, paced to the wall clock: the rest of this module renders offline
@pytest.mark.mosquitto
async def test_a_live_cut_is_a_cue_on_mqtt_and_in_the_web_state(
    broker: Broker,  # noqa: F811
    subscribers: Callable[[Broker, list[str]], Subscriber],  # noqa: F811
) -> None:
    """Live (``run`` with the demo stepping from calm to intense every 4 s): the cut is
    announced on ``event/cue`` within a second, answered by a stinger on the next beat, and the
    web state shows it."""
    import aiohttp

    from daemon.app import LiveRequest, build_live
    from daemon.bench.reaction import _StepSource
    from daemon.messages import Layer
    from daemon.web import WebServer

    sub = subscribers(broker, ["moodscore/test/event/cue"])
    config = load_config(use_user_file=False).replace("engine", backend="manual")
    config = config.replace(
        "mqtt", enabled=True, host="127.0.0.1", port=broker.port, instance="test", discovery=False
    )
    config = config.replace("web", enabled=True, host="127.0.0.1", port=0)
    source = _StepSource.open(config, period=4.0)
    session = build_live(config, LiveRequest(duration=10.0), source, BackendChoice("manual", "t"))
    stingers: list[float] = []
    session.engine.add_note_listener(
        lambda notes: stingers.extend(n.time for n in notes if n.note.layer is Layer.STINGER)
    )
    server = next(o for o in session.outputs if isinstance(o, WebServer))
    state: dict[str, Any] = {}

    async def look() -> None:
        await asyncio.sleep(7.0)
        url = f"http://127.0.0.1:{server.port}/api/state"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            state.update(await response.json())

    looking = asyncio.create_task(look())
    await session.run()
    await looking
    lines = sub.stop()
    cues = [json.loads(payload) for _, _, payload in lines]
    rises = [c for c in cues if c["kind"] == "rise" and c["seen_in"] == "frames"]
    assert rises, cues
    first = rises[0]
    assert 4.0 <= first["source_time"] <= 5.0  # the cut at 4 s, confirmed 0.1 s on
    assert any(t >= first["audio_time"] - 0.02 for t in stingers)
    assert state["cue"] is not None and state["cue"]["kind"] in ("rise", "fall", "flash", "cut")
