"""Changes on the grid: tempo ramps, layers fading in and out, key and scene changes, no clicks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from daemon.clock import BarGrid, ScheduledNote
from daemon.config import EngineConfig
from daemon.engine import BackendChoice, Engine, ScoreQueue
from daemon.engine import band as band_module
from daemon.engine.envelopes import level_at
from daemon.messages import BarScore, Chord, Layer, Mode, NoteEvent, Plan
from daemon.scenes import load_scene

SR = 48000
# (bpm, layers, tonic, mode, scene), two bars each: every kind of change, several at once.
JOURNEY: list[tuple[float, int, int, Mode, str]] = [
    (100, 2, 2, "major", "default"),
    (100, 4, 2, "major", "default"),  # pad and drums fade in
    (140, 5, 2, "major", "default"),  # tempo ramps 100 -> 140 across a bar, the arp enters
    (140, 5, 11, "minor", "default"),  # D major -> B minor
    (140, 3, 11, "minor", "combat"),  # scene change, pad and arp fade out
    (90, 4, 5, "major", "calm"),  # 140 -> 90, flute, glass pad, bell arp
    (90, 1, 5, "major", "calm"),  # down to the lead alone
    (110, 5, 9, "major", "menu"),  # everything back in at once
    (110, 2, 0, "minor", "dialogue"),
]
# A jump is how far a sample lands from where the three before it were heading (the third
# difference: what is left once a smooth curve through them is taken away). Tones leave under
# 0.015 of it even for the bright saw lead; a layer cut off instead of faded, or a voice
# stolen without its fade, leaves its whole level there.
JUMP = 0.04
ONSET_WINDOW = (-0.002, 0.03)  # seconds around a note's onset where a jump is its attack


@dataclasses.dataclass
class Performance:
    audio: np.ndarray  # [shape=(n, 2)]
    notes: list[ScheduledNote]
    grids: list[BarGrid]


def journey_scores() -> list[BarScore]:
    """Notes held across every bar line, so each change happens under sounding notes and not
    where new ones start: lead, bass and a pad chord tied over, the arp plucking on."""
    scores = []
    bar = 0
    for bpm, layers, tonic, mode, scene in JOURNEY:
        for _ in range(2):
            plan = Plan(
                bar=bar,
                bpm=bpm,
                layers=layers,
                tonic=tonic,
                mode=mode,
                density=0.6,
                preset=load_scene(scene),
                valence=0.2,
                arousal=0.2,
            )
            root = 48 + tonic
            third = root + (4 if mode == "major" else 3)
            chord = Chord(root=tonic, quality="maj" if mode == "major" else "min",
                          pitches=(root, third, root + 7))  # fmt: skip
            notes = [
                NoteEvent(Layer.LEAD, root + 24 + (bar % 3) * 2, 90, 2.5, 3.0),
                NoteEvent(Layer.BASS, root - 12, 90, 3.0, 2.0),
                *(NoteEvent(Layer.PAD, p, 80, 2.0, 4.0) for p in chord.pitches),
                *(NoteEvent(Layer.ARP, chord.pitches[i % 3] + 12, 70, i * 0.5, 0.5)
                  for i in range(2)),
            ]  # fmt: skip
            in_play = [n for n in notes if n.layer.order <= layers]
            scores.append(BarScore(bar, plan, chord, tuple(in_play)))
            bar += 1
    return scores


def perform(scores: list[BarScore]) -> Performance:
    queue = ScoreQueue()
    for score in scores:
        queue.put(score)
    queue.close()
    engine = Engine(
        config=EngineConfig(),
        backend=BackendChoice("offline", "test"),
        scores=queue,
        realtime=False,
    )
    blocks: list[np.ndarray] = []
    notes: list[ScheduledNote] = []
    grids: list[BarGrid] = []
    engine.add_audio_listener(lambda block, t: blocks.append(block))
    engine.add_note_listener(notes.extend)
    engine.add_grid_listener(grids.append)
    engine.start()
    assert engine.wait(60)
    engine.stop()
    assert engine.error is None
    return Performance(np.concatenate(blocks), notes, grids)


def outside_onsets(performance: Performance) -> np.ndarray:
    """True for every sample no note starts near; echoes of the arp's plucks count as onsets."""
    keep = np.ones(len(performance.audio), dtype=bool)
    before, after = (round(s * SR) for s in ONSET_WINDOW)
    grids = {g.bar: g for g in performance.grids}
    for note in performance.notes:
        starts = [note.onset]
        if note.note.layer is Layer.ARP:  # a tempo-synced echo repeats each pluck every beat
            beat = grids[note.bar].offset_samples(1)
            starts += [note.onset + k * beat for k in range(1, 8)]
        for start in starts:
            keep[max(start + before, 0) : start + after] = False
    return keep


def worst_jump(performance: Performance) -> tuple[float, float]:
    """The largest sample-to-sample jump outside note onsets, and its time in seconds."""
    jumps = np.abs(np.diff(performance.audio, n=3, axis=0)).max(axis=1)
    jumps[~outside_onsets(performance)[3:]] = 0.0
    at = int(np.argmax(jumps))
    return float(jumps[at]), (at + 3) / SR


@pytest.fixture(scope="module")
def journey() -> Performance:
    return perform(journey_scores())


def test_transitions_never_click(journey: Performance) -> None:
    assert len(journey.grids) >= len(JOURNEY) * 2
    assert np.sqrt(np.mean(np.square(journey.audio))) > 0.03
    assert np.abs(journey.audio).max() < 1.0
    jump, at = worst_jump(journey)
    assert jump < JUMP, f"a jump of {jump:.3f} at {at:.3f} s"


def test_the_tempo_ramps_start_on_bar_lines_and_last_one_bar(journey: Performance) -> None:
    ramps = [g for g in journey.grids if g.ramp_steps]
    assert [(g.bpm_from, g.bpm) for g in ramps] == [(100, 140), (140, 90), (90, 110)]
    for ramp in ramps:
        before = next(g for g in journey.grids if g.bar == ramp.bar - 1)
        after = next(g for g in journey.grids if g.bar == ramp.bar + 1)
        assert ramp.start == before.end and after.start == ramp.end  # on the bar lines
        assert ramp.ramp_beats == ramp.beats  # over exactly one bar
        assert after.ramp_steps == 0 and after.bpm_at(0) == ramp.bpm


@pytest.fixture
def cut_layers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Layer changes as a step instead of a one-beat fade: what the detector must catch."""
    fader = band_module._Fader

    def cut(self: Any, target: float, *, block_start: int, at: int, seconds: float) -> None:
        level = level_at(self._points, (block_start - self._origin) / SR)
        delay = max(at - block_start, 0) / SR
        self._points = [(0.0, level), (delay + 1e-6, level), (delay + 2e-6 + 1 / SR, target)]
        self.env.setList(self._points)
        self.trig.play()
        self._origin = block_start
        self.target = target

    monkeypatch.setattr(fader, "move", cut)
    yield


def test_the_click_detector_hears_a_layer_cut_off(cut_layers: None) -> None:
    performance = perform(journey_scores())
    jump, at = worst_jump(performance)
    assert jump > 2 * JUMP
    # ...on a bar line where layers leave while their notes still sound.
    leaving = [g.start / SR for g in performance.grids[1:] if g.plan.layers < 5]
    assert min(abs(at - t) for t in leaving) < 0.001
