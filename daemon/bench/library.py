"""The music library's figures for ``moodscore bench``.

A library is built first: moodscore composes 40 pieces (3 with ``--quick``) at moods spread
over the valence/arousal plane (the default preset, 30 s each; 6 s quick), and each is written
five ways: WAV, FLAC, OGG Vorbis, MP3 and a quieter WAV starting a second later, so 200 files
(15 quick) in four formats. Then:

- ``scan``: ``library scan`` of the whole folder into a new index with ``library.workers``
  processes: files, minutes of music, wall seconds, ``x_realtime`` (music seconds per wall
  second; target >= 20), failures;
- ``rescan_s``: the same scan again with nothing changed, the scan alone and the whole command
  in a fresh process (target < 2 s);
- ``recommend``: on the 40 (5) originals: how many mood queries (the composed moods) find a
  track composed near that mood (within 0.45) in their top 3, and research seed 001's diversity
  measure ``sum_k (X_k - J/K)^2`` for the 18 scene/mood plans (six presets, three moods)
  choosing by nearest tempo, by EMD alone and by EMD with the reuse penalty (lower is more
  varied); ``ms_per_query`` ranks the 200-file library for one mood.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from daemon.config import Config

VALENCES = (-0.6, -0.2, 0.2, 0.6)
AROUSALS = (-0.8, -0.4, 0.0, 0.4, 0.8)
NEAR = 0.45


def library_figures(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """Build a library, scan it twice and query it (see the module docstring)."""
    import numpy as np
    import soundfile

    from daemon.app import ComposeRequest, compose
    from daemon.conductor import Conductor
    from daemon.library.index import LibraryIndex
    from daemon.library.recommend import (
        diversity,
        mood_target,
        nearest_by_tempo,
        plan_target,
        rank,
        recommend_set,
    )
    from daemon.library.scan import scan
    from daemon.messages import Mood
    from daemon.scenes import available_scenes, load_scene

    seconds = 6.0 if quick else 30.0
    pieces = [(v, a) for v in VALENCES for a in AROUSALS] * 2
    if quick:
        pieces = pieces[3:20:6]
    with tempfile.TemporaryDirectory(prefix="moodscore-bench-library-") as scratch:
        root = Path(scratch)
        folder = root / "music"
        folder.mkdir()
        composed: dict[str, tuple[float, float]] = {}
        built = time.perf_counter()
        for number, (valence, arousal) in enumerate(pieces):
            conductor = Conductor(config=config.conductor, preset=load_scene("default"))
            conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=valence, arousal=arousal))
            bars = max(2, round(seconds * conductor.plan_for_bar(0).bpm / 240.0))
            stem = f"piece{number:03d}"
            wav = folder / f"{stem}.wav"
            compose(
                config.replace("composer", seed=1000 + number),
                ComposeRequest(valence=valence, arousal=arousal, bars=bars, outputs=(wav,)),
            )
            composed[wav.name] = (valence, arousal)
            audio, rate = soundfile.read(str(wav), dtype="float32")
            for suffix in ("flac", "ogg", "mp3"):
                soundfile.write(str(folder / f"{stem}.{suffix}"), audio, rate)
            soundfile.write(str(folder / f"{stem}-quiet.wav"), 0.5 * audio[rate:], rate)
        build_s = time.perf_counter() - built

        index_file = root / "library.sqlite"
        with LibraryIndex(index_file) as index:
            first = scan(folder, index, workers=config.library.workers)
            again = scan(folder, index, workers=config.library.workers)
            tracks = index.tracks()
        started = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, "-m", "daemon.cli", "library", "scan", str(folder)),
                *("--index", str(index_file), "-q"),
            ],
            check=True,
            capture_output=True,
        )
        command_s = time.perf_counter() - started

        originals = [t for t in tracks if t.path.name in composed]
        hits = []
        for mood in sorted(set(composed.values())):
            top = rank(originals, mood_target(*mood), k=3)
            hits.append(any(math.dist(composed[m.track.path.name], mood) <= NEAR for m in top))
        timings = []
        for valence, arousal in ((0.5, 0.5), (-0.5, -0.5), (0.0, 0.0)):
            t0 = time.perf_counter()
            rank(tracks, mood_target(valence, arousal), k=5)
            timings.append(time.perf_counter() - t0)
        plans = []
        for name in available_scenes():
            for valence, arousal in ((-0.5, -0.6), (0.3, 0.0), (0.6, 0.7)):
                conductor = Conductor(config=config.conductor, preset=load_scene(name))
                conductor.observe(Mood(t_start=0.0, t_end=0.5, valence=valence, arousal=arousal))
                plans.append(conductor.plan_for_bar(0))
        targets = [plan_target(plan) for plan in plans]
        k = len(originals)
        by_tempo = [nearest_by_tempo(originals, t).path for t in targets]
        by_emd = [rank(originals, t, k=1)[0].track.path for t in targets]
        ours = [m[0].track.path for m in recommend_set(originals, targets, k=1)]
    return {
        "library": {
            "files": first.found,
            "pieces": len(pieces),
            "seconds_per_piece": seconds,
            "formats": ["wav", "flac", "ogg", "mp3"],
            "build_s": round(build_s, 1),
        },
        "scan": {
            "workers": config.library.workers,
            "analysed": first.analysed,
            "failed": len(first.failed),
            "music_minutes": round(first.audio_seconds / 60.0, 1),
            "wall_s": round(first.seconds, 2),
            "x_realtime": round(first.x_realtime or 0.0, 1),
        },
        "rescan_s": {
            "scan": round(again.seconds, 3),
            "command": round(command_s, 2),
            "analysed": again.analysed,
        },
        "recommend": {
            "mood_top3_near": f"{sum(hits)}/{len(hits)}",
            "diversity": {
                "scenes": len(targets),
                "tracks": k,
                "nearest_by_tempo": round(diversity(by_tempo, k), 2),
                "emd": round(diversity(by_emd, k), 2),
                "emd_with_reuse_penalty": round(diversity(ours, k), 2),
                "best_possible": round(_most_even(len(targets), k), 2),
            },
            "ms_per_query": round(float(np.median(timings)) * 1e3, 1),
            "tracks_per_query": len(tracks),
        },
    }


def _most_even(choices: int, tracks: int) -> float:
    """The diversity measure of J choices spread as evenly as K tracks allow."""
    share, extra = divmod(choices, tracks)
    counts = [share + 1] * extra + [share] * (tracks - extra)
    return sum((c - choices / tracks) ** 2 for c in counts)
