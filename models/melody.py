"""The LSTM melody model: note tokens in, the next note out, conditioned on mode, density and
register, streamed bar by bar.

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

Model
-----
Embeddings of the previous note, this note's slot and the conditioning feed a stacked LSTM. Two
heads factorise the note as the n-gram does::

    P(note | history) = P(duration | h) * P(pitch | h, duration)

so a sampler can forbid durations that cross the bar line and then pick a pitch that suits the
duration it drew.

Generation
----------
:class:`MelodySampler` keeps the hidden state between calls and writes one bar per call, with
temperature, top-p and masks (scale, register, leap). Each step is a handful of matrix-vector
products on precomputed tables, so a bar costs a few milliseconds on one CPU core.

Pure torch and numpy; no I/O library (checkpoints are ``torch.save`` files).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from models.melody_data import Mode, TuneRecord
from models.ngram import (
    DURATION_SIXTEENTHS,
    DURATIONS,
    METRE_NAMES,
    METRE_SIXTEENTHS,
    metre_for_beats,
    metre_key,
)

FORMAT = "moodscore-melody-lstm"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "melody_lstm.pt"

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
IGNORE = -100  # target of padding; cross-entropy skips it

_DURATION_16 = np.array(DURATION_SIXTEENTHS, dtype=np.int64)
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


# -- the network ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MelodyModelConfig:
    """Sizes of the network and the label statistics it normalises its inputs with.

    hidden, layers : the LSTM (hidden units per layer, stacked layers).
    dropout : between LSTM layers and before the heads, in training only.
    *_embedding : widths of the input embeddings; ``condition`` is the width of the conditioning
        vector fed to the LSTM and to both heads.
    density_mean, density_std, register_mean, register_std : label statistics of the training
        tunes (labels are standardised before use).
    density_quantiles : 21 training-label quantiles (0 %, 5 %, ... 100 %); a density setting in
        [0, 1] maps to notes per bar through them.
    """

    hidden: int = 256
    layers: int = 2
    dropout: float = 0.25
    pitch_embedding: int = 48
    duration_embedding: int = 16
    slot_embedding: int = 24
    phrase_embedding: int = 8
    condition: int = 16
    density_mean: float = 7.6
    density_std: float = 2.5
    register_mean: float = 8.0
    register_std: float = 3.0
    density_quantiles: tuple[float, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """Plain values (tuples as lists) for a checkpoint."""
        data = asdict(self)
        data["density_quantiles"] = list(self.density_quantiles)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MelodyModelConfig:
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        values = dict(data)
        if "density_quantiles" in values:
            values["density_quantiles"] = tuple(float(v) for v in values["density_quantiles"])
        return cls(**values)

    def density_for(self, setting: float) -> float:
        """Notes per 4/4 bar for a density setting in [0, 1] (the training labels' quantile)."""
        quantiles = self.density_quantiles
        if not quantiles:
            return self.density_mean + 2.0 * self.density_std * (setting - 0.5)
        grid = np.linspace(0.0, 1.0, len(quantiles))
        return float(np.interp(min(max(setting, 0.0), 1.0), grid, quantiles))


class MelodyBatch(NamedTuple):
    """A batch of note sequences; every tensor is [shape=(batch, time)].

    prev_pitch, prev_duration : the previous note's ids (:data:`PITCH_START` /
        :data:`DURATION_START` before the first note).
    slot, phrase : where the note to predict starts (see :func:`encode_tune`).
    mode : 0 major, 1 minor. density, register : float labels (raw, not standardised).
    duration : the note's duration id; the pitch head is conditioned on it (teacher forcing).
    """

    prev_pitch: torch.Tensor
    prev_duration: torch.Tensor
    slot: torch.Tensor
    phrase: torch.Tensor
    mode: torch.Tensor
    density: torch.Tensor
    register: torch.Tensor
    duration: torch.Tensor

    def to(self, device: torch.device | str) -> MelodyBatch:
        """The batch on ``device``."""
        return MelodyBatch(*(t.to(device) for t in self))


LSTMState = tuple[torch.Tensor, torch.Tensor]


class MelodyLSTM(nn.Module):
    """The conditioned melody LSTM (see the module docstring).

    Parameters
    ----------
    config : network sizes and label statistics.
    """

    def __init__(self, config: MelodyModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelodyModelConfig()
        c = self.config
        self.pitch_in = nn.Embedding(N_PITCHES + 1, c.pitch_embedding)
        self.duration_in = nn.Embedding(N_DURATIONS + 1, c.duration_embedding)
        self.slot_in = nn.Embedding(N_SLOTS, c.slot_embedding)
        self.phrase_in = nn.Embedding(PHRASE_BARS, c.phrase_embedding)
        self.mode_in = nn.Embedding(len(MODES), c.condition)
        self.labels_in = nn.Linear(2, c.condition)
        inputs = (
            c.pitch_embedding
            + c.duration_embedding
            + c.slot_embedding
            + c.phrase_embedding
            + c.condition
        )
        self.lstm = nn.LSTM(
            inputs, c.hidden, c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0
        )
        self.drop = nn.Dropout(c.dropout)
        self.duration_head = nn.Linear(c.hidden + c.condition, N_DURATIONS)
        self.duration_for_pitch = nn.Embedding(N_DURATIONS, c.duration_embedding)
        self.pitch_hidden = nn.Linear(c.hidden + c.condition + c.duration_embedding, c.hidden)
        self.pitch_head = nn.Linear(c.hidden, N_PITCHES)

    def conditioning(
        self, mode: torch.Tensor, density: torch.Tensor, register: torch.Tensor
    ) -> torch.Tensor:
        """The conditioning vector [shape=(..., condition)] from labels of matching shapes."""
        c = self.config
        labels = torch.stack(
            (
                (density - c.density_mean) / c.density_std,
                (register - c.register_mean) / c.register_std,
            ),
            dim=-1,
        )
        return torch.tanh(self.mode_in(mode) + self.labels_in(labels))

    def forward(
        self, batch: MelodyBatch, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        """Logits of every note of the batch.

        Returns
        -------
        duration_logits : torch.Tensor [shape=(batch, time, N_DURATIONS)]
        pitch_logits : torch.Tensor [shape=(batch, time, N_PITCHES)], given the true durations.
        state : the LSTM's (h, c) after the last step, each [shape=(layers, batch, hidden)].
        """
        condition = self.conditioning(batch.mode, batch.density, batch.register)
        inputs = torch.cat(
            (
                self.pitch_in(batch.prev_pitch),
                self.duration_in(batch.prev_duration),
                self.slot_in(batch.slot),
                self.phrase_in(batch.phrase),
                condition,
            ),
            dim=-1,
        )
        output, new_state = self.lstm(inputs, state)
        features = torch.cat((self.drop(output), condition), dim=-1)
        duration_logits = self.duration_head(features)
        # Padding carries IGNORE targets; any valid id will do for its embedding.
        target = batch.duration.clamp(min=0)
        hidden = torch.relu(
            self.pitch_hidden(torch.cat((features, self.duration_for_pitch(target)), dim=-1))
        )
        pitch_logits = self.pitch_head(self.drop(hidden))
        return duration_logits, pitch_logits, new_state


def note_losses(
    duration_logits: torch.Tensor,
    pitch_logits: torch.Tensor,
    target_duration: torch.Tensor,
    target_pitch: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """Summed negative log-likelihood (nats) of the notes that are not padding, and their count.

    A note's NLL is its duration's plus its pitch's, as in the n-gram's ``log_prob``.
    """
    duration_nll = nn.functional.cross_entropy(
        duration_logits.reshape(-1, N_DURATIONS),
        target_duration.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    pitch_nll = nn.functional.cross_entropy(
        pitch_logits.reshape(-1, N_PITCHES),
        target_pitch.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    count = int((target_pitch != IGNORE).sum())
    return duration_nll + pitch_nll, count


def tunes_batch(
    tunes: Sequence[TuneTokens],
) -> tuple[MelodyBatch, torch.Tensor]:
    """Tunes side by side from their first note (zero state), padded to the longest.

    Returns the batch and the target pitches [shape=(batch, time)], IGNORE on padding.
    """
    length = max(len(t.pitch) for t in tunes)
    shape = (len(tunes), length)
    prev_pitch = np.full(shape, PITCH_START, dtype=np.int64)
    prev_duration = np.full(shape, DURATION_START, dtype=np.int64)
    slot = np.zeros(shape, dtype=np.int64)
    phrase = np.zeros(shape, dtype=np.int64)
    mode = np.zeros(shape, dtype=np.int64)
    density = np.zeros(shape, dtype=np.float32)
    register = np.zeros(shape, dtype=np.float32)
    duration = np.full(shape, IGNORE, dtype=np.int64)
    pitch = np.full(shape, IGNORE, dtype=np.int64)
    for row, tune in enumerate(tunes):
        n = len(tune.pitch)
        prev_pitch[row, 1:n] = tune.pitch[:-1]
        prev_duration[row, 1:n] = tune.duration[:-1]
        slot[row, :n] = tune.slot
        phrase[row, :n] = tune.phrase
        mode[row, :] = MODES.index(tune.labels.mode)
        density[row, :] = tune.labels.density
        register[row, :] = tune.labels.register
        duration[row, :n] = tune.duration
        pitch[row, :n] = tune.pitch
    batch = MelodyBatch(
        *(
            torch.from_numpy(a)
            for a in (prev_pitch, prev_duration, slot, phrase, mode, density, register, duration)
        )
    )
    return batch, torch.from_numpy(pitch)


@torch.inference_mode()
def nll_per_note(
    model: MelodyLSTM,
    tunes: Iterable[TuneTokens],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> float:
    """Mean negative log-likelihood per note (nats) of whole tunes, each from a zero state."""
    was_training = model.training
    model.eval()
    ordered = sorted(tunes, key=lambda t: len(t.pitch))
    total, count = 0.0, 0
    try:
        for start in range(0, len(ordered), batch_size):
            batch, pitch = tunes_batch(ordered[start : start + batch_size])
            duration_logits, pitch_logits, _ = model(batch.to(device))
            nll, n = note_losses(
                duration_logits, pitch_logits, batch.duration.to(device), pitch.to(device)
            )
            total += float(nll)
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no notes to score")
    return total / count


# -- checkpoints ---------------------------------------------------------------------------


def save_checkpoint(model: MelodyLSTM, path: Path, *, info: dict[str, Any] | None = None) -> None:
    """Write the weights, the model config and ``info`` (plain JSON-like values) with
    ``torch.save``; tensors are stored on the CPU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": model.config.to_json(),
        "vocabulary": {
            "pitch_range": [PITCH_LOW, PITCH_HIGH],
            "durations": list(DURATIONS),
            "metres": list(METRE_NAMES),
            "phrase_bars": PHRASE_BARS,
        },
        # A JSON round trip leaves plain types only (torch.__version__ is a str subclass that
        # weights_only loading refuses).
        "info": json.loads(json.dumps(info or {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    torch.save(payload, path)


def load_checkpoint(
    path: Path = DEFAULT_WEIGHTS, *, device: torch.device | str = "cpu"
) -> tuple[MelodyLSTM, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; the model is in eval mode.

    Raises
    ------
    FileNotFoundError : no file at ``path``.
    ValueError : the file is not a melody LSTM this code can read.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no melody LSTM weights at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a foreign or damaged file
        raise ValueError(f"{path} is not a torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a moodscore melody LSTM checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} is version {payload.get('version')}, want {FORMAT_VERSION}")
    vocabulary = payload.get("vocabulary", {})
    if (
        tuple(vocabulary.get("pitch_range", ())) != (PITCH_LOW, PITCH_HIGH)
        or tuple(vocabulary.get("durations", ())) != DURATIONS
        or tuple(vocabulary.get("metres", ())) != METRE_NAMES
    ):
        raise ValueError(f"{path} was trained with another vocabulary; retrain it")
    model = MelodyLSTM(MelodyModelConfig.from_json(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return model, dict(payload.get("info", {}))


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when present, else CPU; ``"cpu"`` / ``"cuda"`` as named.

    Raises ValueError when ``"cuda"`` is asked for and torch sees no GPU.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("models.device is 'cuda' but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


# -- streaming generation ------------------------------------------------------------------


class Token(NamedTuple):
    """A generated note: pitch id (in the key of the bar it was written for) and duration id."""

    pitch: int
    duration: int


@dataclass(frozen=True, slots=True)
class BarSpec:
    """What the next bar should be.

    tonic : pitch class of the key, 0-11. mode : ``"major"`` or ``"minor"``.
    density : sounding notes per 4/4 bar to ask the model for (see
        :meth:`MelodyModelConfig.density_for`).
    register : lowest and highest MIDI pitch allowed; its middle is the register label.
    beats_per_bar : quarter notes in the bar; 5 and 7 are phrased on 4/4 positions.
    phrase_bar : the bar's place in its 8-bar phrase (0 opens a phrase, 7 closes it).
    scale : allowed pitch classes (absolute, 0 = C), or None for no scale constraint.
    max_leap : the largest interval in semitones from the previous sounding note, or None.
    """

    tonic: int
    mode: Mode
    density: float
    register: tuple[int, int] = (60, 84)
    beats_per_bar: int = 4
    phrase_bar: int = 0
    scale: frozenset[int] | None = None
    max_leap: int | None = 12

    @property
    def sixteenths(self) -> int:
        """Length of the bar in 16ths."""
        return 4 * self.beats_per_bar


class SamplerState(NamedTuple):
    """A snapshot of a :class:`MelodySampler` (restore it to take a bar back)."""

    h: tuple[torch.Tensor, ...]
    c: tuple[torch.Tensor, ...]
    pending: Token | None
    last_midi: int | None


class MelodySampler:
    """Stateful bar-by-bar melody generator on a trained :class:`MelodyLSTM`.

    The hidden state runs on from bar to bar and across changes of key, mode, density and
    register: each bar's :class:`BarSpec` only changes the conditioning and the masks.

    Parameters
    ----------
    model : the trained network (its device is used; batch 1, no gradients).
    rng : the caller's generator; the same generator state gives the same notes.
    temperature : > 0; below 1 sharpens the model's choices, above 1 flattens them.
    top_p : nucleus sampling: draw from the smallest set of tokens holding this much probability
        (after temperature and masks); 1 disables it.
    """

    def __init__(
        self,
        model: MelodyLSTM,
        *,
        rng: np.random.Generator,
        temperature: float = 0.9,
        top_p: float = 0.95,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.model = model
        self.rng = rng
        self.temperature = temperature
        self.top_p = top_p
        device = next(model.parameters()).device
        self._steps: _NumpySteps | _TorchSteps = (
            _NumpySteps(model) if device.type == "cpu" else _TorchSteps(model)
        )
        self._threads = _one_blas_thread if device.type == "cpu" else contextlib.nullcontext
        zeros = self._steps.zeros()
        self._h: tuple[Any, ...] = tuple(zeros for _ in range(model.config.layers))
        self._c: tuple[Any, ...] = tuple(zeros for _ in range(model.config.layers))
        self._pending: Token | None = None  # the last note, not yet fed to the LSTM
        self._last_midi: int | None = None
        self._bar_key: tuple[Any, ...] | None = None
        self._condition: _BarCondition | None = None
        self._static_mask = np.ones(N_PITCHES, dtype=bool)
        self._midi = np.zeros(N_PITCHES, dtype=np.int64)
        self._relative = np.arange(N_PITCHES, dtype=np.int64) + PITCH_LOW
        self._relative[REST] = 0

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> SamplerState:
        """The current state (cheap: state arrays are replaced, never modified in place)."""
        return SamplerState(self._h, self._c, self._pending, self._last_midi)

    def restore(self, state: SamplerState) -> None:
        """Go back to a :meth:`snapshot`."""
        self._h, self._c, self._pending, self._last_midi = state

    @property
    def last_midi(self) -> int | None:
        """MIDI pitch of the last sounding note written or fed, if any."""
        return self._last_midi

    # -- generation -------------------------------------------------------------------------

    @torch.inference_mode()
    def bar(
        self,
        spec: BarSpec,
        *,
        prefix: Sequence[Token] = (),
        rhythm: Sequence[int] | None = None,
    ) -> list[Token]:
        """Write one bar: ``prefix`` notes as given, then sampled notes until the bar is full.

        Parameters
        ----------
        spec : the key, labels, bar length and masks of this bar.
        prefix : notes to play first, unchanged (a motif repeat); they run through the LSTM so
            the state knows them. Those that would overflow the bar are dropped.
        rhythm : duration ids for the notes after the prefix (a varied repeat keeps its rhythm
            and draws new pitches); when they run out or would overflow, sampling takes over.

        Returns the bar's notes, prefix included; their durations sum to the bar length.
        """
        with self._threads():
            return self._bar(spec, prefix, rhythm)

    def _bar(
        self, spec: BarSpec, prefix: Sequence[Token], rhythm: Sequence[int] | None
    ) -> list[Token]:
        condition = self._prepare(spec)
        metre = metre_for_beats(spec.beats_per_bar)
        slot_base = METRE_NAMES.index(metre) * MAX_BAR
        metre_bar = METRE_SIXTEENTHS[metre]
        phrase = spec.phrase_bar % PHRASE_BARS
        length = spec.sixteenths
        position = 0
        notes: list[Token] = []
        for token in prefix:
            step = int(_DURATION_16[token.duration])
            if position + step > length:
                break
            self._advance(condition, slot_base + position % metre_bar, phrase)
            self._accept(token)
            notes.append(token)
            position += step
        forced = list(rhythm) if rhythm is not None else []
        index = 0
        while position < length:
            remaining = length - position
            output = self._advance(condition, slot_base + position % metre_bar, phrase)
            duration_logits, pitch_part = self._steps.heads(output, condition)
            if index < len(forced) and _DURATION_16[forced[index]] <= remaining:
                duration = forced[index]
            else:
                duration = self._draw(duration_logits, remaining >= _DURATION_16)
            index += 1
            pitch_logits = self._steps.pitch_logits(pitch_part, duration)
            pitch = self._draw(pitch_logits, self._pitch_mask(spec))
            token = Token(pitch, duration)
            self._accept(token)
            notes.append(token)
            position += int(_DURATION_16[duration])
        return notes

    def _accept(self, token: Token) -> None:
        self._pending = token
        if token.pitch != REST:
            self._last_midi = int(self._midi[token.pitch])

    def _prepare(self, spec: BarSpec) -> _BarCondition:
        """Conditioning and static pitch mask of a bar, recomputed only when they change."""
        key = (spec.mode, spec.density, spec.register, spec.tonic, spec.scale)
        if self._condition is None or key != self._bar_key:
            low, high = spec.register
            register = 0.5 * (low + high) - reference_pitch(spec.tonic)
            with torch.no_grad():
                vector = self.model.conditioning(
                    torch.tensor(MODES.index(spec.mode)),
                    torch.tensor(float(spec.density)),
                    torch.tensor(float(register)),
                )
            self._condition = self._steps.condition(vector.to(self._steps.device))
            self._midi = reference_pitch(spec.tonic) + self._relative
            mask = (self._midi >= low) & (self._midi <= high)
            if spec.scale is not None:
                in_scale = np.zeros(12, dtype=bool)
                in_scale[list(spec.scale)] = True
                mask &= in_scale[self._midi % 12]
            mask[REST] = True
            self._static_mask = mask
            self._bar_key = key
        return self._condition

    def _advance(self, condition: _BarCondition, slot: int, phrase: int) -> Any:
        """Feed the pending note (or the start symbol) and return the top layer's output."""
        pending = self._pending
        if pending is None:
            previous = PITCH_START * (N_DURATIONS + 1) + DURATION_START
        else:
            previous = pending.pitch * (N_DURATIONS + 1) + pending.duration
        self._h, self._c = self._steps.step(
            self._h, self._c, condition, previous, slot * PHRASE_BARS + phrase
        )
        self._pending = None
        return self._h[-1]

    def _pitch_mask(self, spec: BarSpec) -> np.ndarray:
        allowed = self._static_mask
        if spec.max_leap is not None and self._last_midi is not None:
            near = allowed & (np.abs(self._midi - self._last_midi) <= spec.max_leap)
            # After a register change the old note may be far away: then only the register and
            # the scale bind, and the line jumps once to get there.
            if near[:REST].any():
                near[REST] = True
                allowed = near
        return allowed

    def _draw(self, logits: np.ndarray, allowed: np.ndarray) -> int:
        values = logits / self.temperature if self.temperature != 1.0 else logits
        probs = np.exp(values - values[allowed].max()) * allowed
        if self.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = int(np.searchsorted(cumulative, self.top_p * cumulative[-1])) + 1
            index = int(
                np.searchsorted(
                    cumulative[:keep], self.rng.random() * cumulative[keep - 1], "right"
                )
            )
            return int(order[min(index, keep - 1)])
        cumulative = np.cumsum(probs)
        index = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], "right"))
        return min(index, len(probs) - 1)


def time_bars(
    model: MelodyLSTM, *, bars: int, temperature: float = 0.9, top_p: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Speed of :meth:`MelodySampler.bar`: ms per 4/4 bar in D major, density 0.9 and 0.3
    alternating every 4 bars, scale constraint on; p50, p95, mean, notes per bar and count."""
    import time

    sampler = MelodySampler(
        model, rng=np.random.default_rng(seed), temperature=temperature, top_p=top_p
    )
    scale = frozenset((2 + step) % 12 for step in (0, 2, 4, 5, 7, 9, 11))
    dense, sparse = model.config.density_for(0.9), model.config.density_for(0.3)
    timings = np.empty(bars)
    notes = 0
    for bar in range(bars):
        spec = BarSpec(
            tonic=2,
            mode="major",
            density=dense if bar % 8 < 4 else sparse,
            phrase_bar=bar % PHRASE_BARS,
            scale=scale,
        )
        start = time.perf_counter()
        notes += len(sampler.bar(spec))
        timings[bar] = time.perf_counter() - start
    ms = timings * 1e3
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
        "mean": round(float(ms.mean()), 3),
        "notes_per_bar": round(notes / bars, 2),
        "n": bars,
    }


@dataclass(frozen=True, slots=True)
class _Weights:
    """The network rearranged for batch-1 steps (tensors on the model's device).

    The first layer's input is a concatenation of embeddings, so its gate pre-activation is a sum
    of per-embedding terms: the previous note's (pitch and duration together), the slot's and
    phrase bar's together, and the conditioning's (once per bar). Each is a table row; a step is
    then two lookups and one matrix-vector product per layer, and the two heads share one
    product.
    """

    previous_gates: torch.Tensor  # [(N_PITCHES + 1) * (N_DURATIONS + 1), 4H]
    place_gates: torch.Tensor  # [N_SLOTS * PHRASE_BARS, 4H]
    condition_weight: torch.Tensor  # [4H, condition]
    bias0: torch.Tensor  # [4H]
    w_hh0: torch.Tensor  # [4H, H]
    upper: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # per upper layer: [4H, 2H], [4H]
    heads_w: torch.Tensor  # [N_DURATIONS + H, H]: duration logits, then pitch-MLP hidden units
    heads_cw: torch.Tensor  # [N_DURATIONS + H, condition]
    heads_b: torch.Tensor  # [N_DURATIONS + H]
    pitch_duration: torch.Tensor  # [N_DURATIONS, H]: the drawn duration's share of the MLP
    pitch_out_w: torch.Tensor  # [N_PITCHES, H]
    pitch_out_b: torch.Tensor  # [N_PITCHES]

    @classmethod
    @torch.no_grad()
    def of(cls, model: MelodyLSTM) -> _Weights:
        c = model.config
        h = c.hidden
        lstm = model.lstm
        widths = [
            c.pitch_embedding,
            c.duration_embedding,
            c.slot_embedding,
            c.phrase_embedding,
            c.condition,
        ]

        def weight(name: str) -> torch.Tensor:
            return lstm.get_parameter(name)

        pitch_w, duration_w, slot_w, phrase_w, condition_w = torch.split(
            weight("weight_ih_l0"), widths, dim=1
        )
        pitch_gates = model.pitch_in.weight @ pitch_w.T
        duration_gates = model.duration_in.weight @ duration_w.T
        slot_gates = model.slot_in.weight @ slot_w.T
        phrase_gates = model.phrase_in.weight @ phrase_w.T
        upper = []
        for layer in range(1, c.layers):
            matrix = torch.cat(
                (weight(f"weight_ih_l{layer}"), weight(f"weight_hh_l{layer}")), dim=1
            )
            bias = weight(f"bias_ih_l{layer}") + weight(f"bias_hh_l{layer}")
            upper.append((matrix, bias))
        pitch_hidden = model.pitch_hidden.weight
        return cls(
            previous_gates=(pitch_gates[:, None, :] + duration_gates[None, :, :]).reshape(
                -1, 4 * h
            ),
            place_gates=(slot_gates[:, None, :] + phrase_gates[None, :, :]).reshape(-1, 4 * h),
            condition_weight=condition_w.clone(),
            bias0=weight("bias_ih_l0") + weight("bias_hh_l0"),
            w_hh0=weight("weight_hh_l0").clone(),
            upper=tuple(upper),
            heads_w=torch.cat((model.duration_head.weight[:, :h], pitch_hidden[:, :h])),
            heads_cw=torch.cat(
                (model.duration_head.weight[:, h:], pitch_hidden[:, h : h + c.condition])
            ),
            heads_b=torch.cat((model.duration_head.bias, model.pitch_hidden.bias)),
            pitch_duration=model.duration_for_pitch.weight @ pitch_hidden[:, h + c.condition :].T,
            pitch_out_w=model.pitch_head.weight.clone(),
            pitch_out_b=model.pitch_head.bias.clone(),
        )


class _BarCondition(NamedTuple):
    """Per-bar precomputations: the conditioning's share of the first layer's gates and of the
    heads (numpy arrays on the CPU, tensors elsewhere)."""

    gates: Any
    heads_bias: Any


class _TorchSteps:
    """Batch-1 steps as torch operations, for a model on a GPU."""

    def __init__(self, model: MelodyLSTM) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.w = _Weights.of(model)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.model.config.hidden, device=self.device)

    @torch.no_grad()
    def condition(self, vector: torch.Tensor) -> _BarCondition:
        w = self.w
        return _BarCondition(
            gates=w.condition_weight @ vector + w.bias0,
            heads_bias=w.heads_cw @ vector + w.heads_b,
        )

    def step(
        self, h: tuple[Any, ...], c: tuple[Any, ...], condition: _BarCondition, previous: int,
        place: int,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:  # fmt: skip
        w = self.w
        base = condition.gates + w.previous_gates[previous] + w.place_gates[place]
        below, cell = _torch_cell(torch.addmv(base, w.w_hh0, h[0]), c[0])
        new_h, new_c = [below], [cell]
        for layer, (weight, bias) in enumerate(w.upper, start=1):
            below, cell = _torch_cell(
                torch.addmv(bias, weight, torch.cat((below, h[layer]))), c[layer]
            )
            new_h.append(below)
            new_c.append(cell)
        return tuple(new_h), tuple(new_c)

    def heads(self, output: Any, condition: _BarCondition) -> tuple[np.ndarray, Any]:
        both = torch.addmv(condition.heads_bias, self.w.heads_w, output)
        return both[:N_DURATIONS].to("cpu", torch.float64).numpy(), both[N_DURATIONS:]

    def pitch_logits(self, pitch_part: Any, duration: int) -> np.ndarray:
        hidden = torch.relu(pitch_part + self.w.pitch_duration[duration])
        logits = torch.addmv(self.w.pitch_out_b, self.w.pitch_out_w, hidden)
        return logits.to("cpu", torch.float64).numpy()


class _NumpySteps:
    """Batch-1 steps in numpy float32, for a model on the CPU: its matrix-vector products cost a
    third of torch's single-threaded ones and need no thread pool."""

    def __init__(self, model: MelodyLSTM) -> None:
        self.model = model
        self.device = torch.device("cpu")
        w = _Weights.of(model)

        def array(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        self.previous_gates = array(w.previous_gates)
        self.place_gates = array(w.place_gates)
        self.condition_weight = array(w.condition_weight)
        self.bias0 = array(w.bias0)
        self.w_hh0 = array(w.w_hh0)
        self.upper = [(array(weight), array(bias)) for weight, bias in w.upper]
        self.heads_w = array(w.heads_w)
        self.heads_cw = array(w.heads_cw)
        self.heads_b = array(w.heads_b)
        self.pitch_duration = array(w.pitch_duration)
        self.pitch_out_w = array(w.pitch_out_w)
        self.pitch_out_b = array(w.pitch_out_b)

    def zeros(self) -> np.ndarray:
        return np.zeros(self.model.config.hidden, dtype=np.float32)

    def condition(self, vector: torch.Tensor) -> _BarCondition:
        v = vector.detach().cpu().numpy().astype(np.float32)
        return _BarCondition(
            gates=self.condition_weight @ v + self.bias0,
            heads_bias=self.heads_cw @ v + self.heads_b,
        )

    def step(
        self, h: tuple[Any, ...], c: tuple[Any, ...], condition: _BarCondition, previous: int,
        place: int,
    ) -> tuple[tuple[Any, ...], tuple[Any, ...]]:  # fmt: skip
        gates = self.w_hh0 @ h[0]
        gates += condition.gates
        gates += self.previous_gates[previous]
        gates += self.place_gates[place]
        below, cell = _numpy_cell(gates, c[0])
        new_h, new_c = [below], [cell]
        for layer, (weight, bias) in enumerate(self.upper, start=1):
            gates = weight @ np.concatenate((below, h[layer]))
            gates += bias
            below, cell = _numpy_cell(gates, c[layer])
            new_h.append(below)
            new_c.append(cell)
        return tuple(new_h), tuple(new_c)

    def heads(self, output: Any, condition: _BarCondition) -> tuple[np.ndarray, Any]:
        both = self.heads_w @ output
        both += condition.heads_bias
        return both[:N_DURATIONS].astype(np.float64), both[N_DURATIONS:]

    def pitch_logits(self, pitch_part: Any, duration: int) -> np.ndarray:
        hidden = np.maximum(pitch_part + self.pitch_duration[duration], 0.0)
        logits = self.pitch_out_w @ hidden
        logits += self.pitch_out_b
        return logits.astype(np.float64)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> Any:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread while a bar is sampled: its matrix-vector products are small,
    and a second BLAS thread that has to wait for a busy core makes each one 100 times slower."""
    with _blas_controller().limit(limits=1):
        yield


def _torch_cell(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # PyTorch's gate order: input, forget, cell candidate, output. One sigmoid over all four
    # (the candidate's is discarded) costs less than four calls.
    size = cell.shape[0]
    squashed = torch.sigmoid(gates)
    candidate = torch.tanh(gates[2 * size : 3 * size])
    new_cell = torch.addcmul(squashed[size : 2 * size] * cell, squashed[:size], candidate)
    return squashed[3 * size :] * torch.tanh(new_cell), new_cell


def _numpy_cell(gates: np.ndarray, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = cell.shape[0]
    squashed = 1.0 / (1.0 + np.exp(-gates))
    new_cell = squashed[size : 2 * size] * cell + squashed[:size] * np.tanh(
        gates[2 * size : 3 * size]
    )
    return squashed[3 * size :] * np.tanh(new_cell), new_cell
