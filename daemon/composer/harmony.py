"""Scales and chords: one diatonic triad per bar, fitted to the melody with a progression prior.

The chord of a bar is chosen *after* its melody: each diatonic triad is scored by how many of the
melody's strong-beat notes it contains, plus a first-order progression prior (I-IV-V-vi motion)
and a nudge towards cadences at phrase ends, then drawn from a sharp softmax of those scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from daemon.messages import Chord, Mode

Quality = Literal["maj", "min", "dim"]

MAJOR_SCALE: tuple[int, ...] = (0, 2, 4, 5, 7, 9, 11)
NATURAL_MINOR_SCALE: tuple[int, ...] = (0, 2, 3, 5, 7, 8, 10)
HARMONIC_SEVENTH = 11  # the raised 7th of harmonic minor: the leading note of minor-key cadences

# Triads on each degree. In minor the dominant is major (harmonic minor) and the subtonic chord
# on the flat 7th stays major, as in folk tunes (i - VII - i).
_TRIADS: dict[Mode, tuple[tuple[int, Quality], ...]] = {
    "major": ((0, "maj"), (2, "min"), (4, "min"), (5, "maj"), (7, "maj"), (9, "min"), (11, "dim")),
    "minor": ((0, "min"), (2, "dim"), (3, "maj"), (5, "min"), (7, "maj"), (8, "maj"), (10, "maj")),
}
_INTERVALS: dict[Quality, tuple[int, int, int]] = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dim": (0, 3, 6),
}
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")

# Progression prior P(next degree | previous degree), rows and columns I..VII: the common-practice
# and folk habits (I->IV/V, IV->V/I, V->I/vi, vi->IV/ii, ii->V); rows are normalised below.
_TRANSITIONS = np.array(
    [
        # I    ii   iii  IV   V    vi   vii
        [1.5, 1.5, 0.6, 4.0, 4.0, 2.5, 0.3],  # I
        [1.0, 0.8, 0.3, 1.0, 5.0, 0.8, 0.5],  # ii
        [0.8, 0.6, 0.6, 3.0, 1.0, 4.0, 0.2],  # iii
        [3.5, 1.5, 0.4, 1.2, 4.0, 1.0, 0.5],  # IV
        [6.0, 0.4, 0.5, 1.0, 1.5, 2.5, 0.3],  # V
        [1.0, 2.5, 0.8, 3.5, 3.0, 1.0, 0.3],  # vi
        [4.0, 0.4, 1.0, 0.5, 1.0, 0.8, 0.8],  # vii
    ]
)
_LOG_TRANSITIONS = np.log(_TRANSITIONS / _TRANSITIONS.sum(axis=1, keepdims=True))
_LOG_FIRST = np.log(np.array([8.0, 0.5, 0.3, 1.0, 1.0, 1.0, 0.1]) / 11.9)

# Chord roots are voiced in [CHORD_LOW, CHORD_LOW + 11]: triads span MIDI 45-63.
CHORD_LOW = 45


@dataclass(frozen=True, slots=True)
class ScaleDegreeChord:
    """A diatonic triad: its degree (0 = I), root pitch class and quality."""

    degree: int
    root: int
    quality: Quality

    def pitch_classes(self) -> frozenset[int]:
        """The triad's pitch classes."""
        return frozenset((self.root + i) % 12 for i in _INTERVALS[self.quality])


@dataclass(frozen=True, slots=True)
class SoundingNote:
    """A melody note as harmony sees it: MIDI pitch (None = rest), start and length in beats."""

    pitch: int | None
    offset: float
    duration: float


def scale_pitch_classes(tonic: int, mode: Mode) -> frozenset[int]:
    """Pitch classes of the key's scale: Ionian for major; natural minor plus the raised 7th of
    harmonic minor for minor."""
    steps = MAJOR_SCALE if mode == "major" else (*NATURAL_MINOR_SCALE, HARMONIC_SEVENTH)
    return frozenset((tonic + s) % 12 for s in steps)


