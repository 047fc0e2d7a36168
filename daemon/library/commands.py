"""The command line of the music library: ``moodscore library scan | recommend`` and the
``--library`` / ``--seed-track`` flags of ``run`` and ``render``.

``daemon.cli`` wires these in; everything here reports user errors as
:class:`~daemon.errors.ConfigError` / :class:`~daemon.errors.SourceError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.errors import ConfigError
from daemon.library.index import LibraryIndex, Track, index_path
from daemon.library.recommend import (
    Match,
    Target,
    diversity,
    mood_target,
    rank,
    recommend_set,
    scene_target,
    segment_target,
)
from daemon.messages import PITCH_CLASS_NAMES, Mood

log = logging.getLogger("moodscore.library")

# A video is cut into segments where its smoothed mood moves this far (valence/arousal plane)
# from the segment's mean, or its scene changes; segments are at least SEGMENT_MIN_S long.
SEGMENT_RADIUS = 0.35
SEGMENT_MIN_S = 4.0
SMOOTHING_S = 1.0


def add_library_parser(
    commands: Any, add_common: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add ``library scan`` and ``library recommend`` to the ``moodscore`` subcommands;
    ``add_common`` adds ``--config``, ``-v``, ``-q`` to each."""
    text = "your own music: scan a folder into an index, recommend tracks for a mood or scene"
    library = commands.add_parser("library", help=text, description=text)
    sub = library.add_subparsers(dest="library_command", required=True, metavar="SUBCOMMAND")

    scan_text = "analyse a folder of WAV, FLAC, MP3, OGG and MIDI files into the index"
    scan = sub.add_parser("scan", help=scan_text, description=scan_text)
    add_common(scan)
    scan.add_argument(
        "dir", nargs="?", type=Path, metavar="DIR", help="the folder (default: library.dir)"
    )
    _add_index_flag(scan)
    scan.add_argument("--workers", type=int, metavar="N", help="processes (default: config)")

    rec_text = "rank the indexed tracks for a mood, a scene preset, or each scene of a video"
    recommend = sub.add_parser("recommend", help=rec_text, description=rec_text)
    add_common(recommend)
    recommend.add_argument("--valence", type=float, metavar="V", help="-1 .. 1 (with --arousal)")
    recommend.add_argument("--arousal", type=float, metavar="A", help="-1 .. 1 (with --valence)")
    recommend.add_argument("--scene", metavar="NAME", help="a scene preset (scenes/NAME.toml)")
    recommend.add_argument(
        "--video", metavar="FILE", help="a video file (or `demo`): a list per scene of it"
    )
    recommend.add_argument(
        "--mode",
        choices=("frame", "face", "game", "auto"),
        help="how --video is analysed (default: config analysis.mode)",
    )
    recommend.add_argument("-k", type=int, default=5, metavar="N", help="tracks to list (5)")
    recommend.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_index_flag(recommend)
    return library


def _add_index_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        type=Path,
        metavar="PATH",
        help="the index file (default: library.index, ~/.local/share/moodscore/library.sqlite)",
    )


def add_play_flags(parser: argparse.ArgumentParser) -> None:
    """``--library [DIR|INDEX]`` and ``--seed-track FILE.mid`` for ``run`` and ``render``."""
    parser.add_argument(
        "--library",
        nargs="?",
        const="",
        metavar="DIR|INDEX",
        help="play tracks from your library instead of generated music: a folder (scanned "
        "first) or an index file (no value: library.dir / library.index)",
    )
    parser.add_argument(
        "--seed-track",
        type=Path,
        metavar="FILE.mid",
        help="prime the melody LSTM with a phrase of this MIDI file's top line",
    )


def run_library_command(args: argparse.Namespace, config: Config) -> int:
    """``moodscore library scan|recommend``."""
    from daemon.extras import require

    require("library", what="`moodscore library`")
    if args.library_command == "scan":
        return _scan_command(args, config)
    return _recommend_command(args, config)


# -- scan ------------------------------------------------------------------------------------


def _scan_command(args: argparse.Namespace, config: Config) -> int:
    directory = args.dir or (Path(config.library.dir).expanduser() if config.library.dir else None)
    if directory is None:
        raise ConfigError("give the folder to scan: moodscore library scan DIR (or library.dir)")
    workers = args.workers if args.workers is not None else config.library.workers
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a folder; pass the folder that holds your music")
    path = args.index or index_path(config.library.index)
    with LibraryIndex(path) as index:
        report = scan_with_progress(directory, index, workers=workers)
        total = len(index)
    for failed, reason in report.failed:
        log.warning("skipped %s: %s", failed, reason)
    speed = report.x_realtime
    log.info(
        "scanned %s: %d file(s), %d analysed%s, %d unchanged, %d removed, %d unreadable%s; "
        "%d track(s) in %s (%.2f s)",
        directory,
        report.found,
        report.analysed,
        f" ({report.audio_seconds / 60:.1f} min of music, {speed:.0f}x real time)" if speed else "",
        report.unchanged,
        report.removed,
        len(report.failed) + report.failed_before,
        f" ({report.failed_before} from an earlier scan)" if report.failed_before else "",
        total,
        path,
        report.seconds,
    )
    return 0


