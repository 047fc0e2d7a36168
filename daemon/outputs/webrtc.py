"""WebRTC media for the OBS page: the engine's audio and the beat-synced visuals as aiortc tracks.

Audio. The engine hands every block to :meth:`AudioRing.write` on its own thread: one lock and
one copy of 256 frames, nothing else, so viewers never reach the audio path. Each viewer gets its
own :class:`EngineAudioTrack` (one track instance per peer, as aiortc wants) with its own read
cursor into the shared ring. A track hands aiortc 20 ms frames (the Opus frame) when the wall
clock reaches their audio time (``Engine.wall_time``), so what the browser hears is what the
engine's clock says is sounding; the live manual engine renders ``engine.live_ahead_s`` ahead,
so the audio is always in the ring before it is due. A viewer that stalls (a busy event loop)
skips ahead to the present instead of drifting behind.

Video. :class:`LiveVisuals` renders the frame of each slot (``fps`` per second of wall clock)
once, off the event loop, and shares it between viewers: each viewer's :class:`VisualsTrack`
asks for the slot that is due. The frame shows the audio time that is sounding at that wall
time. A transparent stream packs colour and alpha side by side (video codecs carry no alpha);
the page recombines them.

:class:`PeerHub` owns the peer connections: a browser's offer in, the answer out, and every
peer closed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from daemon.visuals import EMPTY_STATE, VisualTimeline, pack_alpha, render_frame

log = logging.getLogger("moodscore.webrtc")

FRAME_S = 0.02  # one Opus frame
VIDEO_CLOCK = 90_000  # RTP video clock rate
# A viewer whose cursor fell this far behind the present (a stalled event loop) jumps ahead.
MAX_AUDIO_LAG_S = 0.2
# A viewer whose connection stays "disconnected" this long is dropped.
DISCONNECT_GRACE_S = 5.0
# Seconds of audio the ring holds: far more than any viewer may lag.
RING_SECONDS = 2.0

# Returns the time.perf_counter() at audio time 0, or None before the engine's clock runs.
ClockOffset = Callable[[], float | None]


class WallClock(Protocol):
    """What the tracks pace by: an :class:`~daemon.engine.Engine`."""

    def wall_time(self, audio_time: float) -> float | None: ...


def engine_clock(engine: WallClock) -> ClockOffset:
    """The :data:`ClockOffset` of an :class:`~daemon.engine.Engine` (``wall_time(0)``)."""
    return lambda: engine.wall_time(0.0)


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
    engine's clock. Silence before the engine's clock runs and when the ring has no audio for
    the frame (the engine stopped or fell behind)."""

    kind = "audio"

    def __init__(self, ring: AudioRing, clock: ClockOffset) -> None:
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
        offset = self._clock()
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
        due = offset + self._cursor / self._rate
        if due > now:
            await asyncio.sleep(due - now)
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


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """Size and rate of the visuals stream."""

    width: int
    height: int
    fps: float


