"""The melody LSTM's token codec: notes <-> token ids, the vocabulary and the conditioning
labels. Free of torch, so data tools, the library and tests can encode tunes without loading it.

Tokens
------
A note is ``(pitch, duration)`` plus where it starts:

- pitch: semitones above the key's tonic in the octave of middle C (MIDI ``60 + tonic``), in
  [-24, 36], or a rest. Unlike the n-gram's per-tune reference, the octave is fixed, so a pitch id
  says both the scale degree (``id mod 12``) and the register; the register label can then steer
  it. Transposing a tune moves its tonic and, when the tonic wraps past B, its pitch ids by an
  octave: that octave shift is the transposition augmentation the training uses.
- duration: one of :data:`models.ngram.DURATIONS` (16th to whole note), as in the n-gram.
- slot: the 16th position in the bar and the metre (4/4, 2/4, 3/4, 6/8), and the bar's place in
  an 8-bar phrase (the pickup counts as bar 7). These are inputs, not predicted.

Conditioning (labels computed from each tune itself): mode from music21's key analysis (stored in
the dataset), note density (sounding notes per 4/4 bar, i.e. per 4 quarter lengths) and register
(mean pitch, in the token's tonic-relative semitones). A tune's labels are attached to every one
of its notes, and training streams run several tunes through one hidden state, so the model
learns to follow new labels in mid-stream without a reset.

The network is in :mod:`models.melody_net`, the streaming sampler in
:mod:`models.melody_sampler`. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from models.melody_data import Mode, TuneRecord
from models.ngram import DURATIONS, METRE_NAMES, METRE_SIXTEENTHS, metre_key

PITCH_LOW, PITCH_HIGH = -24, 36
REFERENCE_OCTAVE = 60  # pitch id 0 + PITCH_LOW... is relative to MIDI 60 + tonic
N_PITCHES = PITCH_HIGH - PITCH_LOW + 2  # every semitone of the range, then the rest
REST = N_PITCHES - 1
PITCH_START = N_PITCHES  # input only: "no previous note"
N_DURATIONS = len(DURATIONS)
DURATION_START = N_DURATIONS  # input only
MAX_BAR = 16  # 16ths in the longest model metre (4/4)
N_SLOTS = len(METRE_NAMES) * MAX_BAR
PHRASE_BARS = 8
MODES: tuple[Mode, ...] = ("major", "minor")

_DURATION_VALUES = np.array(DURATIONS, dtype=np.float64)


def reference_pitch(tonic: int) -> int:
    """MIDI pitch of relative pitch 0: the tonic in the octave C4..B4."""
    return REFERENCE_OCTAVE + tonic % 12


def pitch_id(midi: int | None, tonic: int) -> int:
    """Token id of a MIDI pitch (None = rest) in the key of ``tonic``; folds by octaves into
    range."""
    if midi is None:
        return REST
    relative = midi - reference_pitch(tonic)
    while relative < PITCH_LOW:
        relative += 12
    while relative > PITCH_HIGH:
        relative -= 12
    return relative - PITCH_LOW


def midi_pitch(token_pitch: int, tonic: int) -> int | None:
    """MIDI pitch of a pitch id in the key of ``tonic``; None for the rest."""
    if token_pitch == REST:
        return None
    return reference_pitch(tonic) + token_pitch + PITCH_LOW


def duration_id(quarter_length: float) -> int:
    """Id of the nearest duration in :data:`DURATIONS` (ties go to the shorter one)."""
    return int(np.argmin(np.abs(_DURATION_VALUES - quarter_length)))


def slot_id(metre: str, position: int) -> int:
    """Embedding index of a 16th ``position`` in a model ``metre``; positions wrap at the bar."""
    index = METRE_NAMES.index(metre)
    return index * MAX_BAR + position % METRE_SIXTEENTHS[metre]


# -- conditioning labels -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Conditioning:
    """What a melody is asked to be.

    mode : ``"major"`` or ``"minor"``.
    density : sounding notes per 4/4 bar (per 4 quarter lengths); folk tunes span ~4-15.
    register : mean pitch in semitones above :func:`reference_pitch` of the key.
    """

    mode: Mode
    density: float
    register: float


def tune_conditioning(tune: TuneRecord) -> Conditioning:
    """The labels of a tune, measured from its notes (mode comes from the dataset's key
    analysis)."""
    pitched = [n.pitch for n in tune.notes if n.pitch is not None]
    length = sum(n.duration for n in tune.notes)
    density = 4.0 * len(pitched) / length if length > 0 else 0.0
    register = float(np.mean(pitched)) - reference_pitch(tune.tonic) if pitched else 0.0
    return Conditioning(mode=tune.mode, density=density, register=register)


class TuneTokens(NamedTuple):
    """One tune, encoded. Arrays are np.ndarray [shape=(n,), dtype=int64], one entry per note.

    pitch, duration : the note's pitch and duration ids (the targets).
    slot : :func:`slot_id` of where the note starts.
    phrase : the note's bar within an 8-bar phrase (0-7; a pickup is 7).
    labels : the tune's :class:`Conditioning`.
    """

    pitch: np.ndarray
    duration: np.ndarray
    slot: np.ndarray
    phrase: np.ndarray
    labels: Conditioning


def encode_tune(tune: TuneRecord) -> TuneTokens:
    """The tune as token arrays; positions come from the notes' offsets in their bars.

    A new bar starts where a note's offset is not after the previous note's (the offset wrapped),
    which survives the split bars ABC writes at repeat signs.
    """
    metre = metre_key(tune.meter)
    bar = METRE_SIXTEENTHS[metre]
    n = len(tune.notes)
    pitch = np.empty(n, dtype=np.int64)
    duration = np.empty(n, dtype=np.int64)
    slot = np.empty(n, dtype=np.int64)
    phrase = np.empty(n, dtype=np.int64)
    bar_index = -1 if tune.notes and tune.notes[0].offset > 0 else 0
    previous_offset = math.inf
    for i, note in enumerate(tune.notes):
        position = round(note.offset * 4) % bar
        if i > 0 and position <= previous_offset:
            bar_index += 1
        previous_offset = position
        pitch[i] = pitch_id(note.pitch, tune.tonic)
        duration[i] = duration_id(note.duration)
        slot[i] = slot_id(metre, position)
        phrase[i] = bar_index % PHRASE_BARS
    return TuneTokens(pitch, duration, slot, phrase, tune_conditioning(tune))


def shift_octaves(tokens: TuneTokens, octaves: int) -> TuneTokens | None:
    """The tune an octave (or more) up or down in token space, or None if it leaves the range.

    Transposing by ``s`` semitones leaves every pitch id unchanged except for an octave shift when
    the tonic wraps past B (``octaves = (tonic + s) // 12``), so this *is* the transposition
    augmentation of this token space.
    """
    if octaves == 0:
        return tokens
    pitched = tokens.pitch != REST
    shifted = tokens.pitch + 12 * octaves * pitched
    if pitched.any() and (shifted[pitched].min() < 0 or shifted[pitched].max() >= REST):
        return None
    labels = tokens.labels
    return tokens._replace(
        pitch=shifted,
        labels=Conditioning(labels.mode, labels.density, labels.register + 12 * octaves),
    )


class Token(NamedTuple):
    """A note as tokens: its pitch id (in the key of the bar it belongs to) and duration id.

    What the sampler writes, and what a seed phrase primes it with.
    """

    pitch: int
    duration: int
