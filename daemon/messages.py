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
    # Stingers sound over the music whatever the layer count (they are not one of the five).
    STINGER = "stinger"

    @property
    def order(self) -> int:
        """1-based position: the layer sounds when ``Plan.layers >= order`` (0 for stingers,
        which sound at any layer count)."""
        return LAYER_ORDER.index(self) + 1 if self in LAYER_ORDER else 0


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
# Stingers: a chord hit on the beat, a riser of chord tones into it, a run down the scale into
# it, a "danger" half-step ostinato, a soft swell (for a fall to calm).
STINGER_KINDS = ("hit", "riser", "fill", "danger", "swell")


@dataclass(frozen=True, slots=True)
class TransitionRule:
    """How the music moves between two states (game audio middleware's transition rules).

    ``source`` and ``target`` are scene names or ``*`` (any); for a change of intensity within a
    scene the rule is keyed ``rise`` or ``fall`` (``source`` is then that word, ``target`` ``*``).

    exit : ``immediate`` (the next 16th note), ``beat`` (the next beat), ``bar`` (the next bar
        line) or ``bars:N`` (after N bar lines).
    fade_beats : how long the layers take to come in or go, in beats.
    bridge : a stinger played into the change (one of :data:`STINGER_KINDS`), or None.
    """

    source: str
    target: str
    exit: str = "bar"
    fade_beats: float = 1.0
    bridge: str | None = None

    @property
    def bars(self) -> int:
        """Bar lines to wait for: 0 for ``immediate``/``beat``, 1 for ``bar``, N for ``bars:N``."""
        if self.exit in ("immediate", "beat"):
            return 0
        if self.exit == "bar":
            return 1
        return int(self.exit.split(":", 1)[1])


# What a preset without a rule does: a new scene at the next bar line, a rise in intensity at the
# next beat with a riser into it (it starts at once: the answer is heard within a tenth of a
# second), a fall at the next bar with a soft swell.
DEFAULT_RULES = (
    TransitionRule("rise", "*", exit="beat", fade_beats=0.25, bridge="riser"),
    TransitionRule("fall", "*", exit="bar", fade_beats=2.0, bridge="swell"),
    TransitionRule("*", "*", exit="bar", fade_beats=1.0),
)


@dataclass(frozen=True, slots=True)
class ScenePreset:
    """Musical choices for one kind of scene (``scenes/<name>.toml``, read by
    :mod:`daemon.scenes`).

    bpm_min/bpm_max bound the tempo arousal maps onto; major_tonic/minor_tonic are pitch classes
    (0 = C) used for positive and negative valence; ``mode`` fixes the mode or lets valence pick
    it; layers_min/layers_max bound the layer count; lead/bass/pad/arp name each layer's sound
    and ``drums`` the drum style; ``transitions`` are its :class:`TransitionRule` s (see
    :func:`transition_rule`).

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
    transitions: tuple[TransitionRule, ...] = ()

    def sound(self, layer: Layer) -> str:
        """The sound ``layer`` plays in this preset (``"kit"`` for the drums, ``"stab"`` for
        stingers)."""
        if layer is Layer.DRUMS:
            return "kit"
        if layer is Layer.STINGER:
            return "stab"
        return str(getattr(self, layer.value))


DEFAULT_PRESET = ScenePreset(name="default")


def transition_rule(
    source: ScenePreset, target: ScenePreset, *, change: str | None = None
) -> TransitionRule:
    """The rule for leaving ``source`` for ``target`` (a scene change), or, with ``change``
    ``"rise"``/``"fall"``, for a change of intensity within ``source``.

    The most specific rule wins: in ``source``'s file, then ``target``'s, then the defaults
    (:data:`DEFAULT_RULES`); ``a -> b`` before ``a -> *`` before ``* -> b`` before ``* -> *``.
    """
    if change is not None:
        wanted = [(change, "*")]
    else:
        wanted = [
            (source.name, target.name),
            (source.name, "*"),
            ("*", target.name),
            ("*", "*"),
        ]
    for rules in (source.transitions, target.transitions, DEFAULT_RULES):
        for key in wanted:
            for rule in rules:
                if (rule.source, rule.target) == key:
                    return rule
    return DEFAULT_RULES[-1]


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
    # The fraction of the bar a tempo change ramps over; None: the engine's ``tempo_ramp``
    # (a reaction ramps over one beat instead of the bar).
    ramp: float | None = None

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
class BarPatch:
    """A change to bar ``bar`` from ``from_beat`` on (beats from its downbeat), for a reaction
    that cannot wait for the next bar line.

    With ``replace``, the bar's notes from ``from_beat`` on give way to ``notes`` and the band
    takes ``plan``'s sounds and layers there, its layers fading over ``fade_beats`` (the tempo
    holds until the next bar line). Without it, ``notes`` are played over the music as they are
    (a stinger) and ``plan`` is only their context.
    """

    bar: int
    from_beat: float
    plan: Plan
    notes: tuple[NoteEvent, ...]
    replace: bool = True
    fade_beats: float = 0.25


@dataclass(frozen=True, slots=True)
class Cue:
    """An event in what the analysis sees: a sudden, confident change that the music should
    answer at once rather than through its smoothing.

    time : source time (seconds) of the frame or window where it happened.
    kind : ``cut`` (the picture changed at once), ``flash`` (a frame stood out and went),
        ``rise`` / ``fall`` (arousal jumped up or down), ``scene`` (a confident new scene).
    strength : how big the change was, in [0, 1].
    scene : the new scene's name, for ``scene`` cues.
    """

    time: float
    kind: Literal["cut", "flash", "rise", "fall", "scene"]
    strength: float
    scene: str | None = None


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
