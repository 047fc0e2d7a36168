"""WebRTC audio: the engine's audio in a ring buffer, and one 20 ms Opus-frame track per viewer.

The engine hands every block to :meth:`AudioRing.write` on its own thread: one lock and one copy
of 256 frames, nothing else, so viewers never reach the audio path. Each viewer gets its own
:class:`EngineAudioTrack` (one track instance per peer, as aiortc wants) with its own read cursor
into the shared ring. A track hands aiortc 20 ms frames (the Opus frame) when their audio time is
heard (it waits with the music clock's ``call_at``, :func:`daemon.clock.until`), so what the
browser hears is what the engine's clock says is sounding; the live manual engine renders
``engine.live_ahead_s`` ahead, so the audio is always in the ring before it is due. A viewer that
stalls (a busy event loop) skips ahead to the present instead of drifting behind.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import threading
import time

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from daemon.clock import MusicClock, until

FRAME_S = 0.02  # one Opus frame
# A viewer whose cursor fell this far behind the present (a stalled event loop) jumps ahead.
MAX_AUDIO_LAG_S = 0.2
# Seconds of audio the ring holds: far more than any viewer may lag.
RING_SECONDS = 2.0


class AudioRing:
    """Single writer (the engine thread), many readers: stereo float32 audio by absolute sample.

    Parameters
    ----------
    sample_rate : the engine's sample rate (what it really runs at).
    seconds : capacity; older audio is overwritten.
    """

    def __init__(self, *, sample_rate: int, seconds: float = RING_SECONDS) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self.gaps = 0  # blocks that did not follow on from the previous one
        self._allocate(sample_rate)

    def _allocate(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._size = int(sample_rate * self._seconds)
        self._data = np.zeros((self._size, 2), dtype=np.float32)
        self._end = 0  # absolute sample one past the newest written

    def configure(self, sample_rate: int) -> None:
        """Follow the rate the engine really runs at (JACK imposes its own); a change empties
        the ring. Call before the first write."""
        if sample_rate != self.sample_rate:
            with self._lock:
                self._allocate(sample_rate)

    @property
    def end(self) -> int:
        """Absolute sample one past the newest audio written."""
        return self._end

    def write(self, block: np.ndarray, audio_time: float) -> None:
        """Engine-thread audio listener.

        Parameters
        ----------
        block : np.ndarray [shape=(n, 2), dtype=float32]
        audio_time : audio time of its first sample, seconds.
        """
        start = round(audio_time * self.sample_rate)
        n = len(block)
        if n == 0:
            return
        with self._lock:
            if start != self._end and self._end:
                self.gaps += 1
            first = start % self._size
            head = min(n, self._size - first)
            self._data[first : first + head] = block[:head]
            if head < n:
                self._data[: n - head] = block[head:]
            self._end = start + n

    def read(self, start: int, count: int) -> np.ndarray | None:
        """A copy of samples ``[start, start + count)`` [shape=(count, 2)], or None when they are
        not all written yet or already overwritten."""
        with self._lock:
            if start + count > self._end or start < self._end - self._size or start < 0:
                return None
            first = start % self._size
            head = min(count, self._size - first)
            out = np.empty((count, 2), dtype=np.float32)
            out[:head] = self._data[first : first + head]
            if head < count:
                out[head:] = self._data[: count - head]
            return out


def to_s16(block: np.ndarray) -> np.ndarray:
    """float32 [shape=(n, 2)] in [-1, 1] -> interleaved int16 [shape=(1, 2n)] (packed s16)."""
    clipped = np.clip(block, -1.0, 1.0) * 32767.0
    return clipped.astype(np.int16).reshape(1, -1)


class EngineAudioTrack(MediaStreamTrack):
    """One viewer's audio: 20 ms stereo s16 frames from an :class:`AudioRing`, paced by the
    music clock. Silence before the clock runs and when the ring has no audio for the frame
    (the engine stopped or fell behind)."""

    kind = "audio"

    def __init__(self, ring: AudioRing, clock: MusicClock) -> None:
        super().__init__()
        self._ring = ring
        self._clock = clock
        self._rate = ring.sample_rate
        self._samples = round(self._rate * FRAME_S)
        self._cursor: int | None = None  # absolute engine sample of the next frame
        self._pts = 0  # samples sent: a continuous timeline for the encoder
        self._idle_start: float | None = None
        self.skipped = 0  # frames skipped to catch up with the present
        self.silent = 0  # frames sent as silence

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms frame, returned when its audio time is due on the wall clock."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._ring.sample_rate != self._rate:
            # The engine started at another rate than configured: restart on its clock.
            self._rate = self._ring.sample_rate
            self._samples = round(self._rate * FRAME_S)
            self._cursor = None
        offset = self._clock.wall_time(0.0)
        if offset is None:
            # No engine clock yet: paced silence on our own clock.
            now = time.perf_counter()
            if self._idle_start is None:
                self._idle_start = now
            due = self._idle_start + self._pts / self._rate
            if due > now:
                await asyncio.sleep(due - now)
            return self._frame(None)
        now = time.perf_counter()
        present = math.floor((now - offset) * self._rate)
        if self._cursor is None:
            # Start on the frame that is sounding now.
            self._cursor = max(0, present)
        elif present - self._cursor > MAX_AUDIO_LAG_S * self._rate:
            skipped = (present - self._cursor) // self._samples
            self.skipped += skipped
            self._cursor += skipped * self._samples
        await until(self._clock, self._cursor / self._rate)
        block = self._ring.read(self._cursor, self._samples)
        self._cursor += self._samples
        return self._frame(block)

    def _frame(self, block: np.ndarray | None) -> av.AudioFrame:
        if block is None:
            self.silent += 1
            data = np.zeros((1, 2 * self._samples), dtype=np.int16)
        else:
            data = to_s16(block)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="stereo")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self._rate)
        self._pts += self._samples
        return frame
