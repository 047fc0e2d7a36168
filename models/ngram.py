"""A variable-order Markov melody model: n-grams with Witten-Bell interpolation.

Tokens
------
A note is a token ``(pitch, duration, position)``:

- pitch: semitones above the tune's tonic, in [-12, 24], or a rest. The tonic's octave is chosen
  per tune so the tune's median pitch sits about a fifth above it; tunes in every key then share
  one pitch alphabet and a model trained on them sings in any key.
- duration: quarter lengths on a 16th grid, snapped to :data:`DURATIONS` (0.25 ... 4.0).
- position: 16ths from the start of the bar. It is not predicted: it follows from the previous
  durations, and the model conditions on it, which is how it learns the metre.

Model
-----
The probability of a note factorises into a rhythm model and a pitch model::

    P(note | history) = P(duration | metre, position, previous durations)
                      * P(pitch | mode, metric accent, previous pitches)

Each factor is an n-gram whose context shrinks along a fixed back-off chain (the longest history
first, then shorter, then no history, then uniform). Probabilities are interpolated with
Witten-Bell smoothing, which needs only counts and the number of distinct continuations of each
context, so a model is a set of count tables that fits in JSON. Sampling takes a temperature and
per-token weights (the composer's density, scale, register and leap constraints).

This module imports numpy and the standard library only (no pyo, no ``daemon``).

This module stays whole (about 570 lines): the token codec, the count tables and the sampler are
one small model (the n-gram baseline of the melody card), trained and read as one.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from models.melody_data import Mode, TuneRecord
from models.shipped import weights_path

FORMAT_VERSION = 1
DEFAULT_WEIGHTS = weights_path("ngram_melody.json.gz")

DURATIONS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0)
DURATION_SIXTEENTHS: tuple[int, ...] = tuple(round(d * 4) for d in DURATIONS)
PITCH_LOW, PITCH_HIGH = -12, 24

# Bar length in 16ths of the metres the model knows. Other metres map onto these (2/2 is 4/4).
METRE_SIXTEENTHS: dict[str, int] = {"4/4": 16, "2/4": 8, "3/4": 12, "6/8": 12}
METRE_NAMES: tuple[str, ...] = tuple(METRE_SIXTEENTHS)
_METRE_ALIASES = {"2/2": "4/4", "C": "4/4", "C|": "4/4"}
_MODES: tuple[Mode, ...] = ("major", "minor")

# Context keys are tuples of small ints; history slots hold this before the first note.
BOS = -1

PitchWeights: TypeAlias = np.ndarray | Callable[[int], np.ndarray]


def metre_key(meter: str) -> str:
    """The model metre of a time signature (``"2/2"`` -> ``"4/4"``); ValueError if unknown."""
    name = _METRE_ALIASES.get(meter, meter)
    if name not in METRE_SIXTEENTHS:
        raise ValueError(f"metre {meter!r} is not one of {', '.join(METRE_SIXTEENTHS)} or 2/2")
    return name


def metre_for_beats(beats_per_bar: int) -> str:
    """The model metre to use for a bar of ``beats_per_bar`` quarter notes.

    2, 3 and 4 map to 2/4, 3/4 and 4/4; 6 to 3/4 (two bars of it); 5 and 7 to 4/4, whose
    positions then wrap, so the extra beats are phrased like the start of a bar.
    """
    return {2: "2/4", 3: "3/4", 6: "3/4"}.get(beats_per_bar, "4/4")


def accent(metre: str, position: int) -> int:
    """Metric weight of a 16th position: 0 downbeat, 1 other beat, 2 on an 8th, 3 on a 16th."""
    bar = METRE_SIXTEENTHS[metre]
    position %= bar
    beat = 6 if metre == "6/8" else 4
    if position == 0:
        return 0
    if position % beat == 0:
        return 1
    return 2 if position % 2 == 0 else 3


class MelodyToken(NamedTuple):
    """One encoded note: pitch id, duration id and the 16th position in the bar it starts on."""

    pitch: int
    duration: int
    position: int


class TokenCodec:
    """Maps notes to token ids and back.

    Pitch ids 0 .. 36 are semitones -12 .. +24 above the tonic; id 37 is a rest. Duration ids
    index :data:`DURATIONS`.
    """

    n_pitches: int = PITCH_HIGH - PITCH_LOW + 2
    n_durations: int = len(DURATIONS)
    rest_id: int = PITCH_HIGH - PITCH_LOW + 1

    def pitch_id(self, relative: int | None) -> int:
        """Id of a tonic-relative pitch (None = rest); out-of-range pitches fold by octaves."""
        if relative is None:
            return self.rest_id
        while relative < PITCH_LOW:
            relative += 12
        while relative > PITCH_HIGH:
            relative -= 12
        return relative - PITCH_LOW

    def relative_pitch(self, pitch_id: int) -> int | None:
        """Semitones above the tonic for a pitch id, None for the rest id."""
        if pitch_id == self.rest_id:
            return None
        return pitch_id + PITCH_LOW

    def relative_pitches(self) -> np.ndarray:
        """Semitones above the tonic of every pitch id; the rest id gets 0.

        Returns
        -------
        np.ndarray [shape=(n_pitches,), dtype=int64]
        """
        values = np.arange(self.n_pitches, dtype=np.int64) + PITCH_LOW
        values[self.rest_id] = 0
        return values

    def duration_id(self, quarter_length: float) -> int:
        """Id of the nearest duration in :data:`DURATIONS` (ties go to the shorter one)."""
        return int(np.argmin([abs(d - quarter_length) for d in DURATIONS]))

    def duration(self, duration_id: int) -> float:
        """Quarter lengths of a duration id."""
        return DURATIONS[duration_id]

    @staticmethod
    def tonic_reference(tune: TuneRecord) -> int:
        """MIDI pitch of the tune's tonic in the octave that puts its median pitch ~6 above."""
        pitches = sorted(n.pitch for n in tune.notes if n.pitch is not None)
        if not pitches:
            return 60 + tune.tonic
        median = pitches[len(pitches) // 2]
        octave = round((median - 6 - tune.tonic) / 12)
        return tune.tonic + 12 * octave

    def encode(self, tune: TuneRecord) -> list[MelodyToken]:
        """The tune as tokens; positions are taken from the notes' offsets in their bars."""
        reference = self.tonic_reference(tune)
        metre = metre_key(tune.meter)
        bar = METRE_SIXTEENTHS[metre]
        tokens = []
        for note in tune.notes:
            relative = None if note.pitch is None else note.pitch - reference
            position = round(note.offset * 4) % bar
            tokens.append(
                MelodyToken(self.pitch_id(relative), self.duration_id(note.duration), position)
            )
        return tokens


@dataclass(frozen=True, slots=True)
class MelodyContext:
    """What the model conditions on when it writes the next note.

    mode : key mode the pitches are drawn in.
    metre : a key of :data:`METRE_SIXTEENTHS`.
    position : 16ths since the bar started.
    bar_length : 16ths per bar; positions wrap at it (it may differ from the metre's, e.g. 5/4).
    pitches, durations : the last ids written, oldest first, padded with :data:`BOS`.
    """

    mode: Mode
    metre: str
    position: int
    bar_length: int
    pitches: tuple[int, ...]
    durations: tuple[int, ...]

    def advance(self, token: MelodyToken) -> MelodyContext:
        """The context after ``token`` was written."""
        step = DURATION_SIXTEENTHS[token.duration]
        return MelodyContext(
            mode=self.mode,
            metre=self.metre,
            position=(self.position + step) % self.bar_length,
            bar_length=self.bar_length,
            pitches=(*self.pitches[1:], token.pitch),
            durations=(*self.durations[1:], token.duration),
        )


@dataclass(slots=True)
class _Table:
    """Counts of one back-off level, compiled for fast lookups.

    entries maps a context key to (token ids [shape=(k,)], counts [shape=(k,)], total, types).
    """

    entries: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float, int]] = field(
        default_factory=dict
    )

    @classmethod
    def from_counts(cls, counts: dict[tuple[int, ...], dict[int, int]]) -> _Table:
        table = cls()
        for key, row in counts.items():
            ids = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
            values = np.fromiter(row.values(), dtype=np.float64, count=len(row))
            table.entries[key] = (ids, values, float(values.sum()), len(row))
        return table

    def to_json(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for key, (ids, values, _, _) in self.entries.items():
            flat: list[int] = []
            for token, count in zip(ids.tolist(), values.tolist(), strict=True):
                flat.extend((int(token), int(count)))
            out[",".join(map(str, key))] = flat
        return out

    @classmethod
    def from_json(cls, data: dict[str, list[int]]) -> _Table:
        counts: dict[tuple[int, ...], dict[int, int]] = {}
        for key_text, flat in data.items():
            key = tuple(int(k) for k in key_text.split(",")) if key_text else ()
            counts[key] = dict(zip(flat[0::2], flat[1::2], strict=True))
        return cls.from_counts(counts)


def _interpolate(
    tables: Sequence[_Table], keys: Sequence[tuple[int, ...]], size: int
) -> np.ndarray:
    """Witten-Bell interpolated distribution over ``size`` tokens along a back-off chain.

    ``keys[i]`` is the context key of level ``i``, shortest context first; each key extends the
    previous one, so once a level is unseen every longer one is too.
    """
    probs = np.full(size, 1.0 / size)
    for table, key in zip(tables, keys, strict=True):
        entry = table.entries.get(key)
        if entry is None:
            break
        ids, values, total, types = entry
        # P(w|c) = (c(w) + T * P_lower(w)) / (C + T): T distinct continuations decide how much
        # mass the shorter context keeps.
        denominator = total + types
        probs *= types / denominator
        probs[ids] += values / denominator
    return probs


class NgramMelodyModel:
    """Variable-order Markov melody model (see the module docstring for the factorisation).

    Parameters
    ----------
    order : n of the n-grams: each factor sees up to ``order - 1`` previous notes (2-6).
    """

    def __init__(self, *, order: int = 4) -> None:
        if not 2 <= order <= 6:
            raise ValueError(f"order must be in [2, 6], got {order}")
        self.order = order
        self.codec = TokenCodec()
        self.history = order - 1
        # Pitch chain: (mode), (mode, accent), (mode, accent, p-1), ... (.., p-history).
        self._pitch_tables: list[_Table] = [_Table() for _ in range(self.history + 2)]
        # Duration chain: (), (metre), (metre, pos), (metre, pos, d-1), ... (.., d-history).
        self._duration_tables: list[_Table] = [_Table() for _ in range(self.history + 3)]
        self.baseline = UnigramMelodyModel()
        self.info: dict[str, Any] = {}

    # -- contexts ---------------------------------------------------------------------------

    def start(self, *, mode: Mode, metre: str, bar_length: int | None = None) -> MelodyContext:
        """The context at the start of a tune: an empty history at the bar's downbeat."""
        metre = metre_key(metre)
        if mode not in _MODES:
            raise ValueError(f"mode must be major or minor, got {mode!r}")
        return MelodyContext(
            mode=mode,
            metre=metre,
            position=0,
            bar_length=bar_length or METRE_SIXTEENTHS[metre],
            pitches=(BOS,) * self.history,
            durations=(BOS,) * self.history,
        )

    def _pitch_keys(self, context: MelodyContext) -> list[tuple[int, ...]]:
        mode = _MODES.index(context.mode)
        stress = accent(context.metre, context.position)
        recent = context.pitches[::-1]  # most recent first
        keys = [(mode,), (mode, stress)]
        keys.extend((mode, stress, *recent[:n]) for n in range(1, self.history + 1))
        return keys

    def _duration_keys(self, context: MelodyContext) -> list[tuple[int, ...]]:
        metre = METRE_NAMES.index(context.metre)
        position = context.position % METRE_SIXTEENTHS[context.metre]
        recent = context.durations[::-1]
        keys: list[tuple[int, ...]] = [(), (metre,), (metre, position)]
        keys.extend((metre, position, *recent[:n]) for n in range(1, self.history + 1))
        return keys

    # -- training ---------------------------------------------------------------------------

    def fit(self, tunes: Iterable[TuneRecord]) -> NgramMelodyModel:
        """Count the n-grams of ``tunes`` (replacing earlier counts) and the unigram baseline."""
        pitch_counts: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in self._pitch_tables]
        duration_counts: list[dict[tuple[int, ...], dict[int, int]]] = [
            {} for _ in self._duration_tables
        ]
        tune_list = list(tunes)
        n_notes = 0
        for tune in tune_list:
            tokens = self.codec.encode(tune)
            context = self.start(mode=tune.mode, metre=tune.meter)
            for token in tokens:
                # The data's own bar position wins over the running sum: it survives the odd
                # bar that ABC splits at a repeat.
                context = _with_position(context, token.position)
                for level, key in zip(pitch_counts, self._pitch_keys(context), strict=True):
                    row = level.setdefault(key, {})
                    row[token.pitch] = row.get(token.pitch, 0) + 1
                for level, key in zip(duration_counts, self._duration_keys(context), strict=True):
                    row = level.setdefault(key, {})
                    row[token.duration] = row.get(token.duration, 0) + 1
                context = context.advance(token)
                n_notes += 1
        self._pitch_tables = [_Table.from_counts(c) for c in pitch_counts]
        self._duration_tables = [_Table.from_counts(c) for c in duration_counts]
        self.baseline = UnigramMelodyModel().fit(tune_list)
        self.info = {"tunes": len(tune_list), "notes": n_notes}
        return self

    # -- probabilities ----------------------------------------------------------------------

    def duration_distribution(self, context: MelodyContext) -> np.ndarray:
        """P(duration id | context).

        Returns
        -------
        np.ndarray [shape=(n_durations,), dtype=float64], sums to 1.
        """
        return _interpolate(
            self._duration_tables, self._duration_keys(context), self.codec.n_durations
        )

    def pitch_distribution(self, context: MelodyContext) -> np.ndarray:
        """P(pitch id | context); the rest is the last id.

        Returns
        -------
        np.ndarray [shape=(n_pitches,), dtype=float64], sums to 1.
        """
        return _interpolate(self._pitch_tables, self._pitch_keys(context), self.codec.n_pitches)

    def log_prob(self, tune: TuneRecord) -> tuple[float, int]:
        """Natural-log probability of a whole tune and its number of tokens (notes and rests)."""
        context = self.start(mode=tune.mode, metre=tune.meter)
        total = 0.0
        tokens = self.codec.encode(tune)
        for token in tokens:
            context = _with_position(context, token.position)
            total += math.log(self.duration_distribution(context)[token.duration])
            total += math.log(self.pitch_distribution(context)[token.pitch])
            context = context.advance(token)
        return total, len(tokens)

    def nll_per_note(self, tunes: Iterable[TuneRecord]) -> float:
        """Mean negative log-likelihood per token (nats), over all tokens of ``tunes``."""
        return _mean_nll(self.log_prob(t) for t in tunes)

    # -- sampling ---------------------------------------------------------------------------

    def sample_next(
        self,
        context: MelodyContext,
        rng: np.random.Generator,
        temperature: float = 1.0,
        *,
        duration_weights: np.ndarray | None = None,
        pitch_weights: PitchWeights | None = None,
    ) -> MelodyToken:
        """Draw the next note.

        Parameters
        ----------
        context : where the melody is (see :meth:`start` and :meth:`MelodyContext.advance`).
        rng : the caller's generator; the same generator state gives the same note.
        temperature : > 0; below 1 sharpens the model's choices, above 1 flattens them.
        duration_weights : np.ndarray [shape=(n_durations,)], non-negative multipliers applied
            after the temperature (e.g. favour short notes, forbid crossing the bar line).
        pitch_weights : np.ndarray [shape=(n_pitches,)] of non-negative multipliers, or a
            function of the drawn duration id returning one (e.g. scale, register, cadences).

        If the weights zero out every token the weights are ignored for that factor rather than
        failing: the model's own choice is better than no note.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        duration_probs = _reweight(
            self.duration_distribution(context), temperature, duration_weights
        )
        duration = _draw(duration_probs, rng)
        weights = pitch_weights(duration) if callable(pitch_weights) else pitch_weights
        pitch_probs = _reweight(self.pitch_distribution(context), temperature, weights)
        pitch = _draw(pitch_probs, rng)
        return MelodyToken(pitch, duration, context.position)

    # -- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The model as a JSON-ready dict (count tables, vocabularies, training info)."""
        return {
            "format": "moodscore-ngram-melody",
            "version": FORMAT_VERSION,
            "order": self.order,
            "durations": list(DURATIONS),
            "pitch_range": [PITCH_LOW, PITCH_HIGH],
            "metres": list(METRE_NAMES),
            "modes": list(_MODES),
            "info": self.info,
            "pitch_tables": [t.to_json() for t in self._pitch_tables],
            "duration_tables": [t.to_json() for t in self._duration_tables],
            "baseline": self.baseline.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NgramMelodyModel:
        """Inverse of :meth:`to_json`; raises ValueError on another format or vocabulary."""
        if data.get("format") != "moodscore-ngram-melody" or data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"not a version {FORMAT_VERSION} n-gram melody model "
                f"(format={data.get('format')!r}, version={data.get('version')!r})"
            )
        if (
            tuple(data["durations"]) != DURATIONS
            or tuple(data["pitch_range"]) != (PITCH_LOW, PITCH_HIGH)
            or tuple(data["metres"]) != METRE_NAMES
        ):
            raise ValueError("the model's vocabulary differs from this code's; retrain it")
        model = cls(order=int(data["order"]))
        model._pitch_tables = [_Table.from_json(t) for t in data["pitch_tables"]]
        model._duration_tables = [_Table.from_json(t) for t in data["duration_tables"]]
        if len(model._pitch_tables) != model.history + 2:
            raise ValueError("pitch tables do not match the model order")
        if len(model._duration_tables) != model.history + 3:
            raise ValueError("duration tables do not match the model order")
        model.baseline = UnigramMelodyModel.from_json(data["baseline"])
        model.info = dict(data.get("info", {}))
        return model

    def save(self, path: Path) -> None:
        """Write the model as gzip-compressed JSON (byte-identical for identical counts)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
            handle.write(text.encode("utf-8"))

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS) -> NgramMelodyModel:
        """Read a model written by :meth:`save`.

        Raises
        ------
        FileNotFoundError : no file at ``path``.
        ValueError : the file is not a model this code can read.
        """
        if not path.is_file():
            raise FileNotFoundError(f"no n-gram melody weights at {path}")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a gzip JSON model: {exc}") from exc
        return cls.from_json(data)


class UnigramMelodyModel:
    """Baseline: P(pitch, duration) from overall token frequencies, add-one smoothed, no context."""

    def __init__(self) -> None:
        self.codec = TokenCodec()
        self.counts = np.zeros((self.codec.n_pitches, self.codec.n_durations), dtype=np.int64)

    def fit(self, tunes: Iterable[TuneRecord]) -> UnigramMelodyModel:
        """Count the (pitch, duration) tokens of ``tunes``."""
        self.counts[:] = 0
        for tune in tunes:
            for token in self.codec.encode(tune):
                self.counts[token.pitch, token.duration] += 1
        return self

    def _log_probs(self) -> np.ndarray:
        smoothed = self.counts.astype(np.float64) + 1.0
        return np.log(smoothed / smoothed.sum())

    def nll_per_note(self, tunes: Iterable[TuneRecord]) -> float:
        """Mean negative log-likelihood per token (nats)."""
        log_probs = self._log_probs()

        def score(tune: TuneRecord) -> tuple[float, int]:
            tokens = self.codec.encode(tune)
            return sum(float(log_probs[t.pitch, t.duration]) for t in tokens), len(tokens)

        return _mean_nll(score(t) for t in tunes)

    def to_json(self) -> dict[str, Any]:
        """Counts as nested lists [pitch id][duration id]."""
        return {"counts": self.counts.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UnigramMelodyModel:
        """Inverse of :meth:`to_json`."""
        model = cls()
        counts = np.asarray(data["counts"], dtype=np.int64)
        if counts.shape != model.counts.shape:
            raise ValueError(
                f"baseline counts have shape {counts.shape}, want {model.counts.shape}"
            )
        model.counts = counts
        return model


def _with_position(context: MelodyContext, position: int) -> MelodyContext:
    if context.position == position:
        return context
    return MelodyContext(
        mode=context.mode,
        metre=context.metre,
        position=position,
        bar_length=context.bar_length,
        pitches=context.pitches,
        durations=context.durations,
    )


def _reweight(probs: np.ndarray, temperature: float, weights: np.ndarray | None) -> np.ndarray:
    if temperature != 1.0:
        probs = np.power(probs, 1.0 / temperature)
    if weights is not None:
        weighted = probs * weights
        if weighted.sum() > 0:
            probs = weighted
    return probs / probs.sum()


def _draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    # Inverse-CDF draw: one uniform per token, cheaper than Generator.choice on tiny arrays.
    cumulative = np.cumsum(probs)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(probs) - 1)


def _mean_nll(scores: Iterable[tuple[float, int]]) -> float:
    total, count = 0.0, 0
    for log_prob, n in scores:
        total += log_prob
        count += n
    if count == 0:
        raise ValueError("no notes to score")
    return -total / count
