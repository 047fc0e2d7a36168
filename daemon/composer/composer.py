"""The composer: one :class:`Plan` in, one :class:`BarScore` out, bar after bar.

The lead comes from the melody model named by ``composer.melody_model``: the conditioned LSTM
(:mod:`daemon.composer.lstm_melody`, the default) or the n-gram
(:mod:`daemon.composer.ngram_melody`). Both keep their state across bars, so the melody streams on
through changes of mood. The chord of each bar is then fitted to the bar's melody (strong beats
first), and bass, drums, pad and arpeggio follow the chord.

All randomness comes from generators seeded by ``config.seed`` (one per concern, so turning a
layer on or off never changes the melody), which makes a run repeatable.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.composer.accompaniment import arp_notes, bass_notes, drum_notes, pad_notes
from daemon.composer.harmony import HarmonyPlanner, SoundingNote
from daemon.composer.lstm_melody import LstmMelodyWriter
from daemon.composer.ngram_melody import NgramMelodyWriter
from daemon.config import REPO_ROOT, ComposerConfig
from daemon.errors import ModelError
from daemon.messages import BarScore, Layer, NoteEvent, Plan
from models.device import resolve_device
from models.errors import CheckpointError, WeightsNotFound
from models.melody_net import DEFAULT_WEIGHTS as LSTM_WEIGHTS
from models.melody_net import MelodyLSTM, load_checkpoint
from models.melody_sampler import MelodySampler
from models.ngram import DEFAULT_WEIGHTS, NgramMelodyModel

MELODY_MODELS = ("lstm", "ngram")


class MelodyWriter(Protocol):
    """Writes the lead of one bar; keeps its own state from bar to bar."""

    def write(self, plan: Plan) -> tuple[SoundingNote, ...]: ...

    def section(self, bar: int) -> str | None:
        """The label of the form's section ``bar`` belongs to; None in free form."""
        ...


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


@functools.lru_cache(maxsize=4)
def load_lstm_model(path: Path = LSTM_WEIGHTS, device: str = "cpu") -> MelodyLSTM:
    """Load (once per path and device) melody LSTM weights, ready for sampling.

    Raises
    ------
    ModelError : the weights are missing, unreadable or the device is unavailable; the message
        says how to get working weights (or which device to set).
    """
    where = resolve_device(device)
    try:
        model, _ = load_checkpoint(path, device=where)
    except WeightsNotFound as exc:
        raise ModelError(
            f"no melody LSTM weights at {path}; set composer.melody_weights to a file written by "
            "`moodscore train-melody`, or composer.melody_model = 'ngram'"
        ) from exc
    except CheckpointError as exc:
        raise ModelError(
            f"melody LSTM weights at {path} do not load ({exc}); retrain them with "
            "`moodscore train-melody -o FILE`"
        ) from exc
    return model


def _weights_path(config: ComposerConfig) -> Path:
    if not config.melody_weights:
        return LSTM_WEIGHTS
    path = Path(config.melody_weights).expanduser()
    # A relative path is tried from the working directory, then from the repository.
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


class Composer:
    """Turns plans into bar scores, one bar per call, in bar order.

    Parameters
    ----------
    config : the ``[composer]`` section: melody model and its sampling, form, seed.
    model : the melody model to sample from (an :class:`MelodyLSTM` or a
        :class:`NgramMelodyModel`); None loads the weights ``config`` names and raises
        :class:`ModelError` if they are missing.
    device : where the LSTM samples: ``"cpu"`` (default; batch-1 sampling is latency-bound and
        a CPU core is as quick as a GPU for it), ``"cuda"`` or ``"auto"``.
    """

    def __init__(
        self,
        *,
        config: ComposerConfig,
        model: MelodyLSTM | NgramMelodyModel | None = None,
        device: str = "cpu",
    ) -> None:
        if config.melody_model not in MELODY_MODELS:
            raise ModelError(
                f"unknown melody model {config.melody_model!r}; use {' or '.join(MELODY_MODELS)}"
            )
        self.config = config
        melody_seed, harmony_seed, rhythm_seed = np.random.SeedSequence(config.seed).spawn(3)
        melody_rng = np.random.default_rng(melody_seed)
        self._harmony_rng = np.random.default_rng(harmony_seed)
        self._rhythm_rng = np.random.default_rng(rhythm_seed)
        if model is None:
            model = (
                load_lstm_model(_weights_path(config), device)
                if config.melody_model == "lstm"
                else load_melody_model()
            )
        self.model = model
        self._melody: MelodyWriter
        if isinstance(model, MelodyLSTM):
            self._melody = LstmMelodyWriter(model=model, config=config, rng=melody_rng)
        else:
            self._melody = NgramMelodyWriter(model=model, config=config, rng=melody_rng)
        self._harmony = HarmonyPlanner()
        self._last_melody: tuple[SoundingNote, ...] = ()

    @property
    def melody_sampler(self) -> MelodySampler | None:
        """The LSTM sampler the melody streams from, to prime it with a phrase (``--seed-track``);
        None with the n-gram model, which keeps no state worth priming."""
        return self._melody.sampler if isinstance(self._melody, LstmMelodyWriter) else None

    @property
    def last_melody(self) -> tuple[SoundingNote, ...]:
        """The lead of the last composed bar, rests included (offsets and lengths in beats)."""
        return self._last_melody

    def compose_bar(self, plan: Plan) -> BarScore:
        """Compose the bar ``plan.bar``: melody, chord, and the notes of the layers in play.

        Notes start in ``[0, plan.beats_per_bar)`` and the melody's notes and rests fill the bar
        exactly. Synchronous and fast (a few milliseconds per bar).
        """
        melody = self._melody.write(plan)
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
        return BarScore(
            bar=plan.bar,
            plan=plan,
            chord=chord,
            notes=tuple(notes),
            section=self._melody.section(plan.bar),
        )

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
