"""``moodscore train-melody``: train the melody LSTM, or fine-tune it on your own MIDI files.

From scratch it reads the cached folk-tune dataset (``tools/prepare_melodies.py``); with
``--init WEIGHTS --data MY_MIDI_DIR`` it continues training shipped (or any) weights on the top
melodic line of each MIDI file in a folder, at a lower learning rate, keeping the label statistics
the weights were trained with. Either way the tunes are split 90/10 by tune (split seed 0, so the
held-out tunes are the n-gram's), a 5 % validation slice of the training tunes picks the best
epoch, and beside the weights it writes ``<name>.metrics.json`` and a loss curve
``<name>.loss.png``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.config import REPO_ROOT
from daemon.errors import ConfigError, ModelError
from models.melody_data import METRES, MelodyNote, Mode, TuneRecord, load_dataset, split_by_tune

log = logging.getLogger("moodscore.training")

DEFAULT_DATA = REPO_ROOT / ".cache" / "melodies.json.gz"
SPLIT_SEED = 0  # the n-gram's split: both models are scored on the same held-out tunes
VALID_SEED = 1
TEST_FRACTION = 0.1
VALID_FRACTION = 0.05
MIN_VALID_TUNES = 20  # below this many training tunes, no validation slice (keep the last epoch)
SCRATCH_EPOCHS = 20
FINE_TUNE_EPOCHS = 8
SCRATCH_LEARNING_RATE = 2e-3
FINE_TUNE_LEARNING_RATE = 5e-4
MIDI_SUFFIXES = (".mid", ".midi")
SMALL_CORPUS_NOTES = 20_000
GRID = 0.25  # quarter lengths: a 16th note
MIN_NOTES = 8


@dataclass(frozen=True, slots=True)
class TrainRequest:
    """What ``train-melody`` was asked to do.

    output : where the weights go (``.pt``); metrics and plot are written beside them.
    data : a dataset file (``.json.gz``), a folder of MIDI files, or a single MIDI file; None is
        the cached folk-tune dataset.
    epochs : passes over the data; None picks 20 from scratch, 8 when fine-tuning.
    init : weights to start from (fine-tuning), or None for a new model.
    seed : seeds initialisation, order, augmentation and dropout.
    device : ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    limit : use only the first N tunes (quick experiments).
    """

    output: Path
    data: Path | None = None
    epochs: int | None = None
    init: Path | None = None
    seed: int = 0
    device: str = "auto"
    limit: int | None = None


def metrics_path_for(weights: Path) -> Path:
    """``x/melody_lstm.pt`` -> ``x/melody_lstm.metrics.json``."""
    return weights.with_name(f"{weights.stem}.metrics.json")


def plot_path_for(weights: Path) -> Path:
    """``x/melody_lstm.pt`` -> ``x/melody_lstm.loss.png``."""
    return weights.with_name(f"{weights.stem}.loss.png")


# -- data ----------------------------------------------------------------------------------


def load_tunes(data: Path | None) -> tuple[list[TuneRecord], str]:
    """The tunes at ``data`` and a one-line description of where they came from.

    Raises
    ------
    ConfigError : the path is missing, not a dataset, or holds no usable MIDI tune.
    """
    path = DEFAULT_DATA if data is None else data
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES)
        if not files:
            raise ConfigError(f"--data {path} holds no .mid or .midi files")
        tunes = [t for t in (midi_to_tune(p, root=path) for p in files) if t is not None]
        if not tunes:
            raise ConfigError(
                f"none of the {len(files)} MIDI files in {path} has a melody of at least "
                f"{MIN_NOTES} notes"
            )
        return tunes, f"{len(tunes)} of {len(files)} MIDI files in {path}"
    if path.is_file() and path.suffix.lower() in MIDI_SUFFIXES:
        tune = midi_to_tune(path, root=path.parent)
        if tune is None:
            raise ConfigError(f"--data {path} has no melody of at least {MIN_NOTES} notes")
        return [tune], f"MIDI file {path}"
    try:
        dataset = load_dataset(path)
    except FileNotFoundError as exc:
        hint = (
            "run tools/prepare_melodies.py (about 3 minutes) to build it, or pass --data with a "
            "folder of MIDI files"
            if data is None
            else "pass a folder of MIDI files or a dataset from tools/prepare_melodies.py"
        )
        raise ConfigError(f"no melody data at {path}; {hint}") from exc
    except (ValueError, OSError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"--data {path} is neither a MIDI folder nor a melody dataset ({exc})"
        ) from exc
    return list(dataset.tunes), f"dataset {path} ({dataset.meta.get('tunes', '?')} tunes)"


def midi_to_tune(path: Path, *, root: Path) -> TuneRecord | None:
    """The top melodic line of a MIDI file as a tune, or None when it has too few notes or does
    not parse.

    Every non-drum channel counts; at each onset (quantised to 16ths) the highest pitch wins (the
    "skyline"), and a note lasts until the next onset, or until it ends when a rest of a 16th or
    more follows. The metre is the file's first time signature (4/4 when it has none or one the
    model does not know); the key comes from music21's key analysis of the line.
    """
    import mido

    try:
        midi = mido.MidiFile(path)
    except (OSError, ValueError, EOFError, KeyError) as exc:
        log.warning("skipping %s: not a readable MIDI file (%s)", path, exc)
        return None
    tick = midi.ticks_per_beat / 4.0  # ticks per 16th
    meter = "4/4"
    now = 0
    sounding: dict[tuple[int, int], int] = {}
    notes: list[tuple[int, int, int]] = []  # (start tick, end tick, pitch)
    seen_signature = False
    for message in mido.merge_tracks(midi.tracks):
        now += message.time
        if message.type == "time_signature" and not seen_signature:
            seen_signature = True
            name = f"{message.numerator}/{message.denominator}"
            meter = name if name in METRES else "4/4"
        elif message.type in ("note_on", "note_off") and message.channel != 9:
            key = (message.channel, message.note)
            if message.type == "note_on" and message.velocity > 0:
                sounding.setdefault(key, now)
            elif key in sounding:
                notes.append((sounding.pop(key), now, message.note))
    bar = METRES[meter]
    onsets: dict[int, tuple[int, int]] = {}  # 16th -> (pitch, end in 16ths)
    for start, end, pitch in notes:
        step = round(start / tick)
        finish = max(step + 1, round(end / tick))
        if step not in onsets or pitch > onsets[step][0]:
            onsets[step] = (pitch, finish)
    steps = sorted(onsets)
    line: list[MelodyNote] = []
    for i, step in enumerate(steps):
        pitch, finish = onsets[step]
        following = steps[i + 1] if i + 1 < len(steps) else finish
        end = min(finish, following)
        line.append(MelodyNote(pitch, (end - step) * GRID, (step * GRID) % bar))
        if following - end >= 1:
            line.append(MelodyNote(None, (following - end) * GRID, (end * GRID) % bar))
    if sum(1 for n in line if n.pitch is not None) < MIN_NOTES:
        return None
    tonic, mode = _key_of(line)
    return TuneRecord(
        id=f"midi/{path.relative_to(root).as_posix()}",
        collection="midi",
        tonic=tonic,
        mode=mode,
        beats_per_bar=bar,
        meter=meter,
        notes=tuple(line),
        title=path.stem,
    )


def _key_of(line: Sequence[MelodyNote]) -> tuple[int, Mode]:
    from music21 import note, stream

    melody: Any = stream.Stream()
    for n in line:
        melody.append(
            note.Rest(quarterLength=n.duration)
            if n.pitch is None
            else note.Note(n.pitch, quarterLength=n.duration)
        )
    key = melody.analyze("key")
    return int(key.tonic.pitchClass), "minor" if key.mode == "minor" else "major"


# -- training ------------------------------------------------------------------------------


def train_melody(
    request: TrainRequest, *, on_progress: Callable[[int, int, float], None] | None = None
) -> dict[str, Any]:
    """Train (or fine-tune) and write the weights, metrics JSON and loss plot.

    ``on_progress(done_steps, total_steps, loss)`` follows the optimiser steps. Returns the
    metrics written to the JSON file.

    Raises
    ------
    ConfigError : bad data or epochs.
    ModelError : ``init`` weights that do not load, or a device torch does not have.
    """
    import torch

    from models.device import resolve_device
    from models.melody_codec import encode_tune
    from models.melody_net import (
        MelodyLSTM,
        MelodyModelConfig,
        load_checkpoint,
        nll_per_note,
        save_checkpoint,
    )
    from models.melody_training import (
        TrainingConfig,
        TrainingTune,
        label_statistics,
        steps_per_epoch,
        train_model,
    )
    from models.ngram import NgramMelodyModel

    if request.epochs is not None and request.epochs < 1:
        raise ConfigError(f"--epochs {request.epochs} must be at least 1")
    device = resolve_device(request.device)
    tunes, source = load_tunes(request.data)
    if request.limit is not None:
        tunes = tunes[: request.limit]
    train, test = split_by_tune(tunes, test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
    valid: list[TuneRecord] = []
    if len(train) >= MIN_VALID_TUNES:
        train, valid = split_by_tune(train, test_fraction=VALID_FRACTION, seed=VALID_SEED)
    if not train:
        raise ConfigError(f"no training tunes in {source}; give at least two tunes")

    def prepared(tune: TuneRecord) -> TrainingTune:
        pitches = [n.pitch for n in tune.notes if n.pitch is not None]
        return TrainingTune(encode_tune(tune), tune.tonic, min(pitches), max(pitches))

    train_tokens = [prepared(t) for t in train]
    notes = sum(len(t.tokens.pitch) for t in train_tokens)
    valid_tokens = [encode_tune(t) for t in valid]
    test_tokens = [encode_tune(t) for t in test]

    init_info: dict[str, Any] = {}
    if request.init is not None:
        try:
            model, init_info = load_checkpoint(request.init, device=device)
        except ModelError as exc:  # missing, or not a melody LSTM checkpoint
            raise ModelError(
                f"--init {request.init}: {exc}; pass weights written by `moodscore train-melody`"
            ) from exc
        epochs = request.epochs or FINE_TUNE_EPOCHS
        learning_rate = FINE_TUNE_LEARNING_RATE
    else:
        torch.manual_seed(request.seed)
        config = label_statistics([t.tokens for t in train_tokens], MelodyModelConfig())
        model = MelodyLSTM(config)
        epochs = request.epochs or SCRATCH_EPOCHS
        learning_rate = SCRATCH_LEARNING_RATE
    training = TrainingConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        seed=request.seed,
        # Fine-tuning starts from trained weights: no warm-up, the lower rate at once.
        warmup_steps=100 if request.init is None else 0,
    )
    before = (
        nll_per_note(model, test_tokens, device=device)
        if request.init is not None and test_tokens
        else None
    )
    total_steps = steps_per_epoch(notes, training) * epochs
    done = 0

    def step(epoch: int, index: int, loss: float) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total_steps, loss)

    def epoch_done(epoch: int, train_nll: float, valid_nll: float | None) -> None:
        log.info(
            "epoch %d/%d: training NLL %.3f, validation NLL %s",
            epoch,
            epochs,
            train_nll,
            "n/a" if valid_nll is None else f"{valid_nll:.3f}",
        )

    # Two threads for the full corpus; a few files train several times faster on one (the
    # thread hand-offs cost more than the tiny matrices).
    threads = 1 if notes < SMALL_CORPUS_NOTES else max(1, min(2, os.cpu_count() or 1))
    with _torch_threads(threads):
        started = time.perf_counter()
        history = train_model(
            model,
            train_tokens,
            valid_tokens,
            training,
            device=device,
            on_step=step,
            on_epoch=epoch_done,
        )
        seconds = time.perf_counter() - started
        test_nll = nll_per_note(model, test_tokens, device=device) if test_tokens else None
    trigram = NgramMelodyModel(order=3).fit(train + valid).nll_per_note(test) if test else None

    metrics: dict[str, Any] = {
        "command": "moodscore train-melody " + " ".join(_argv(request)),
        "data": source,
        "init": str(request.init) if request.init else None,
        "seed": request.seed,
        "device": str(device),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "threads": threads,
        "model": model.config.to_json(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "training": {
            "epochs": epochs,
            "batch": training.batch,
            "chunk": training.chunk,
            "episode_notes": training.episode_notes,
            "learning_rate": learning_rate,
            "weight_decay": training.weight_decay,
        },
        "train_tunes": len(train),
        "train_notes": notes,
        "valid_tunes": len(valid),
        "test_tunes": len(test),
        "test_notes": int(sum(len(t.pitch) for t in test_tokens)),
        "train_nll_by_epoch": [round(v, 4) for v in history.train_nll],
        "valid_nll_by_epoch": [None if v is None else round(v, 4) for v in history.valid_nll],
        "epoch_seconds": [round(v, 1) for v in history.seconds],
        "best_epoch": history.best_epoch,
        "train_seconds": round(seconds, 1),
        "test_nll_per_note": None if test_nll is None else round(test_nll, 4),
        "test_nll_per_note_trigram": None if trigram is None else round(trigram, 4),
        "test_nll_per_note_before": None if before is None else round(before, 4),
        "test_ids": [t.id for t in test],
    }
    if init_info:
        metrics["init_metrics"] = {
            k: init_info.get(k) for k in ("data", "test_nll_per_note", "best_epoch")
        }
    request.output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        model,
        request.output,
        info={k: v for k, v in metrics.items() if k not in ("test_ids", "model")},
    )
    metrics["weights_bytes"] = request.output.stat().st_size
    metrics_path_for(request.output).write_text(json.dumps(metrics, indent=1) + "\n")
    _plot(history.train_nll, history.valid_nll, test_nll, trigram, plot_path_for(request.output))
    return metrics


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op threads set to ``count`` for the block, then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _argv(request: TrainRequest) -> list[str]:
    words = []
    if request.data is not None:
        words += ["--data", str(request.data)]
    if request.init is not None:
        words += ["--init", str(request.init)]
    if request.epochs is not None:
        words += ["--epochs", str(request.epochs)]
    if request.seed:
        words += ["--seed", str(request.seed)]
    if request.limit is not None:
        words += ["--limit", str(request.limit)]
    return [*words, "-o", str(request.output)]


def _plot(
    train: Sequence[float],
    valid: Sequence[float | None],
    test: float | None,
    trigram: float | None,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = list(range(1, len(train) + 1))
    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.plot(epochs, train, marker="o", label="training (dropout on)")
    points = [(e, v) for e, v in zip(epochs, valid, strict=True) if v is not None]
    if points:
        axes.plot(*zip(*points, strict=True), marker="o", label="validation")
    if test is not None:
        axes.axhline(test, color="tab:green", linestyle="--", label=f"held-out LSTM {test:.3f}")
    if trigram is not None:
        axes.axhline(
            trigram, color="tab:red", linestyle=":", label=f"held-out trigram {trigram:.3f}"
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("NLL per note (nats)")
    axes.set_title("melody LSTM training")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