def scan_with_progress(directory: Path, index: LibraryIndex, *, workers: int) -> Any:
    """:func:`daemon.library.scan.scan` with a tqdm bar (quiet when stderr is no terminal)."""
    from tqdm import tqdm

    from daemon.library.scan import scan

    with tqdm(total=None, unit="file", desc="scanning", disable=None, leave=False) as bar:

        def progress(done: int, total: int, path: str) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(Path(path).name[-40:], refresh=False)
            bar.refresh()

        return scan(directory, index, workers=workers, progress=progress)


# -- recommend -------------------------------------------------------------------------------


def _recommend_command(args: argparse.Namespace, config: Config) -> int:
    given = [
        name
        for name, present in (
            ("--valence/--arousal", args.valence is not None or args.arousal is not None),
            ("--scene", args.scene is not None),
            ("--video", args.video is not None),
        )
        if present
    ]
    if len(given) != 1:
        raise ConfigError(
            "give one of --valence V --arousal A, --scene NAME or --video FILE"
            + (f" (not {' and '.join(given)})" if given else "")
        )
    if args.k < 1:
        raise ConfigError("-k must be at least 1")
    path = args.index or index_path(config.library.index)
    if not path.is_file():
        raise ConfigError(f"no library index at {path}; run `moodscore library scan DIR` first")
    with LibraryIndex(path) as index:
        folder = Path(config.library.dir).expanduser() if config.library.dir else None
        tracks = index.tracks(under=folder)
    if not tracks:
        raise ConfigError(f"the library index {path} is empty; run `moodscore library scan DIR`")
    if args.video is not None:
        return _recommend_video(args, config, tracks)
    if args.scene is not None:
        from daemon.scenes import load_scene

        target = scene_target(load_scene(args.scene))
    else:
        if args.valence is None or args.arousal is None:
            raise ConfigError("--valence and --arousal go together; give both")
        for name, value in (("valence", args.valence), ("arousal", args.arousal)):
            if not -1.0 <= value <= 1.0:
                raise ConfigError(f"--{name} {value:g} is outside [-1, 1]")
        target = mood_target(args.valence, args.arousal)
    matches = rank(tracks, target, k=args.k)
    if args.json:
        print(json.dumps({"target": _target_json(target), "results": _matches_json(matches)}))
    else:
        print(f"{target.label} ({len(tracks)} tracks)")
        print(_table(matches))
    return 0


def _recommend_video(args: argparse.Namespace, config: Config, tracks: Sequence[Track]) -> int:
    from daemon.sources import open_source

    if args.mode is not None:
        config = config.replace("analysis", mode=args.mode)
    duration = config.source.demo_cycle_s if args.video == "demo" else None
    source = open_source(args.video, config.source, paced=False, duration=duration)
    moods = asyncio.run(analyse_video(config, source))
    segments = segment_moods(moods)
    targets = [segment_target(seg, _segment_label(seg)) for seg in segments]
    results = recommend_set(tracks, targets, k=args.k)
    firsts = [r[0].track.path for r in results if r]
    spread = diversity(firsts, len(tracks))
    if args.json:
        document = {
            "source": source.description,
            "segments": [
                {
                    "t_start": round(seg[0].t_start, 3),
                    "t_end": round(seg[-1].t_end, 3),
                    "scene": seg[0].scene,
                    "valence": round(sum(m.valence for m in seg) / len(seg), 3),
                    "arousal": round(sum(m.arousal for m in seg) / len(seg), 3),
                    "results": _matches_json(matches),
                }
                for seg, matches in zip(segments, results, strict=True)
            ],
            "diversity": round(spread, 4),
        }
        print(json.dumps(document))
        return 0
    print(f"{source.description}: {len(segments)} scene(s), {len(tracks)} tracks")
    for target, matches in zip(targets, results, strict=True):
        print()
        print(target.label)
        print(_table(matches))
    print()
    print(
        f"diversity of the first choices (research seed 001, sum_k (X_k - J/K)^2, lower is "
        f"more varied): {spread:.2f}"
    )
    return 0


async def analyse_video(config: Config, source: Any) -> list[Mood]:
    """Every analysis window of ``source`` (the ``analyze`` command's path), in order."""
    from daemon.analysis import AnalysisStage, make_window_model

    moods: list[Mood] = []
    try:
        model = make_window_model(config)
        try:
            stage = AnalysisStage(config=config.analysis, model=model)
            await stage.run(source, moods.append, lossless=True)
        finally:
            model.close()
    finally:
        await source.close()
    return moods