def diatonic_triads(tonic: int, mode: Mode) -> tuple[ScaleDegreeChord, ...]:
    """The seven triads of the key, degree I first."""
    return tuple(
        ScaleDegreeChord(degree=i, root=(tonic + step) % 12, quality=quality)
        for i, (step, quality) in enumerate(_TRIADS[mode])
    )


def voice_chord(chord: ScaleDegreeChord) -> Chord:
    """Root-position triad with the root in MIDI 45-56 (pad and chord register)."""
    root = CHORD_LOW + (chord.root - CHORD_LOW) % 12
    return Chord(
        root=chord.root,
        quality=chord.quality,
        pitches=tuple(root + i for i in _INTERVALS[chord.quality]),
    )


def strong_beats(beats_per_bar: int) -> tuple[float, ...]:
    """Beats that carry the harmony: 1 and 3 in 4/4, 1 in 2/4 and 3/4, 1 and 4 in 6/4."""
    if beats_per_bar >= 4 and beats_per_bar % 2 == 0:
        return (0.0, beats_per_bar / 2)
    if beats_per_bar == 5:
        return (0.0, 3.0)
    if beats_per_bar == 7:
        return (0.0, 4.0)
    return (0.0,)


class HarmonyPlanner:
    """Chooses the chord of each bar in turn, remembering the previous one.

    Parameters
    ----------
    sharpness : how strongly scores decide (softmax inverse temperature); high is nearly argmax.
    """

    def __init__(self, *, sharpness: float = 2.0) -> None:
        self.sharpness = sharpness
        self._previous: int | None = None
        self._previous_key: tuple[int, Mode] | None = None

    def choose(
        self,
        *,
        tonic: int,
        mode: Mode,
        bar: int,
        beats_per_bar: int,
        melody: Sequence[SoundingNote],
        rng: np.random.Generator,
    ) -> tuple[ScaleDegreeChord, Chord]:
        """The chord of ``bar`` for its ``melody`` (offsets in beats from the bar start)."""
        candidates = diatonic_triads(tonic, mode)
        scores = np.array([self._fit(c, melody, beats_per_bar) for c in candidates])
        # After a key change the old degree means nothing in the new key: start afresh.
        if self._previous is None or self._previous_key != (tonic, mode):
            scores += _LOG_FIRST
        else:
            scores += _LOG_TRANSITIONS[self._previous]
        scores += _cadence_bonus(bar)
        weights = np.exp(self.sharpness * (scores - scores.max()))
        index = int(rng.choice(len(candidates), p=weights / weights.sum()))
        chosen = candidates[index]
        self._previous = chosen.degree
        self._previous_key = (tonic, mode)
        return chosen, voice_chord(chosen)

    @staticmethod
    def _fit(chord: ScaleDegreeChord, melody: Sequence[SoundingNote], beats_per_bar: int) -> float:
        tones = chord.pitch_classes()
        score = 0.0
        for beat in strong_beats(beats_per_bar):
            sounding = _sounding_at(melody, beat)
            if sounding is None:
                continue
            pitch_class = sounding % 12
            if pitch_class == chord.root:
                score += 2.5
            elif pitch_class in tones:
                score += 2.0
            else:
                score -= 2.0
        # Every other note counts a little, by length: long non-chord notes clash audibly.
        for note in melody:
            if note.pitch is None:
                continue
            score += (0.4 if note.pitch % 12 in tones else -0.3) * note.duration
        if chord.quality == "dim":
            score -= 1.5  # diminished triads sound out of style as a bar-long harmony
        return score


def _sounding_at(melody: Sequence[SoundingNote], beat: float) -> int | None:
    for note in melody:
        if note.offset <= beat < note.offset + note.duration:
            return note.pitch
    return None


def _cadence_bonus(bar: int) -> np.ndarray:
    """Score nudges by bar in an 8-bar period: tonic openings, a half cadence at bar 4, a full
    cadence (V - I) at bars 7-8."""
    bonus = np.zeros(7)
    position = bar % 8
    if position == 0:
        bonus[0] += 1.5
    elif position == 3:
        bonus[4] += 1.5
    elif position == 6:
        bonus[4] += 1.0
        bonus[3] += 0.5
    elif position == 7:
        bonus[0] += 2.5
    return bonus
