"""The composer: one :class:`Plan` in, one :class:`BarScore` out, bar after bar.

The lead is sampled note by note from the n-gram melody model, whose state runs on across bars
(and across key changes, so a phrase modulates rather than restarts). The plan steers the
sampling through per-token weights: density tilts the durations, the key's scale and the lead
register mask the pitches, phrase ends lean towards the tonic triad. Every few bars the composer
echoes the motif of 2 or 4 bars before, varying its ending. The chord is then fitted to the
bar's melody, and bass, drums, pad and arpeggio follow the chord.

All randomness comes from generators seeded by ``config.seed`` (one per concern, so turning a
layer on or off never changes the melody), which makes a run repeatable.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from daemon.composer.accompaniment import arp_notes, bass_notes, drum_notes, pad_notes
from daemon.composer.harmony import HarmonyPlanner, SoundingNote, scale_pitch_classes
from daemon.config import ComposerConfig
from daemon.errors import ModelError
from daemon.messages import BarScore, Layer, NoteEvent, Plan
from models.ngram import (
    DEFAULT_WEIGHTS,
    DURATION_SIXTEENTHS,
    MelodyContext,
    MelodyToken,
    NgramMelodyModel,
    metre_for_beats,
)

LEAD_LOW, LEAD_HIGH = 60, 84
MAX_LEAP = 12  # semitones: a singable line never jumps more than an octave
OUT_OF_SCALE_WEIGHT = 1e-3  # strong enough that a chromatic note is a rare colour, not a habit
DENSITY_TILT = 2.5  # exponent of the duration tilt at density 0 or 1
REPEAT_PROBABILITY = 0.5
HISTORY_BARS = 8

_DURATIONS_16 = np.array(DURATION_SIXTEENTHS, dtype=np.int64)
_LOG2_DURATIONS = np.log2(_DURATIONS_16 / 4.0)  # quarter lengths, log2: 16th = -2, whole = +2


@functools.lru_cache(maxsize=4)
def load_melody_model(path: Path = DEFAULT_WEIGHTS) -> NgramMelodyModel:
    """Load (once per path) the n-gram melody weights.

    Raises
    ------
    ModelError : the weights are missing or unreadable, with the command that rebuilds them.
    """
    try:
        return NgramMelodyModel.load(path)
    except FileNotFoundError as exc:
        raise ModelError(
            f"no melody model weights at {path}; run tools/prepare_melodies.py and then "
            "tools/train_ngram.py to build them"
        ) from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"melody model weights at {path} do not load ({exc}); "
            "run tools/train_ngram.py to rebuild them"
        ) from exc


@dataclass(frozen=True, slots=True)
class _BarMelody:
    """What the motif echo needs to know about an earlier bar."""

    tokens: tuple[MelodyToken, ...]
    tonic: int
    mode: str
    bar_length: int
    density: float


class Composer:
    """Turns plans into bar scores, one bar per call, in bar order.

    Parameters
    ----------
    config : the ``[composer]`` section: seed, temperature, melody model name.
    model : the melody model to sample from; None loads the shipped weights
        (``models/weights/ngram_melody.json.gz``) and raises :class:`ModelError` if missing.
    """

    def __init__(self, *, config: ComposerConfig, model: NgramMelodyModel | None = None) -> None:
        if config.melody_model != "ngram":
            raise ModelError(f"unknown melody model {config.melody_model!r}; use 'ngram'")
        self.config = config
        self.model = model if model is not None else load_melody_model()
        melody_seed, harmony_seed, rhythm_seed = np.random.SeedSequence(config.seed).spawn(3)
        self._melody_rng = np.random.default_rng(melody_seed)
        self._harmony_rng = np.random.default_rng(harmony_seed)
        self._rhythm_rng = np.random.default_rng(rhythm_seed)
        self._harmony = HarmonyPlanner()
        self._context: MelodyContext | None = None
        self._last_pitch: int | None = None  # MIDI pitch of the last sounding lead note
        self._history: dict[int, _BarMelody] = {}
        self._last_melody: tuple[SoundingNote, ...] = ()
        codec = self.model.codec
        self._relative = codec.relative_pitches()
        self._rest_id = codec.rest_id

    @property
    def last_melody(self) -> tuple[SoundingNote, ...]:
        """The lead of the last composed bar, rests included (offsets and lengths in beats)."""
        return self._last_melody

    def compose_bar(self, plan: Plan) -> BarScore:
        """Compose the bar ``plan.bar``: melody, chord, and the notes of the layers in play.

        Notes start in ``[0, plan.beats_per_bar)`` and the melody's notes and rests fill the bar
        exactly. Synchronous and fast (well under 10 ms per bar).
        """
        melody = self._compose_melody(plan)
        self._last_melody = melody
        _, chord = self._harmony.choose(
            tonic=plan.tonic,
            mode=plan.mode,
            bar=plan.bar,
            beats_per_bar=plan.beats_per_bar,
            melody=melody,
            rng=self._harmony_rng,
        )
        # Drawn every bar, whether or not drums sound, so the layer count never shifts the
        # random stream of later bars.
        drums = drum_notes(plan, self._rhythm_rng)

        notes: list[NoteEvent] = []
        if Layer.LEAD.order <= plan.layers:
            notes.extend(self._lead_events(plan, melody))
        if Layer.BASS.order <= plan.layers:
            notes.extend(bass_notes(chord, plan))
        if Layer.DRUMS.order <= plan.layers:
            notes.extend(drums)
        if Layer.PAD.order <= plan.layers:
            notes.extend(pad_notes(chord, plan))
        if Layer.ARP.order <= plan.layers:
            notes.extend(arp_notes(chord, plan))
        return BarScore(bar=plan.bar, plan=plan, chord=chord, notes=tuple(notes))

    # -- melody -----------------------------------------------------------------------------

    def _compose_melody(self, plan: Plan) -> tuple[SoundingNote, ...]:
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
        scale = scale_pitch_classes(plan.tonic, plan.mode)
        in_scale = np.array([pc in scale for pc in (midi % 12).tolist()])
        weights = np.where(in_scale, 1.0, OUT_OF_SCALE_WEIGHT)
        weights *= (midi >= LEAD_LOW) & (midi <= LEAD_HIGH)
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

    def _lead_events(self, plan: Plan, melody: tuple[SoundingNote, ...]) -> list[NoteEvent]:
        base = 72 + 16 * (plan.arousal + 1.0) / 2.0
        events = []
        for note in melody:
            if note.pitch is None:
                continue
            if note.offset == 0:
                accent = 10
            elif note.offset == int(note.offset):
                accent = 5
            else:
                accent = 0
            velocity = int(np.clip(round(base + accent), 1, 127))
            events.append(NoteEvent(Layer.LEAD, note.pitch, velocity, note.offset, note.duration))
        return events
