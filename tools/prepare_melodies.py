#!/usr/bin/env python3
"""Parse music21's public-domain folk corpora into the cached melody dataset.

Collections: O'Neill's *Music of Ireland* (1850), Ryan's *Mammoth Collection* (1883) and Aird's
*Selection of Scotch, English, Irish and Foreign Airs* (1778-1803), all public domain and shipped
inside music21 as ABC. Each ABC file may hold many tunes (an Opus). For every tune this keeps the
top line of the first part, in 4/4, 2/2, 2/4, 3/4 or 6/8, quantised to a 16th-note grid, with the
key from music21's key analysis. Tunes that fail to parse or do not fit are counted and skipped.

    .venv/bin/python tools/prepare_melodies.py              # all ~4,000 tunes, a few minutes
    .venv/bin/python tools/prepare_melodies.py --limit 2 -o /tmp/tiny.json.gz
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("PYO_GUI_WX", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from models.melody_data import (  # noqa: E402 - after the sys.path fix for direct runs
    METRES,
    Dataset,
    MelodyNote,
    Mode,
    TuneRecord,
    save_dataset,
)

COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs")
DEFAULT_OUTPUT = REPO_ROOT / ".cache" / "melodies.json.gz"
GRID = 0.25  # quarter lengths: a 16th note
MIN_NOTES = 8

# One file's result: the tunes kept, and the reasons the others were dropped.
FileResult = tuple[list[TuneRecord], Counter[str]]


def list_files(collections: tuple[str, ...]) -> list[tuple[str, Path]]:
    """The ABC files of the collections, in a stable order: collection, then file name."""
    from music21 import corpus

    files: list[tuple[str, Path]] = []
    for collection in collections:
        paths = sorted(Path(p) for p in corpus.getComposer(collection))
        files.extend((collection, p) for p in paths)
    return files


def _quantise(value: float) -> float:
    return round(value / GRID) * GRID


def _measure_starts(measures: list[Any], bar: float) -> list[float]:
    """Where each measure starts within its bar, in quarter lengths.

    ABC splits bars at repeat signs, so a tune has short measures in the middle (the end of part
    A and the pickup of part B) as well as its opening pickup; work out which is which.
    """
    starts: list[float] = []
    prev_end = 0.0
    for i, measure in enumerate(measures):
        length = float(measure.duration.quarterLength)
        padding = float(measure.paddingLeft or 0.0)
        if padding > 0:
            start = padding % bar
        elif abs(length - bar) < 1e-6 or length > bar:
            start = 0.0
        elif 1e-6 < prev_end < bar - 1e-6 and prev_end + length <= bar + 1e-6:
            start = prev_end  # the second half of a bar split by a repeat sign
        else:
            nxt = measures[i + 1] if i + 1 < len(measures) else None
            next_length = float(nxt.duration.quarterLength) if nxt is not None else bar
            # The tune's last bar or the first half of a split bar starts on the downbeat;
            # a short bar before a full one is a pickup into the next part.
            start = 0.0 if nxt is None or next_length < bar - 1e-6 else bar - length
        starts.append(start)
        prev_end = (start + length) % bar if length < bar else 0.0
    return starts


def tune_from_score(score: Any, *, tune_id: str, collection: str) -> TuneRecord | str:
    """One music21 Score as a :class:`TuneRecord`, or the reason it was skipped."""
    from music21 import chord, meter, note, stream

    parts = list(score.parts) if score.parts else [score]
    part = parts[0]
    signatures = list(part.recurse().getElementsByClass(meter.TimeSignature))
    if not signatures:
        return "no time signature"
    meter_name = signatures[0].ratioString
    if meter_name not in METRES:
        return f"metre {meter_name}"
    if any(s.ratioString != meter_name and s.ratioString in METRES for s in signatures[1:]):
        return "metre change"
    bar = METRES[meter_name]

    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        return "no measures"
    starts = _measure_starts(measures, bar)

    # (absolute onset, offset in bar, pitch or None, written duration), grace notes dropped.
    events: list[tuple[float, float, int | None, float]] = []
    tied_from: int | None = None
    for measure, start in zip(measures, starts, strict=True):
        for element in measure.recurse().notesAndRests:
            duration = float(element.duration.quarterLength)
            if duration <= 0 or element.duration.isGrace:
                continue
            local = float(element.getOffsetInHierarchy(measure))
            onset = float(measure.offset) + local
            pitch: int | None
            if isinstance(element, chord.Chord):
                pitch = max(p.midi for p in element.pitches) if element.pitches else None
            elif isinstance(element, note.Note):
                pitch = int(element.pitch.midi)
            else:
                pitch = None
            # A tie continues the previous note: lengthen it rather than restrike.
            tie = getattr(element, "tie", None)
            if (
                tie is not None
                and tie.type in ("stop", "continue")
                and events
                and events[-1][2] == pitch
                and tied_from is not None
            ):
                last = events[-1]
                events[-1] = (last[0], last[1], last[2], onset + duration - last[0])
                continue
            tied_from = len(events) if tie is not None and tie.type == "start" else None
            events.append((onset, (start + local) % bar, pitch, duration))

    events.sort(key=lambda e: e[0])
    notes: list[MelodyNote] = []
    note_onsets: list[float] = []  # grid onset of each kept note, parallel to ``notes``
    for onset, in_bar, pitch, duration in events:
        q_onset = _quantise(onset)
        if note_onsets and q_onset <= note_onsets[-1]:
            continue  # two onsets on one 16th (a squeezed triplet, a split chord): keep the first
        if notes and notes[-1].pitch is None and pitch is None:
            continue  # consecutive rests become one rest, lengthened below
        note_onsets.append(q_onset)
        notes.append(MelodyNote(pitch, max(GRID, _quantise(duration)), _quantise(in_bar) % bar))
    # A note lasts until the next onset on the grid: triplets and swung pairs stay gapless, and
    # a rest absorbs the rests merged into it.
    fixed: list[MelodyNote] = []
    for i, n in enumerate(notes):
        gap = note_onsets[i + 1] - note_onsets[i] if i + 1 < len(notes) else n.duration
        fixed.append(MelodyNote(n.pitch, gap, n.offset))
    # Leading and trailing rests carry no melody.
    while fixed and fixed[0].pitch is None:
        fixed.pop(0)
    while fixed and fixed[-1].pitch is None:
        fixed.pop()
    if sum(1 for n in fixed if n.pitch is not None) < MIN_NOTES:
        return "too few notes"

    key = score.analyze("key")
    mode: Mode = "minor" if key.mode == "minor" else "major"
    title = str(score.metadata.title) if score.metadata is not None and score.metadata.title else ""
    return TuneRecord(
        id=tune_id,
        collection=collection,
        tonic=int(key.tonic.pitchClass),
        mode=mode,
        beats_per_bar=bar,
        meter=meter_name,
        notes=tuple(fixed),
        title=title,
    )


def parse_file(item: tuple[str, str]) -> FileResult:
    """Parse one ABC file (one tune or an Opus of many) into records and skip reasons."""
    from music21 import converter, stream

    collection, path_str = item
    path = Path(path_str)
    reasons: Counter[str] = Counter()
    tunes: list[TuneRecord] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = converter.parse(path, format="abc")
        except Exception:  # music21 raises anything on bad ABC: count it, move on
            reasons["parse error"] += 1
            return tunes, reasons
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        for index, score in enumerate(scores):
            number = score.metadata.number if score.metadata is not None else None
            tune_id = f"{collection}/{path.stem}/{number or index + 1}"
            try:
                result = tune_from_score(score, tune_id=tune_id, collection=collection)
            except Exception:  # one malformed tune must not lose its file
                reasons["tune error"] += 1
                continue
            if isinstance(result, str):
                reasons[result] += 1
            else:
                tunes.append(result)
    return tunes, reasons


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="parse only the first N files")
    parser.add_argument(
        "--collections",
        nargs="+",
        default=list(COLLECTIONS),
        choices=COLLECTIONS,
        help="music21 corpus collections to read, in this order",
    )
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="dataset path")
    parser.add_argument("--workers", type=int, default=2, help="parser processes (1 = inline)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    files = list_files(tuple(args.collections))
    if args.limit is not None:
        files = files[: args.limit]
    items = [(collection, str(path)) for collection, path in files]
    started = time.perf_counter()
    tunes: list[TuneRecord] = []
    reasons: Counter[str] = Counter()
    progress = tqdm(total=len(items), unit="file", desc="parsing", disable=None)
    if args.workers > 1 and len(items) > 1:
        # Big Opus files come first in the corpus order; imap_unordered keeps both cores busy.
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for file_tunes, file_reasons in pool.imap_unordered(parse_file, items):
                tunes.extend(file_tunes)
                reasons.update(file_reasons)
                progress.update()
    else:
        for item in items:
            file_tunes, file_reasons = parse_file(item)
            tunes.extend(file_tunes)
            reasons.update(file_reasons)
            progress.update()
    progress.close()
    elapsed = time.perf_counter() - started

    # Order by id so the file does not depend on which worker finished first.
    tunes.sort(key=lambda t: t.id)
    seen: set[str] = set()
    unique: list[TuneRecord] = []
    for tune in tunes:
        if tune.id in seen:
            reasons["duplicate id"] += 1
            continue
        seen.add(tune.id)
        unique.append(tune)
    n_notes = sum(len(t.notes) for t in unique)
    meta: dict[str, Any] = {
        "collections": list(args.collections),
        "files": len(items),
        "tunes": len(unique),
        "notes": n_notes,
        "skipped": dict(sorted(reasons.items())),
        "parse_seconds": round(elapsed, 1),
        "by_collection": dict(Counter(t.collection for t in unique)),
        "by_meter": dict(Counter(t.meter for t in unique)),
        "by_mode": dict(Counter(t.mode for t in unique)),
    }
    save_dataset(Dataset(tunes=tuple(unique), meta=meta), args.output)
    skipped = ", ".join(f"{k}: {v}" for k, v in meta["skipped"].items()) or "none"
    print(
        f"{len(unique)} tunes, {n_notes} notes from {len(items)} files in {elapsed:.1f} s; "
        f"skipped {sum(reasons.values())} ({skipped}); wrote {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