def segment_moods(moods: Sequence[Mood]) -> list[list[Mood]]:
    """Cut analysis windows into scenes: a new one starts where the named scene changes, or
    the smoothed mood leaves a circle of :data:`SEGMENT_RADIUS` around the current scene's mean
    (scenes last at least :data:`SEGMENT_MIN_S`; a short last piece joins the one before)."""
    if not moods:
        return []
    segments: list[list[Mood]] = [[]]
    smoothed: tuple[float, float] | None = None
    last_t = moods[0].t_start
    mean = (0.0, 0.0)
    for mood in moods:
        alpha = 1.0 - math.exp(-max(mood.t_end - last_t, 0.0) / SMOOTHING_S)
        last_t = mood.t_end
        if smoothed is None:
            smoothed = (mood.valence, mood.arousal)
        else:
            smoothed = (
                smoothed[0] + alpha * (mood.valence - smoothed[0]),
                smoothed[1] + alpha * (mood.arousal - smoothed[1]),
            )
        current = segments[-1]
        if current:
            long_enough = mood.t_end - current[0].t_start >= SEGMENT_MIN_S
            moved = math.dist(smoothed, mean) > SEGMENT_RADIUS
            new_scene = mood.scene is not None and mood.scene != current[-1].scene
            if long_enough and (moved or new_scene):
                segments.append([])
                current = segments[-1]
        current.append(mood)
        n = len(current)
        mean = (
            mean[0] + (smoothed[0] - mean[0]) / n if n > 1 else smoothed[0],
            mean[1] + (smoothed[1] - mean[1]) / n if n > 1 else smoothed[1],
        )
    if len(segments) > 1 and segments[-1][-1].t_end - segments[-1][0].t_start < SEGMENT_MIN_S:
        tail = segments.pop()
        segments[-1].extend(tail)
    return segments


def _segment_label(segment: Sequence[Mood]) -> str:
    valence = sum(m.valence for m in segment) / len(segment)
    arousal = sum(m.arousal for m in segment) / len(segment)
    scene = f"scene {segment[0].scene}, " if segment[0].scene else ""
    return (
        f"{segment[0].t_start:.1f}-{segment[-1].t_end:.1f} s: {scene}valence {valence:+.2f}, "
        f"arousal {arousal:+.2f}"
    )


def key_name(tonic: int, mode: str) -> str:
    """``"F# minor"`` (music21's ``-`` flats written ``b``)."""
    return f"{PITCH_CLASS_NAMES[tonic].replace('-', 'b')} {mode}"


def _table(matches: Sequence[Match]) -> str:
    rows = [("#", "distance", "track", "tempo", "key", "valence", "arousal", "kind")]
    for number, match in enumerate(matches, start=1):
        f = match.track.features
        rows.append(
            (
                str(number),
                f"{match.distance:.3f}",
                match.track.path.name,
                f"{f.tempo:.0f}",
                key_name(f.tonic, f.mode),
                f"{f.valence:+.2f}",
                f"{f.arousal:+.2f}",
                f.kind,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _target_json(target: Target) -> dict[str, Any]:
    return {"label": target.label, "points": [list(p) for p in target.points]}


def _matches_json(matches: Sequence[Match]) -> list[dict[str, Any]]:
    return [
        {
            "rank": number,
            "path": str(match.track.path),
            "distance": round(match.distance, 4),
            "tempo": match.track.features.tempo,
            "key": key_name(match.track.features.tonic, match.track.features.mode),
            "valence": match.track.features.valence,
            "arousal": match.track.features.arousal,
            "kind": match.track.features.kind,
            "segment": list(match.track.features.segment),
        }
        for number, match in enumerate(matches, start=1)
    ]


# -- run / render flags ----------------------------------------------------------------------


def apply_play_flags(args: argparse.Namespace, config: Config) -> Config:
    """``--library`` and ``--seed-track`` over ``[library]``; a library folder (given, or
    ``library.dir`` when the library mode is on) is scanned first, so new files play."""
    if args.seed_track is not None:
        config = config.replace("library", seed_track=str(args.seed_track))
    if args.library is not None:
        value = Path(args.library).expanduser() if args.library else None
        if value is None:
            config = config.replace("library", play=True)
        elif value.is_dir():
            config = config.replace("library", play=True, dir=str(value))
        elif value.is_file():
            config = config.replace("library", play=True, index=str(value), dir="")
        else:
            raise ConfigError(
                f"--library {value} is neither a folder nor an index file; pass your music "
                "folder or a library.sqlite"
            )
    if config.library.play and config.library.dir:
        folder = Path(config.library.dir).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"library.dir {folder} is not a folder")
        with LibraryIndex(index_path(config.library.index)) as index:
            report = scan_with_progress(folder, index, workers=config.library.workers)
        for failed, reason in report.failed:
            log.warning("skipped %s: %s", failed, reason)
        if report.analysed:
            log.info("library: analysed %d new or changed file(s)", report.analysed)
    return config
