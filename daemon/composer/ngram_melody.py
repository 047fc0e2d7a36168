"""The lead from the n-gram melody model, bar by bar (the foundation's melody, still selectable).

The lead is sampled note by note; the model's context runs on across bars (and across key
changes, so a phrase modulates rather than restarts). The plan steers the sampling through
per-token weights: density tilts the durations, the key's scale and the lead register mask the
pitches, phrase ends lean towards the tonic triad. Every few bars the writer echoes the motif of
2 or 4 bars before, varying its ending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from daemon.composer.harmony import SoundingNote, scale_pitch_classes
from daemon.config import ComposerConfig
from daemon.messages import Plan
from models.ngram import (
    DURATION_SIXTEENTHS,
    MelodyContext,
    MelodyToken,
    NgramMelodyModel,
    metre_for_beats,
)

MAX_LEAP = 12  # semitones: a singable line never jumps more than an octave
OUT_OF_SCALE_WEIGHT = 1e-3  # strong enough that a chromatic note is a rare colour, not a habit
DENSITY_TILT = 2.5  # exponent of the duration tilt at density 0 or 1
REPEAT_PROBABILITY = 0.5
HISTORY_BARS = 8

_DURATIONS_16 = np.array(DURATION_SIXTEENTHS, dtype=np.int64)
_LOG2_DURATIONS = np.log2(_DURATIONS_16 / 4.0)  # quarter lengths, log2: 16th = -2, whole = +2


@dataclass(frozen=True, slots=True)
class _BarMelody:
    """What the motif echo needs to know about an earlier bar."""

    tokens: tuple[MelodyToken, ...]
    tonic: int
    mode: str
    bar_length: int
    density: float


class NgramMelodyWriter:
    """Writes the lead of each bar with the n-gram model.

    Parameters
    ----------
    model : the fitted n-gram model.
    config : the ``[composer]`` section (temperature, register, scale constraint).
    rng : the melody's random generator (the composer seeds it).
    """

    def __init__(
        self, *, model: NgramMelodyModel, config: ComposerConfig, rng: np.random.Generator
    ) -> None:
        self.model = model
        self.config = config
        self._melody_rng = rng
        self._context: MelodyContext | None = None
        self._last_pitch: int | None = None  # MIDI pitch of the last sounding lead note
        self._history: dict[int, _BarMelody] = {}
        codec = self.model.codec
        self._relative = codec.relative_pitches()
        self._rest_id = codec.rest_id

    def section(self, bar: int) -> str | None:
        """Always None: the n-gram writer follows no imposed form."""
        return None

    def write(self, plan: Plan) -> tuple[SoundingNote, ...]:
        """The lead of ``plan.bar``: notes and rests filling the bar exactly, offsets in beats."""
        bar_length = plan.beats_per_bar * 4
        metre = metre_for_beats(plan.beats_per_bar)
        if self._context is None:
            context = self.model.start(mode=plan.mode, metre=metre, bar_length=bar_length)
        else:
            # Keep the pitch and rhythm history; adopt the new mode, metre and bar line.
            context = replace(
                self._context, mode=plan.mode, metre=metre, bar_length=bar_length, position=0
            )
        reference = 60 + plan.tonic  # MIDI of relative pitch 0: the tonic in C4..B4
        midi = reference + self._relative
        static = self._static_pitch_weights(plan, midi)
        tilt = np.exp(-DENSITY_TILT * (2.0 * plan.density - 1.0) * _LOG2_DURATIONS)

        tokens: list[MelodyToken] = []
        position = 0
        for token in self._echo(plan, bar_length):
            tokens.append(token)
            context = context.advance(token)
            position += DURATION_SIXTEENTHS[token.duration]
            if token.pitch != self._rest_id:
                self._last_pitch = int(midi[token.pitch])

        cadence = plan.bar % 4 == 3
        while position < bar_length:
            remaining = bar_length - position
            # Never cross the bar line: the bar is filled exactly, and the next bar's notes
            # start on its downbeat where the model expects them.
            duration_weights = tilt * (remaining >= _DURATIONS_16)
            late = position >= bar_length // 2
            if cadence and late:
                duration_weights = duration_weights * (_DURATIONS_16 / 4.0)
            pitch_weights = static * self._leap_mask(midi)
            if cadence and late:
                pitch_weights = pitch_weights * self._cadence_weights(plan)
            elif position == 0 and plan.bar % 4 == 0:
                pitch_weights = pitch_weights * self._cadence_weights(plan) ** 0.5
            token = self.model.sample_next(
                context,
                self._melody_rng,
                self.config.temperature,
                duration_weights=duration_weights,
                pitch_weights=pitch_weights,
            )
            tokens.append(token)
            context = context.advance(token)
            position += DURATION_SIXTEENTHS[token.duration]
            if token.pitch != self._rest_id:
                self._last_pitch = int(midi[token.pitch])

        self._context = context
        self._history[plan.bar] = _BarMelody(
            tokens=tuple(tokens),
            tonic=plan.tonic,
            mode=plan.mode,
            bar_length=bar_length,
            density=plan.density,
        )
        for old in [b for b in self._history if b <= plan.bar - HISTORY_BARS]:
            del self._history[old]

        melody = []
        offset = 0
        for token in tokens:
            length = DURATION_SIXTEENTHS[token.duration]
            pitch = None if token.pitch == self._rest_id else int(midi[token.pitch])
            melody.append(SoundingNote(pitch, offset / 4.0, length / 4.0))
            offset += length
        return tuple(melody)

    def _static_pitch_weights(self, plan: Plan, midi: np.ndarray) -> np.ndarray:
        """Scale, register and rest weights for this bar [shape=(n_pitches,)]."""
        low, high = self.config.register
        if self.config.scale_constraint:
            scale = scale_pitch_classes(plan.tonic, plan.mode)
            in_scale = np.array([pc in scale for pc in (midi % 12).tolist()])
            weights = np.where(in_scale, 1.0, OUT_OF_SCALE_WEIGHT)
        else:
            weights = np.ones(len(midi))
        weights *= (midi >= low) & (midi <= high)
        # Rests are rare in fiddle tunes; let sparse passages breathe, busy ones run on.
        weights[self._rest_id] = math.exp(-2.0 * (2.0 * plan.density - 1.0)) * 2.0
        return weights

    def _leap_mask(self, midi: np.ndarray) -> np.ndarray:
        if self._last_pitch is None:
            return np.ones(len(midi))
        mask = (np.abs(midi - self._last_pitch) <= MAX_LEAP).astype(np.float64)
        mask[self._rest_id] = 1.0
        return mask

    def _cadence_weights(self, plan: Plan) -> np.ndarray:
        """Lean towards the tonic triad (the tonic most) at phrase ends and openings."""
        steps = self._relative % 12
        third = 4 if plan.mode == "major" else 3
        weights = np.ones(len(steps))
        weights[steps == 0] = 5.0
        weights[steps == third] = 2.0
        weights[steps == 7] = 2.0
        weights[self._rest_id] = 1.0
        return weights

    def _echo(self, plan: Plan, bar_length: int) -> list[MelodyToken]:
        """Tokens copied from the bar 2 or 4 back to open this bar, or none.

        Bar 2 of each 4-bar phrase may echo bar 0; bars 4-5 of an 8-bar period may echo bars
        0-1. The copy keeps all of the source bar or stops one or two beats early, so the
        model writes a new ending (a varied repeat).
        """
        phrase = plan.bar % 8
        back = 2 if phrase in (2, 6) else 4 if phrase in (4, 5) else 0
        if back == 0:
            return []
        # Draw unconditionally so whether a source bar exists never shifts the stream.
        roll = float(self._melody_rng.random())
        beats_kept = int(self._melody_rng.integers(0, 3))
        source = self._history.get(plan.bar - back)
        if (
            roll >= REPEAT_PROBABILITY
            or source is None
            or source.tonic != plan.tonic
            or source.mode != plan.mode
            or source.bar_length != bar_length
            or abs(source.density - plan.density) > 0.2
        ):
            return []
        cut = bar_length - 4 * beats_kept  # keep notes ending by this 16th
        copied: list[MelodyToken] = []
        end = 0
        for token in source.tokens:
            end += DURATION_SIXTEENTHS[token.duration]
            if end > cut:
                break
            copied.append(token)
        first = next((t for t in copied if t.pitch != self._rest_id), None)
        if first is not None and self._last_pitch is not None:
            first_midi = 60 + plan.tonic + int(self._relative[first.pitch])
            if abs(first_midi - self._last_pitch) > MAX_LEAP:
                return []
        return copied
