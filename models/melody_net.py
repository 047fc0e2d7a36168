"""The melody LSTM network and its checkpoints.

Embeddings of the previous note, this note's slot and the conditioning (tokens and labels from
:mod:`models.melody_codec`) feed a stacked LSTM. Two heads factorise the note as the n-gram
does::

    P(note | history) = P(duration | h) * P(pitch | h, duration)

so a sampler can forbid durations that cross the bar line and then pick a pitch that suits the
duration it drew (:mod:`models.melody_sampler`).

Checkpoints are ``torch.save`` files holding a format tag and version, the
:class:`MelodyModelConfig`, the vocabulary they were trained with, free-form ``info`` (the
training metrics) and the state dict. Pure torch and numpy; no I/O library.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from models.errors import CheckpointError, WeightsNotFound
from models.melody_codec import (
    DURATION_START,
    MODES,
    N_DURATIONS,
    N_PITCHES,
    N_SLOTS,
    PHRASE_BARS,
    PITCH_HIGH,
    PITCH_LOW,
    PITCH_START,
    TuneTokens,
)
from models.ngram import DURATIONS, METRE_NAMES
from models.shipped import weights_path

FORMAT = "moodscore-melody-lstm"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = weights_path("melody_lstm.pt")
IGNORE = -100  # target of padding; cross-entropy skips it


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
    slot, phrase : where the note to predict starts (see :func:`~models.melody_codec.encode_tune`).
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
    WeightsNotFound : no file at ``path`` (a :class:`FileNotFoundError` too).
    CheckpointError : the file is not a melody LSTM this code can read (a :class:`ValueError`
        too).
    """
    if not path.is_file():
        raise WeightsNotFound(f"no melody LSTM weights at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds on a foreign or damaged file
        raise CheckpointError(f"{path} is not a torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a moodscore melody LSTM checkpoint")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is version {payload.get('version')}, want {FORMAT_VERSION}")
    vocabulary = payload.get("vocabulary", {})
    if (
        tuple(vocabulary.get("pitch_range", ())) != (PITCH_LOW, PITCH_HIGH)
        or tuple(vocabulary.get("durations", ())) != DURATIONS
        or tuple(vocabulary.get("metres", ())) != METRE_NAMES
    ):
        raise CheckpointError(f"{path} was trained with another vocabulary; retrain it")
    try:
        model = MelodyLSTM(MelodyModelConfig.from_json(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        # A missing key, a config this code does not know, or weights of another shape.
        raise CheckpointError(f"{path} does not fit the melody LSTM ({exc}); retrain it") from exc
    model.to(device).eval()
    return model, dict(payload.get("info", {}))
