"""The melody dataset: one record per folk tune, shared by the n-gram and the LSTM melody models.

A tune is a monophonic line of notes and rests in one metre and one key. Times are quarter
lengths (a quarter note is 1.0); ``offset`` is where the note starts in its bar, so a model can
learn the metre without re-deriving bar lines. The cached dataset is gzip-compressed JSON written
by ``tools/prepare_melodies.py``; this module only reads and writes it, splits it by tune and
transposes it, and imports nothing but the standard library.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

Mode = Literal["major", "minor"]

DATASET_VERSION = 1

# Time signatures the dataset keeps, with their bar length in quarter lengths. Cut time (2/2,
# ABC "C|", the metre of most reels) has the same bar and the same 16th grid as 4/4.
METRES: dict[str, float] = {"4/4": 4.0, "2/2": 4.0, "2/4": 2.0, "3/4": 3.0, "6/8": 3.0}


@dataclass(frozen=True, slots=True)
class MelodyNote:
    """One note or rest of a tune.

    pitch : MIDI note number, or None for a rest.
    duration : quarter lengths, > 0.
    offset : quarter lengths from the start of the bar the note begins in, in [0, bar length).
    """

    pitch: int | None
    duration: float
    offset: float


@dataclass(frozen=True, slots=True)
class TuneRecord:
    """One tune of the dataset.

    id : unique and stable across runs, e.g. ``"oneills1850/0001-0050/12"``.
    collection : the music21 corpus collection it came from.
    tonic : pitch class of the key's tonic, 0-11 (0 = C).
    mode : ``"major"`` or ``"minor"``.
    beats_per_bar : bar length in quarter lengths (6/8 -> 3.0).
    meter : the time signature, e.g. ``"6/8"``; one of :data:`METRES`.
    notes : the melody, in order, without overlaps.
    title : the tune's title, when the source has one.
    """

    id: str
    collection: str
    tonic: int
    mode: Mode
    beats_per_bar: float
    meter: str
    notes: tuple[MelodyNote, ...]
    title: str = ""

    @property
    def n_pitched(self) -> int:
        """Number of sounding notes (rests excluded)."""
        return sum(1 for note in self.notes if note.pitch is not None)


@dataclass(frozen=True, slots=True)
class Dataset:
    """The cached dataset: the tunes and how they were made (counts, timings, sources)."""

    tunes: tuple[TuneRecord, ...]
    meta: dict[str, Any] = field(default_factory=dict)


def tune_to_json(tune: TuneRecord) -> dict[str, Any]:
    """A compact JSON object for one tune; notes become ``[pitch, duration, offset]`` triples."""
    return {
        "id": tune.id,
        "collection": tune.collection,
        "title": tune.title,
        "tonic": tune.tonic,
        "mode": tune.mode,
        "beats_per_bar": tune.beats_per_bar,
        "meter": tune.meter,
        "notes": [[n.pitch, n.duration, n.offset] for n in tune.notes],
    }


def tune_from_json(data: dict[str, Any]) -> TuneRecord:
    """Inverse of :func:`tune_to_json`."""
    mode = data["mode"]
    if mode not in ("major", "minor"):
        raise ValueError(f"tune {data.get('id')!r}: mode must be major or minor, got {mode!r}")
    return TuneRecord(
        id=str(data["id"]),
        collection=str(data["collection"]),
        title=str(data.get("title", "")),
        tonic=int(data["tonic"]) % 12,
        mode=mode,
        beats_per_bar=float(data["beats_per_bar"]),
        meter=str(data["meter"]),
        notes=tuple(
            MelodyNote(None if p is None else int(p), float(d), float(o))
            for p, d, o in data["notes"]
        ),
    )


def save_dataset(dataset: Dataset, path: Path) -> None:
    """Write the dataset as gzip-compressed JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": DATASET_VERSION,
        "meta": dataset.meta,
        "tunes": [tune_to_json(t) for t in dataset.tunes],
    }
    # mtime=0 keeps the bytes identical for identical content (reproducible caches).
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle,
    ):
        handle.write(json.dumps(payload, separators=(",", ":")).encode("utf-8"))


def load_dataset(path: Path) -> Dataset:
    """Read a dataset written by :func:`save_dataset`.

    Raises
    ------
    FileNotFoundError : when ``path`` does not exist (run ``tools/prepare_melodies.py``).
    ValueError : when the file is not a dataset of this version.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"no melody dataset at {path}; run tools/prepare_melodies.py to build it"
        )
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or payload.get("version") != DATASET_VERSION:
        raise ValueError(f"{path} is not a version {DATASET_VERSION} melody dataset; rebuild it")
    tunes = tuple(tune_from_json(t) for t in payload["tunes"])
    return Dataset(tunes=tunes, meta=dict(payload.get("meta", {})))


def split_by_tune(
    tunes: Sequence[TuneRecord], *, test_fraction: float = 0.1, seed: int = 0
) -> tuple[list[TuneRecord], list[TuneRecord]]:
    """Split into (train, test) by whole tunes, reproducibly.

    The order depends only on the tune ids and the seed, not on the order of ``tunes``, so the
    same tune always lands on the same side. With two or more tunes the test side gets at least
    one, so a tiny run still has something to evaluate.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    ordered = sorted(tunes, key=lambda t: t.id)
    random.Random(seed).shuffle(ordered)
    n_test = round(len(ordered) * test_fraction)
    if n_test == 0 and len(ordered) >= 2 and test_fraction > 0:
        n_test = 1
    return ordered[n_test:], ordered[:n_test]


def transpose(tune: TuneRecord, semitones: int) -> TuneRecord:
    """The same tune moved by ``semitones``: pitches and the tonic shift, rhythm is unchanged."""
    notes = tuple(
        n if n.pitch is None else replace(n, pitch=n.pitch + semitones) for n in tune.notes
    )
    return replace(
        tune,
        id=f"{tune.id}@{semitones:+d}",
        tonic=(tune.tonic + semitones) % 12,
        notes=notes,
    )


def augment_transpositions(
    tunes: Iterable[TuneRecord],
    shifts: Iterable[int] = range(-5, 7),
    *,
    low: int = 48,
    high: int = 96,
) -> list[TuneRecord]:
    """Every tune in each transposition of ``shifts`` (0 = the original) whose notes stay in
    ``[low, high]`` MIDI; a model on absolute pitches then sees every key.

    Models on tonic-relative pitches (the n-gram) gain nothing from this and do not use it.
    """
    shift_list = list(shifts)
    out: list[TuneRecord] = []
    for tune in tunes:
        pitches = [n.pitch for n in tune.notes if n.pitch is not None]
        lo, hi = (min(pitches), max(pitches)) if pitches else (low, high)
        for shift in shift_list:
            if lo + shift < low or hi + shift > high:
                continue
            out.append(tune if shift == 0 else transpose(tune, shift))
    return out
