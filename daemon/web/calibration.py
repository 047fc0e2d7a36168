"""The beat times the panel's calibration page taps against: ``GET /api/beats``.

The page asks for the recent and coming beats as Unix times (milliseconds) *at the reference*:
when the engine's sound is computed, which is what every delay is measured from (see
:mod:`daemon.outputs.delays`). The user taps along to the beat as they hear it (through the
speakers, or through the OBS page); the page takes the median of (tap - nearest beat) as how late
that path is, and proposes a delay for the output they pick:

- ``engine`` (the sound card): the offset itself;
- any other output: the offset less the engine's delay (which already moves every output).

The browser stamps taps with ``performance.timeOrigin + event.timeStamp`` (Unix ms), the server
converts the clock's ``perf_counter`` times with one ``time.time() - time.perf_counter()``; on one
machine the two clocks agree to about a millisecond.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from daemon.clock import DelayedClock, MusicClock
from daemon.messages import Beat

KEEP = 32  # beats kept (about 16 s at 120 bpm): the page fetches every second


class BeatTimes:
    """Keeps the latest beats (from the clock's audio thread) and says when each is at the
    reference, in Unix milliseconds."""

    def __init__(self) -> None:
        self._beats: collections.deque[Beat] = collections.deque(maxlen=KEEP)
        self._lock = threading.Lock()
        self._clock: MusicClock | None = None

    def attach(self, clock: MusicClock) -> None:
        """Listen to ``clock``'s beats; times are read from the clock without an output's delay."""
        self._clock = clock.inner if isinstance(clock, DelayedClock) else clock
        clock.add_beat_listener(self._on_beat)

    def _on_beat(self, beat: Beat) -> None:
        with self._lock:
            self._beats.append(beat)

    def as_json(self) -> dict[str, Any]:
        """``{"now": unix ms, "bpm": ..., "beats": [{"index", "unix"}, ...]}``; no beats without
        a wall clock yet."""
        unix_minus_perf = time.time() - time.perf_counter()
        with self._lock:
            beats = list(self._beats)
        out = []
        if self._clock is not None:
            for beat in beats:
                wall = self._clock.wall_time(beat.audio_time)
                if wall is not None:
                    out.append(
                        {"index": beat.index, "unix": round((wall + unix_minus_perf) * 1e3, 2)}
                    )
        return {
            "now": round(time.time() * 1e3, 2),
            "bpm": beats[-1].bpm if beats else None,
            "beats": out,
        }


__all__ = ["BeatTimes"]
