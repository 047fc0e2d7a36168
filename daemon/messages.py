"""Typed, timestamped messages passed between the pipeline stages.

Every message is a frozen dataclass that carries its own time forward: frames their ``pts``
(seconds since the source started), moods the window they describe, plans and scores the bar
they govern, beats their index and the audio time at which they sound. Audio time is the
engine's sample clock in seconds since the engine started; in a render it equals source time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np

Mode = Literal["major", "minor"]


class Layer(StrEnum):
    """Instrument layers, in the order they enter as the layer count rises."""

    LEAD = "lead"
    BASS = "bass"
    DRUMS = "drums"
    PAD = "pad"
    ARP = "arp"

    @property
    def order(self) -> int:
        """1-based position: the layer sounds when ``Plan.layers >= order``."""
        return LAYER_ORDER.index(self) + 1


LAYER_ORDER: tuple[Layer, ...] = (Layer.LEAD, Layer.BASS, Layer.DRUMS, Layer.PAD, Layer.ARP)

# General MIDI drum notes the drum layer uses (channel 10 when mirrored to MIDI).
KICK, SNARE, CLOSED_HAT, OPEN_HAT = 36, 38, 42, 46
SIDE_STICK, CLAP, LOW_TOM, HIGH_TOM, CRASH, RIDE = 37, 39, 45, 50, 49, 51


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded video frame.

    image : np.ndarray [shape=(height, width, 3), dtype=uint8], RGB.
    """

    pts: float
    image: np.ndarray
    index: int


@dataclass(frozen=True, slots=True)
class Mood:
    """What analysis read from one frame window ``[t_start, t_end)`` of source time.

    valence and arousal are in [-1, 1]; confidence in [0, 1]. ``scene`` stays None until a scene
    model exists. ``features`` carries the raw measurements for timelines and plots.
    ``faces`` (face mode only) is how many faces the window's frames showed (the most in one
    frame), ``expression`` the mean facial-expression probabilities by name (empty without a
    face).
    """

    t_start: float
    t_end: float
    valence: float
    arousal: float
    confidence: float = 1.0
    scene: str | None = None
    scene_probs: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, float] = field(default_factory=dict)
    faces: int | None = None
    expression: Mapping[str, float] = field(default_factory=dict)


# The sounds each layer can take (the engine builds one instrument per name).
LEAD_SOUNDS = ("saw", "square", "flute", "bell")
BASS_SOUNDS = ("saw", "round", "pluck")
PAD_SOUNDS = ("strings", "organ", "glass")
ARP_SOUNDS = ("pluck", "bell", "marimba")
# Drum patterns: none (the drum layer stays silent), brushes (soft swishes and a light kick),
# backbeat (pop/rock), four_on_floor (a kick on every beat, offbeat hats), breakbeat
# (syncopated kicks, ghost snares, 16th hats), march (snare rudiments, kick on 1 and 3).
DRUM_STYLES = ("none", "brushes", "backbeat", "four_on_floor", "breakbeat", "march")
# "valence" follows the mood (major when pleasant, minor when not); the others fix the mode.
PRESET_MODES = ("valence", "major", "minor")


@dataclass(frozen=True, slots=True)
class ScenePreset:
    """Musical choices for one kind of scene (``scenes/<name>.toml``, read by
    :mod:`daemon.scenes`).

    bpm_min/bpm_max bound the tempo arousal maps onto; major_tonic/minor_tonic are pitch classes
    (0 = C) used for positive and negative valence; ``mode`` fixes the mode or lets valence pick
    it; layers_min/layers_max bound the layer count; lead/bass/pad/arp name each layer's sound
    and ``drums`` the drum style.

    A :class:`Plan` carries the preset it was made with, frozen: the composer, the engine and
    every output read the sounds and drum style from the plan, never from ``scenes/``, so a
    preset edited while the music plays changes everything at the same bar line.
    """

    name: str
    description: str = ""
    bpm_min: float = 60.0
    bpm_max: float = 180.0
    major_tonic: int = 2
    minor_tonic: int = 11
    mode: str = "valence"
    layers_min: int = 1
    layers_max: int = 5
    lead: str = "saw"
    bass: str = "saw"
    pad: str = "strings"
    arp: str = "pluck"
    drums: str = "backbeat"

    def sound(self, layer: Layer) -> str:
        """The sound ``layer`` plays in this preset (``"kit"`` for the drums)."""
        if layer is Layer.DRUMS:
            return "kit"
        return str(getattr(self, layer.value))


DEFAULT_PRESET = ScenePreset(name="default")


@dataclass(frozen=True, slots=True)
class Plan:
    """The conductor's decision for one bar onwards.

    bpm in [60, 180]; layers in [1, 5]; ``tonic`` is a pitch class 0-11 (0 = C); density in
    [0, 1] scales how many notes per beat the composer writes. valence/arousal are the smoothed
    values the plan was made from. ``preset`` is the scene preset in force, resolved once by the
    conductor; ``scene`` is its name.
    """

    bar: int
    bpm: float
    layers: int
    tonic: int
    mode: Mode
    density: float
    valence: float
    arousal: float
    preset: ScenePreset = DEFAULT_PRESET
    beats_per_bar: int = 4

    @property
    def scene(self) -> str:
        """The name of the scene preset in force."""
        return self.preset.name

    @property
    def key(self) -> str:
        """Key name as music21 spells it, e.g. ``"A"`` (major) or ``"a"`` (minor)."""
        name = PITCH_CLASS_NAMES[self.tonic]
        return name if self.mode == "major" else name.lower()


PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")
# Key names as people write them (flats with "b"), for states, payloads and beat maps.
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True, slots=True)
class NoteEvent:
    """One note of one layer, placed in beats relative to the start of its bar.

    pitch is a MIDI note number (for drums, a General MIDI drum note); velocity 1-127.
    """

    layer: Layer
    pitch: int
    velocity: int
    offset: float
    duration: float


@dataclass(frozen=True, slots=True)
class Chord:
    """The harmony of one bar: root pitch class, quality and its MIDI pitches (root position)."""

    root: int
    quality: Literal["maj", "min", "dim"]
    pitches: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BarScore:
    """Everything the engine needs to play one bar: the plan in force, the chord and the notes.

    ``section`` is the label of the form's section the bar belongs to (``"A"``, ``"A'"``), None
    in free form or when no composer wrote the bar.
    """

    bar: int
    plan: Plan
    chord: Chord
    notes: tuple[NoteEvent, ...]
    section: str | None = None

    @property
    def seconds(self) -> float:
        return self.plan.beats_per_bar * 60.0 / self.plan.bpm


@dataclass(frozen=True, slots=True)
class Beat:
    """One beat of the musical clock, derived from the engine's sample clock."""

    index: int
    bar: int
    beat_in_bar: int
    bpm: float
    audio_time: float


@dataclass(frozen=True, slots=True)
class BarStarted:
    """The engine began ``bar`` at ``audio_time``; the composer now writes bar + lookahead."""

    bar: int
    audio_time: float
    plan: Plan
