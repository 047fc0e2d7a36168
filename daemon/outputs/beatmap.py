"""``--beats OUT.json``: the beat map of a session, for game makers and video editors.

Every bar and every beat with its audio time (seconds from the first sample of the recording or
render), its tempo, and what plays: the scene, the form's section, the layer count, the key.
Beat times are the engine's own (the sample clock, tempo ramps integrated exactly), so they agree
with the WAV sample for sample and with the MIDI file's tempo map to the microsecond.

Format (``"format": "moodscore-beats"``, ``"version": 1``)::

    {
      "format": "moodscore-beats", "version": 1, "sample_rate": 48000, "duration": 61.3,
      "bars": [{"bar": 0, "time": 0.0, "end": 2.0, "bpm": 120.0, "beats": 4, "scene": "calm",
                "section": "A", "layers": 3, "key": "D", "mode": "major"}, ...],
      "beats": [{"index": 0, "bar": 0, "beat": 0, "time": 0.0, "bpm": 120.0,
                 "downbeat": true}, ...]
    }

``bpm`` of a beat is the tempo in force at it (inside a tempo ramp it moves beat by beat); a
bar's ``bpm`` is the tempo it arrives at. Bars and beats at or after the end of the audio are
left out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any

from daemon.clock import BarGrid, MusicClock
from daemon.messages import KEY_NAMES
from daemon.outputs.base import Output, Stage

log = logging.getLogger(__name__)

FORMAT = "moodscore-beats"
VERSION = 1


class BeatMapOutput(Output):
    """Collects every bar's grid and writes the beat map once the engine has stopped.

    Parameters
    ----------
    path : the JSON file to write (its folder is made before the music starts).
    """

    stage = Stage.RECORDING
    name = "beat map"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._grids: list[BarGrid] = []

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self._on_grid)

    def _on_grid(self, grid: BarGrid) -> None:
        if grid.patched_from is not None:
            return  # a reaction inside a bar changes what plays, not where the beats fall
        with self._lock:  # the audio thread: an append
            self._grids.append(grid)

    async def _aclose(self) -> None:
        with self._lock:
            grids = list(self._grids)
        document = beat_map(grids, duration=self.clock.audio_time)
        await asyncio.to_thread(_write_json, self.path, document)
        log.info("beat map: %s (%d beats)", self.path, len(document["beats"]))


def beat_map(grids: list[BarGrid], *, duration: float) -> dict[str, Any]:
    """The beat map document of ``grids`` cut at ``duration`` seconds of audio."""
    bars: list[dict[str, Any]] = []
    beats: list[dict[str, Any]] = []
    sample_rate = grids[0].sample_rate if grids else 0
    for grid in sorted(grids, key=lambda g: g.start):
        start = grid.time_at(0)
        if start >= duration:
            break
        plan = grid.plan
        bars.append(
            {
                "bar": grid.bar,
                "time": round(start, 6),
                "end": round(grid.end / grid.sample_rate, 6),
                "bpm": round(plan.bpm, 3),
                "beats": grid.beats,
                "scene": plan.scene,
                "section": grid.section,
                "layers": plan.layers,
                "key": KEY_NAMES[plan.tonic],
                "mode": plan.mode,
            }
        )
        for beat in range(grid.beats):
            at = grid.time_at(beat)
            if at >= duration:
                break
            beats.append(
                {
                    "index": grid.first_beat + beat,
                    "bar": grid.bar,
                    "beat": beat,
                    "time": round(at, 6),
                    "bpm": round(grid.bpm_at(beat), 3),
                    "downbeat": beat == 0,
                }
            )
    return {
        "format": FORMAT,
        "version": VERSION,
        "sample_rate": sample_rate,
        "duration": round(duration, 6),
        "bars": bars,
        "beats": beats,
    }


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n")
