"""Training the melody LSTM: streams of tunes, truncated back-propagation, held-out scoring.

An epoch shuffles the training tunes, moves each by a random transposition (in this token space, an
octave shift of its pitch ids when the tonic wraps; see :func:`models.melody_codec.shift_octaves`),
and strings them into *episodes* of roughly ``episode_notes`` notes. An episode starts from a zero
state and the start symbol, like a held-out tune is scored; inside it, each tune follows the
previous one without a reset, its first note seeing the last note of the tune before under new
labels, which is what a live stream does when the mood changes. Episodes are cut into chunks of
``chunk`` notes; the hidden state is carried from chunk to chunk (truncated BPTT) and zeroed where
an episode starts.

Pure torch and numpy: progress and plots belong to the caller (``on_step``, the returned history).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from models.melody_codec import DURATION_START, MODES, PITCH_START, TuneTokens, shift_octaves
from models.melody_net import (
    IGNORE,
    MelodyBatch,
    MelodyLSTM,
    MelodyModelConfig,
    nll_per_note,
    note_losses,
)

# Transpositions drawn per tune and epoch, semitones; the tune must stay inside MIDI 48-96.
SHIFTS = tuple(range(-5, 7))
MIDI_LOW, MIDI_HIGH = 48, 96


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """How to train.

    epochs : passes over the training tunes.
    batch : parallel lanes of episodes. chunk : notes per truncated-BPTT step.
    episode_notes : notes strung together before the state is reset.
    learning_rate : peak AdamW rate, reached after ``warmup_steps`` and cosine-decayed to 5 %.
    weight_decay, clip : AdamW decay and the gradient-norm clip.
    seed : seeds the initialisation, the epoch order, transpositions and dropout.
    augment : draw a transposition per tune and epoch.
    """

    epochs: int = 20
    batch: int = 32
    chunk: int = 128
    episode_notes: int = 1024
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    clip: float = 1.0
    seed: int = 0
    augment: bool = True


@dataclass(slots=True)
class TrainingHistory:
    """Per-epoch figures: mean training NLL per note, validation NLL per note (None without a
    validation set), seconds; and the best epoch by validation NLL (1-based)."""

    train_nll: list[float] = field(default_factory=list)
    valid_nll: list[float | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    best_epoch: int = 0


def steps_per_epoch(notes: int, config: TrainingConfig) -> int:
    """About how many optimiser steps an epoch of ``notes`` training notes takes (padding
    included), for schedules and progress bars."""
    lanes = max(1, min(config.batch, math.ceil(notes / config.episode_notes)))
    return max(1, math.ceil(notes * 1.1 / (lanes * config.chunk)))


def label_statistics(tunes: Sequence[TuneTokens], base: MelodyModelConfig) -> MelodyModelConfig:
    """``base`` with the density and register statistics of ``tunes`` (for a model from scratch)."""
    densities = np.array([t.labels.density for t in tunes], dtype=np.float64)
    registers = np.array([t.labels.register for t in tunes], dtype=np.float64)
    return MelodyModelConfig(
        **{
            **base.to_json(),
            "density_mean": float(densities.mean()),
            "density_std": float(max(densities.std(), 0.5)),
            "register_mean": float(registers.mean()),
            "register_std": float(max(registers.std(), 0.5)),
            "density_quantiles": tuple(
                round(float(q), 3) for q in np.quantile(densities, np.linspace(0, 1, 21))
            ),
        }
    )


def _transposed(
    tune: TuneTokens, tonic: int, lowest: int, highest: int, rng: np.random.Generator
) -> TuneTokens:
    shift = int(rng.choice(SHIFTS))
    if lowest + shift < MIDI_LOW or highest + shift > MIDI_HIGH:
        return tune
    return shift_octaves(tune, (tonic + shift) // 12) or tune


@dataclass(frozen=True, slots=True)
class TrainingTune:
    """A tune ready for training: its tokens and what transposition needs (tonic, MIDI range)."""

    tokens: TuneTokens
    tonic: int
    lowest: int
    highest: int


def epoch_chunks(
    tunes: Sequence[TrainingTune],
    *,
    rng: np.random.Generator,
    batch: int,
    chunk: int,
    episode_notes: int,
    augment: bool,
) -> tuple[list[tuple[MelodyBatch, torch.Tensor, torch.Tensor]], int]:
    """One epoch as a list of (batch, target pitches, reset [shape=(lanes,)] bool) chunks, each
    tensor [shape=(lanes, chunk)], and the number of real notes in it. ``lanes`` is ``batch``, or
    the number of episodes when there are fewer."""
    order = rng.permutation(len(tunes))
    episodes: list[list[TuneTokens]] = [[]]
    size = 0
    for index in order:
        item = tunes[int(index)]
        tokens = (
            _transposed(item.tokens, item.tonic, item.lowest, item.highest, rng)
            if augment
            else item.tokens
        )
        if size >= episode_notes:
            episodes.append([])
            size = 0
        episodes[-1].append(tokens)
        size += len(tokens.pitch)

    # A small corpus (fine-tuning on a few files) gets as many lanes as it has episodes.
    batch = max(1, min(batch, len(episodes)))
    # Longest episodes first, each onto the lane that is shortest so far: lanes end level.
    lanes: list[list[np.ndarray]] = [[] for _ in range(batch)]
    lane_chunks = [0] * batch
    resets: list[list[bool]] = [[] for _ in range(batch)]
    arrays = [_episode_arrays(e, chunk) for e in episodes]
    arrays.sort(key=lambda a: -a.shape[1])
    for episode in arrays:
        lane = int(np.argmin(lane_chunks))
        n_chunks = episode.shape[1] // chunk
        lanes[lane].append(episode)
        resets[lane].extend([True] + [False] * (n_chunks - 1))
        lane_chunks[lane] += n_chunks
    total = max(lane_chunks)
    rows = []
    for lane in range(batch):
        missing = total - lane_chunks[lane]
        if missing:
            lanes[lane].append(_padding(missing * chunk))
            resets[lane].extend([True] * missing)
        rows.append(np.concatenate(lanes[lane], axis=1) if lanes[lane] else _padding(0))
    data = np.stack(rows)  # [batch, 9 features, total * chunk]
    reset = torch.tensor(resets, dtype=torch.bool)  # [batch, total]
    chunks = []
    for k in range(total):
        part = data[:, :, k * chunk : (k + 1) * chunk]
        batch_part = MelodyBatch(
            prev_pitch=torch.from_numpy(part[:, 0].astype(np.int64)),
            prev_duration=torch.from_numpy(part[:, 1].astype(np.int64)),
            slot=torch.from_numpy(part[:, 2].astype(np.int64)),
            phrase=torch.from_numpy(part[:, 3].astype(np.int64)),
            mode=torch.from_numpy(part[:, 4].astype(np.int64)),
            density=torch.from_numpy(part[:, 5].astype(np.float32)),
            register=torch.from_numpy(part[:, 6].astype(np.float32)),
            duration=torch.from_numpy(part[:, 7].astype(np.int64)),
        )
        chunks.append((batch_part, torch.from_numpy(part[:, 8].astype(np.int64)), reset[:, k]))
    notes = sum(len(t.pitch) for e in episodes for t in e)
    return chunks, notes


def _episode_arrays(tunes: Sequence[TuneTokens], chunk: int) -> np.ndarray:
    """Features of an episode [shape=(9, n)], padded to a whole number of chunks.

    Rows: prev pitch, prev duration, slot, phrase, mode, density, register, duration, pitch.
    """
    n = sum(len(t.pitch) for t in tunes)
    padded = max(chunk, math.ceil(n / chunk) * chunk)
    out = _padding(padded)
    position = 0
    prev_pitch, prev_duration = PITCH_START, DURATION_START
    for tune in tunes:
        end = position + len(tune.pitch)
        out[0, position] = prev_pitch
        out[1, position] = prev_duration
        out[0, position + 1 : end] = tune.pitch[:-1]
        out[1, position + 1 : end] = tune.duration[:-1]
        out[2, position:end] = tune.slot
        out[3, position:end] = tune.phrase
        out[4, position:end] = MODES.index(tune.labels.mode)
        out[5, position:end] = tune.labels.density
        out[6, position:end] = tune.labels.register
        out[7, position:end] = tune.duration
        out[8, position:end] = tune.pitch
        prev_pitch, prev_duration = int(tune.pitch[-1]), int(tune.duration[-1])
        position = end
    return out


def _padding(n: int) -> np.ndarray:
    out = np.zeros((9, n), dtype=np.float64)
    out[0] = PITCH_START
    out[1] = DURATION_START
    out[5] = 7.0  # any finite label; padding is never scored
    out[7] = IGNORE
    out[8] = IGNORE
    return out


def train_model(
    model: MelodyLSTM,
    train: Sequence[TrainingTune],
    valid: Sequence[TuneTokens],
    config: TrainingConfig,
    *,
    device: torch.device | str = "cpu",
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
) -> TrainingHistory:
    """Train ``model`` in place; keep the weights of the best validation epoch.

    ``on_step(epoch, step, nll_per_note)`` is called after every optimiser step (progress bars),
    ``on_epoch(epoch, train_nll, valid_nll)`` after every epoch. Without validation tunes the last
    epoch's weights are kept.
    """
    if not train:
        raise ValueError("no training tunes")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model.to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    notes_per_epoch = sum(len(t.tokens.pitch) for t in train)
    total_steps = steps_per_epoch(notes_per_epoch, config) * config.epochs

    def rate(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(
            1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        )
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
    history = TrainingHistory()
    best: dict[str, torch.Tensor] | None = None
    best_nll = math.inf
    layers, hidden = model.config.layers, model.config.hidden
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        chunks, _ = epoch_chunks(
            train,
            rng=rng,
            batch=config.batch,
            chunk=config.chunk,
            episode_notes=config.episode_notes,
            augment=config.augment,
        )
        h = torch.zeros(layers, chunks[0][0].slot.shape[0], hidden, device=device)
        c = torch.zeros_like(h)
        total, count = 0.0, 0
        for step, (batch, pitch, reset) in enumerate(chunks):
            keep = (~reset).to(device=device, dtype=h.dtype).view(1, -1, 1)
            batch = batch.to(device)
            pitch = pitch.to(device)
            duration_logits, pitch_logits, (h, c) = model(batch, (h * keep, c * keep))
            h, c = h.detach(), c.detach()
            nll, n = note_losses(duration_logits, pitch_logits, batch.duration, pitch)
            if n == 0:
                continue
            loss = nll / n
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimiser.step()
            scheduler.step()
            total += float(nll.detach())
            count += n
            if on_step is not None:
                on_step(epoch, step, float(loss.detach()))
        history.train_nll.append(total / max(count, 1))
        if valid:
            valid_nll = nll_per_note(model, valid, device=device)
            history.valid_nll.append(valid_nll)
            if valid_nll < best_nll:
                best_nll = valid_nll
                history.best_epoch = epoch
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            history.valid_nll.append(None)
            history.best_epoch = epoch
        history.seconds.append(time.perf_counter() - started)
        if on_epoch is not None:
            on_epoch(epoch, history.train_nll[-1], history.valid_nll[-1])
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return history