class LiveVisuals:
    """Renders the visuals of each video slot once and shares the frame between viewers.

    Slot ``k`` is due at wall time ``origin + k / fps`` (``origin`` is when this object was made)
    and shows the audio time sounding then.

    Parameters
    ----------
    timeline : bar grids and notes from the engine.
    clock : the engine's clock offset.
    video : frame size and rate.
    """

    def __init__(self, *, timeline: VisualTimeline, clock: ClockOffset, video: VideoFormat):
        self.timeline = timeline
        self.video = video
        self._clock = clock
        self.origin = time.perf_counter()
        self._cache: dict[tuple[int, bool], asyncio.Future[av.VideoFrame]] = {}
        self.rendered = 0
        self.render_seconds = 0.0

    def slot_time(self, slot: int) -> float:
        """Wall time (perf_counter) at which slot ``slot`` is due."""
        return self.origin + slot / self.video.fps

    def current_slot(self) -> int:
        """The slot due now or next."""
        return max(0, math.ceil((time.perf_counter() - self.origin) * self.video.fps - 1e-6))

    async def frame(self, slot: int, *, transparent: bool) -> av.VideoFrame:
        """The frame of ``slot`` (yuv420p, pts on the 90 kHz clock), rendered on first request."""
        key = (slot, transparent)
        future = self._cache.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._cache[key] = future
            # Only the newest few slots are wanted; drop the rest so memory stays flat.
            for old in [k for k in self._cache if k[0] < slot - 4]:
                del self._cache[old]
            try:
                frame = await asyncio.to_thread(self._render, slot, transparent)
            except BaseException as exc:
                self._cache.pop(key, None)
                future.set_exception(exc)
                # Nobody else may be waiting; mark it retrieved so asyncio does not complain.
                future.exception()
                raise
            future.set_result(frame)
            return frame
        return await asyncio.shield(future)

    def _render(self, slot: int, transparent: bool) -> av.VideoFrame:
        started = time.perf_counter()
        offset = self._clock()
        if offset is None:
            t, state = 0.0, EMPTY_STATE
        else:
            t = self.slot_time(slot) - offset
            state = self.timeline.state_at(t)
        width, height = self.video.width, self.video.height
        rgba = render_frame(t, state, width=width, height=height, transparent=transparent)
        image = pack_alpha(rgba) if transparent else np.ascontiguousarray(rgba[:, :, :3])
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = round(slot * VIDEO_CLOCK / self.video.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.rendered += 1
        self.render_seconds += time.perf_counter() - started
        return frame


class VisualsTrack(MediaStreamTrack):
    """One viewer's video: the shared frame of each slot, when it is due. A viewer that falls
    behind skips to the present slot (frames are dropped, never queued)."""

    kind = "video"

    def __init__(self, visuals: LiveVisuals, *, transparent: bool = False) -> None:
        super().__init__()
        self._visuals = visuals
        self._transparent = transparent
        self._next: int | None = None
        self.skipped = 0

    async def recv(self) -> av.VideoFrame:
        """The frame of the next slot, returned at its due time."""
        if self.readyState != "live":
            raise MediaStreamError
        present = self._visuals.current_slot()
        slot = present if self._next is None else self._next
        if slot < present:
            self.skipped += present - slot
            slot = present
        due = self._visuals.slot_time(slot)
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        self._next = slot + 1
        return await self._visuals.frame(slot, transparent=self._transparent)


def allow_loopback_candidates() -> None:
    """Let aioice offer 127.0.0.1 as a host candidate.

    aioice skips the loopback address when it gathers host candidates, so on a machine whose
    only interface is loopback (a sandbox, some CI) no candidate pair can ever form with a
    browser on the same machine. Adding it costs one extra candidate pair elsewhere. Idempotent.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    if getattr(original, "_moodscore_loopback", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses._moodscore_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


class PeerHub:
    """The viewers' peer connections: answers offers, counts viewers, closes them all at the end.

    Parameters
    ----------
    ring : the engine's audio, shared by every viewer.
    visuals : the shared visuals renderer.
    clock : the engine's clock offset.
    """

    def __init__(self, *, ring: AudioRing, visuals: LiveVisuals, clock: ClockOffset) -> None:
        self.ring = ring
        self.visuals = visuals
        self._clock = clock
        self._peers: set[RTCPeerConnection] = set()
        self.connections = 0  # viewers ever connected
        self._closed = False

    @property
    def viewers(self) -> int:
        """Peer connections open now."""
        return len(self._peers)

    async def answer(
        self, sdp: str, kind: str, *, transparent: bool = False
    ) -> RTCSessionDescription:
        """Answer a browser's offer with the audio and visuals tracks.

        The offer must carry the browser's ICE candidates (aiortc does not trickle); the answer
        carries ours.

        Raises
        ------
        ValueError
            The offer is not a valid SDP offer, or the hub is shut down.
        """
        if self._closed:
            raise ValueError("the daemon is shutting down")
        if kind != "offer":
            raise ValueError(f"expected an SDP offer, got {kind!r}")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._peers.add(pc)
        self.connections += 1
        audio = EngineAudioTrack(self.ring, self._clock)
        video = VisualsTrack(self.visuals, transparent=transparent)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.debug("viewer %s: %s", id(pc), pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)
            elif pc.connectionState == "disconnected":
                # A tab that vanished without closing its connection: ICE consent would only
                # fail after ~30 s; give it a few seconds to come back, then let it go.
                await asyncio.sleep(DISCONNECT_GRACE_S)
                if pc.connectionState == "disconnected":
                    await self._drop(pc)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "audio":
                    pc.addTrack(audio)
                elif transceiver.kind == "video":
                    pc.addTrack(video)
            if not pc.getSenders():
                raise ValueError("the offer asks for neither audio nor video")
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await self._drop(pc)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"could not answer the offer: {exc}") from exc
        log.info("viewer connected (%d watching)", self.viewers)
        return pc.localDescription

    async def _drop(self, pc: RTCPeerConnection) -> None:
        if pc in self._peers:
            self._peers.discard(pc)
            log.info("viewer left (%d watching)", self.viewers)
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        with contextlib.suppress(Exception):
            await pc.close()

    async def close(self) -> None:
        """Close every peer connection (idempotent); later offers are refused."""
        self._closed = True
        peers = list(self._peers)
        await asyncio.gather(*(self._drop(pc) for pc in peers), return_exceptions=True)
