"""``--seed-track FILE.mid``: prime the melody LSTM with a phrase of a track, as research seed 002
seeds its LSTM with a phrase of the recommended song.

The phrase is the track's top line (the "skyline" that ``train-melody`` fine-tunes on,
:func:`daemon.training.melody.midi_to_tune`): its first ``library.seed_notes`` notes from the first
bar line on, in the track's own key (music21's analysis), cut into whole bars (a note across a bar
line is split in two, the last bar is filled with a rest). Priming runs those bars through the
sampler as given notes, so the LSTM's hidden state has heard the phrase before it writes bar 0, and
no random number is drawn: the generated music stays repeatable under ``--seed``. Pitches are tokens
relative to the key's tonic, so the phrase's scale degrees and rhythm carry into whatever key the
music is in; the phrase itself is not played.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import ComposerConfig
from daemon.errors import ConfigError, ModelError
from daemon.messages import Mode
from models.melody_codec import PHRASE_BARS, REST, Token, encode_tune
from models.melody_sampler import BarSpec, MelodySampler
from models.ngram import DURATION_SIXTEENTHS, METRE_SIXTEENTHS, metre_key

if TYPE_CHECKING:
    from daemon.composer import Composer

log = logging.getLogger("moodscore.library")

MIDI_SUFFIXES = (".mid", ".midi")


@dataclass(frozen=True, slots=True)
class SeedPhrase:
    """A phrase to prime the LSTM with.

    bars : the phrase in whole bars of tokens (pitch ids relative to ``tonic``).
    tonic, mode : the track's key.
    beats_per_bar : quarter notes per bar of the track's metre.
    density : the track's notes per 4/4 bar (its conditioning label).
    source : the file it came from.
    """

    bars: tuple[tuple[Token, ...], ...]
    tonic: int
    mode: Mode
    beats_per_bar: int
    density: float
    source: Path

    @property
    def notes(self) -> int:
        """Sounding notes in the phrase."""
        return sum(1 for bar in self.bars for token in bar if token.pitch != REST)


def load_seed_phrase(path: Path, *, notes: int = 32) -> SeedPhrase:
    """The first ``notes`` notes of ``path``'s top line, from its first bar line, as whole bars.

    Raises
    ------
    ConfigError : the file is missing, not MIDI, or has no melody of at least 8 notes.
    """
    from daemon.training.melody import midi_to_tune

    if path.suffix.lower() not in MIDI_SUFFIXES:
        raise ConfigError(f"--seed-track {path} must be a MIDI file (.mid or .midi)")
    if not path.is_file():
        raise ConfigError(f"--seed-track {path} does not exist; pass a MIDI file")
    tune = midi_to_tune(path, root=path.parent)
    if tune is None:
        raise ConfigError(
            f"--seed-track {path} has no melody of at least 8 notes (or does not parse); "
            "pass a MIDI file with a tune in it"
        )
    tokens = encode_tune(tune)
    metre = metre_key(tune.meter)
    bar_length = METRE_SIXTEENTHS[metre]
    # Start at the first note on a downbeat (skip a pickup), so the phrase's bars are real bars.
    positions = [int(slot) % 16 for slot in tokens.slot]
    first = next((i for i, p in enumerate(positions) if p == 0), 0)
    bars: list[list[Token]] = [[]]
    filled = 0
    sounding = 0
    for i in range(first, len(tokens.pitch)):
        if sounding >= notes:
            break
        pitch = int(tokens.pitch[i])
        length = DURATION_SIXTEENTHS[int(tokens.duration[i])]
        if pitch != REST:
            sounding += 1
        while length > 0:
            room = bar_length - filled
            part = min(length, room)
            for piece in _durations(part):
                bars[-1].append(Token(pitch, piece))
            filled += part
            length -= part
            if filled == bar_length:
                bars.append([])
                filled = 0
    if filled:
        for piece in _durations(bar_length - filled):
            bars[-1].append(Token(REST, piece))
    phrase_bars = tuple(tuple(bar) for bar in bars if bar)
    return SeedPhrase(
        bars=phrase_bars,
        tonic=tune.tonic,
        mode=tune.mode,
        beats_per_bar=bar_length // 4,
        density=tokens.labels.density,
        source=path,
    )


def _durations(sixteenths: int) -> list[int]:
    """Duration ids summing to ``sixteenths`` (greedy, longest first)."""
    out = []
    remaining = sixteenths
    while remaining > 0:
        index = max(i for i, d in enumerate(DURATION_SIXTEENTHS) if d <= remaining)
        out.append(index)
        remaining -= DURATION_SIXTEENTHS[index]
    return out


def prime_sampler(sampler: MelodySampler, phrase: SeedPhrase, *, config: ComposerConfig) -> None:
    """Run ``phrase`` through ``sampler`` as given notes (no sampling, no random draws)."""
    for number, bar in enumerate(phrase.bars):
        spec = BarSpec(
            tonic=phrase.tonic,
            mode=phrase.mode,
            density=phrase.density,
            register=config.register,
            beats_per_bar=phrase.beats_per_bar,
            phrase_bar=number % PHRASE_BARS,
            scale=None,
            max_leap=None,
        )
        sampler.bar(spec, prefix=bar)


def prime_composer(composer: Composer, phrase: SeedPhrase) -> None:
    """Prime a composer's melody LSTM with ``phrase``.

    Raises
    ------
    ModelError : the composer's melody model is not the LSTM (the n-gram has no state to prime).
    """
    sampler = composer.melody_sampler
    if sampler is None:
        raise ModelError("--seed-track primes the melody LSTM; set composer.melody_model = 'lstm'")
    prime_sampler(sampler, phrase, config=composer.config)
    log.info(
        "melody primed with %d notes (%d bars) of %s", phrase.notes, len(phrase.bars), phrase.source
    )
