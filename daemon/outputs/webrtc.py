"""WebRTC media for the OBS page: the engine's audio and the beat-synced visuals as aiortc tracks.

Audio. The engine hands every block to :meth:`AudioRing.write` on its own thread: one lock and
one copy of 256 frames, nothing else, so viewers never reach the audio path. Each viewer gets its
own :class:`EngineAudioTrack` (one track instance per peer, as aiortc wants) with its own read
cursor into the shared ring. A track hands aiortc 20 ms frames (the Opus frame) when their audio
time is heard (it waits with the music clock's ``call_at``, :func:`daemon.clock.until`), so what
the browser hears is what the engine's clock says is sounding; the live manual engine renders
``engine.live_ahead_s`` ahead, so the audio is always in the ring before it is due. A viewer
that stalls (a busy event loop) skips ahead to the present instead of drifting behind.

Video. :class:`LiveVisuals` draws the frame of each slot (``fps`` per second of audio time) and
encodes it to VP8 once, off the event loop, and hands the packets to every viewer's
:class:`VisualsTrack` when the slot's audio time is heard: three viewers cost what one does, bar
packetising. A transparent stream packs colour and alpha side
by side (video codecs carry no alpha); the page recombines them.

:class:`PeerHub` owns the peer connections: a browser's offer in, the answer out, and every
peer closed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av
import cv2
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from daemon.clock import MusicClock, until
from daemon.logs import RateLimitedLog
from daemon.visuals import EMPTY_STATE, VisualTimeline, pack_alpha, render_frame

log = logging.getLogger("moodscore.webrtc")

FRAME_S = 0.02  # one Opus frame
VIDEO_CLOCK = 90_000  # RTP video clock rate
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
# A viewer whose cursor fell this far behind the present (a stalled event loop) jumps ahead.
MAX_AUDIO_LAG_S = 0.2
# A viewer whose connection stays "disconnected" this long is dropped.
DISCONNECT_GRACE_S = 5.0
# Seconds of audio the ring holds: far more than any viewer may lag.
RING_SECONDS = 2.0
# A keyframe at least this often in the shared video stream (see LiveVisuals).
KEYFRAME_INTERVAL_S = 2.0
# Encoded frames a viewer may have waiting before it is dropped back to the next keyframe.
FEED_FRAMES = 8

# The video codecs a viewer's connection may use: VP8 (and its retransmissions).
VP8_CODECS = [
    c
    for c in RTCRtpSender.getCapabilities("video").codecs
    if c.mimeType.lower() in ("video/vp8", "video/rtx")
]


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


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """Size and rate of the visuals stream."""

    width: int
    height: int
    fps: float


def stream_bitrate(width: int, height: int, fps: float) -> int:
    """Bits per second of the shared VP8 stream: about 0.08 bit per pixel per frame (the
    visuals are smooth gradients and a few shapes), between 300 kbit/s and 8 Mbit/s; 720p at
    30 fps gets 2.2 Mbit/s."""
    return int(min(max(width * height * fps * 0.08, 300_000), 8_000_000))


def yuv420_frame(image: np.ndarray) -> av.VideoFrame:
    """RGB or RGBA (alpha ignored) [shape=(h, w, 3|4), dtype=uint8], even h and w -> a yuv420p
    frame (BT.601, limited range, as FFmpeg's own conversion; OpenCV's is several times faster).
    """
    code = cv2.COLOR_RGBA2YUV_I420 if image.shape[2] == 4 else cv2.COLOR_RGB2YUV_I420
    yuv: np.ndarray = cv2.cvtColor(image, code).astype(np.uint8, copy=False)
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


class VisualsEncoder:
    """VP8 (libvpx, real-time settings as aiortc's own encoder uses) of one shared stream.

    Parameters
    ----------
    width, height : frame size in pixels (even).
    fps : frame rate (rate control only; timestamps come with the frames).
    bitrate : constant bit rate in bits per second.
    """

    def __init__(self, *, width: int, height: int, fps: float, bitrate: int) -> None:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(fps).limit_denominator(1001)
        codec.bit_rate = bitrate
        codec.gop_size = 100_000  # keyframes only when asked for (see LiveVisuals)
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "overshoot-pct": "15",
            "undershoot-pct": "100",
            "static-thresh": "1",
            "partitions": "0",
        }
        codec.thread_count = 2 if width * height > 640 * 480 else 1
        self._codec = codec

    def encode(self, frame: av.VideoFrame, *, keyframe: bool) -> list[av.Packet]:
        """Encode one yuv420p frame (its ``pts`` on the 90 kHz clock); a keyframe when asked."""
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        packets = list(self._codec.encode(frame))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets


class VideoFeed:
    """One viewer's place in a shared stream: the encoded frames waiting for its sender.

    A viewer starts on a keyframe; one that lags :data:`FEED_FRAMES` frames behind (its
    connection or the event loop stalled) drops what waits and resumes at the next keyframe,
    which it asks for: a shared VP8 stream cannot skip frames in between.
    """

    def __init__(self, request_keyframe: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self._request_keyframe = request_keyframe
        self._waiting_for_key = True
        self.dropped = 0  # frames this viewer did not get

    def put(self, packets: list[av.Packet]) -> None:
        """Hand on one slot's packets (event loop)."""
        for packet in packets:
            if self._queue.qsize() >= FEED_FRAMES:
                self.dropped += self._queue.qsize()
                while not self._queue.empty():
                    self._queue.get_nowait()
                self._waiting_for_key = True
                self._request_keyframe()
            if self._waiting_for_key and not packet.is_keyframe:
                self.dropped += 1
                continue
            self._waiting_for_key = False
            self._queue.put_nowait(packet)

    def end(self) -> None:
        """The stream ended: the viewer's next :meth:`get` returns None."""
        self._queue.put_nowait(None)

    async def get(self) -> av.Packet | None:
        """The next encoded frame, or None when the stream ended."""
        return await self._queue.get()


class _Stream:
    """The shared stream of one kind (opaque or transparent): its viewers and its producer."""

    def __init__(self) -> None:
        self.feeds: set[VideoFeed] = set()
        self.task: asyncio.Task[None] | None = None
        self.keyframe_wanted = True


class LiveVisuals:
    """Renders and encodes the visuals of each video slot once and shares the packets between
    viewers.

    Slot ``k`` shows audio time ``k / fps`` and is handed on when that time is heard (the music
    clock's ``call_at``, through :func:`daemon.clock.until`). While anyone watches, a producer task
    per stream kind (opaque, transparent) renders and encodes each slot off the event loop,
    starting one slot ahead, and hands the VP8 packets to every viewer at the slot's time.
    Drawing and encoding cost the same for one viewer or ten: only packetising is per viewer. A
    keyframe goes out when a viewer joins or falls behind, and every
    :data:`KEYFRAME_INTERVAL_S` (so a lost packet heals without a keyframe request, which shared
    packets cannot answer). Before the music starts, empty frames go out at the frame rate.

    Parameters
    ----------
    timeline : bar grids and notes from the engine.
    clock : the music clock.
    video : frame size and rate.
    """

    def __init__(self, *, timeline: VisualTimeline, clock: MusicClock, video: VideoFormat):
        self.timeline = timeline
        # yuv420p needs even sizes.
        self.video = dataclasses.replace(
            video, width=video.width // 2 * 2, height=video.height // 2 * 2
        )
        self._clock = clock
        # The stream's own epoch: frame timestamps are wall time since it, so they only grow,
        # from the empty frames before the music into the music.
        self.origin = time.perf_counter()
        self._streams = {False: _Stream(), True: _Stream()}
        self.rendered = 0  # slots drawn and encoded
        self.render_seconds = 0.0
        self.late_slots = 0  # slots skipped because drawing fell behind the clock
        self._closed = False

    def current_slot(self) -> int | None:
        """The slot heard now or next; None before the music clock runs."""
        offset = self._clock.wall_time(0.0)
        if offset is None:
            return None
        heard = time.perf_counter() - offset
        return max(0, math.ceil(heard * self.video.fps - 1e-6))

    def subscribe(self, *, transparent: bool) -> VideoFeed:
        """A new viewer's feed of the shared stream; starts the producer when it is the first.
        Call on the event loop."""
        stream = self._streams[transparent]
        feed = VideoFeed(lambda: setattr(stream, "keyframe_wanted", True))
        stream.feeds.add(feed)
        stream.keyframe_wanted = True
        if self._closed:
            feed.end()
        elif stream.task is None or stream.task.done():
            stream.task = asyncio.get_running_loop().create_task(
                self._produce(stream, transparent), name="visuals"
            )
        return feed

    def unsubscribe(self, feed: VideoFeed) -> None:
        """A viewer left; the producer stops after the last one."""
        for stream in self._streams.values():
            stream.feeds.discard(feed)

    @property
    def producing(self) -> int:
        """Streams being drawn and encoded now (0 with nobody watching)."""
        return sum(1 for s in self._streams.values() if s.task is not None and not s.task.done())

    async def close(self) -> None:
        """Stop producing; every viewer's feed ends."""
        self._closed = True
        for stream in self._streams.values():
            if stream.task is not None:
                stream.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream.task
            for feed in stream.feeds:
                feed.end()

    def render(self, slot: int | None, transparent: bool) -> av.VideoFrame:
        """The frame of ``slot`` (yuv420p, pts on the 90 kHz clock): a pure function of the
        slot, the clock and the timeline. ``None``: an empty frame for now (before the music).
        """
        offset = self._clock.wall_time(0.0)
        if slot is None or offset is None:
            t, state, wall = 0.0, EMPTY_STATE, time.perf_counter()
        else:
            t = slot / self.video.fps
            state, wall = self.timeline.state_at(t), offset + t
        width, height = self.video.width, self.video.height
        rgba = render_frame(t, state, width=width, height=height, transparent=transparent)
        frame = yuv420_frame(pack_alpha(rgba) if transparent else rgba)
        frame.pts = max(0, round((wall - self.origin) * VIDEO_CLOCK))
        frame.time_base = VIDEO_TIME_BASE
        return frame

    async def _produce(self, stream: _Stream, transparent: bool) -> None:
        width = self.video.width * (2 if transparent else 1)
        encoder = VisualsEncoder(
            width=width,
            height=self.video.height,
            fps=self.video.fps,
            bitrate=stream_bitrate(width, self.video.height, self.video.fps),
        )
        period = 1.0 / self.video.fps
        next_key: int | None = None
        slot: int | None = None
        trouble = RateLimitedLog(log)

        def render_and_encode(slot: int | None, keyframe: bool) -> list[av.Packet]:
            started = time.perf_counter()
            packets = encoder.encode(self.render(slot, transparent), keyframe=keyframe)
            self.render_seconds += time.perf_counter() - started
            self.rendered += 1
            return packets

        while stream.feeds:
            present = self.current_slot()
            if present is None:
                # Before the music: an empty frame a period, on our own pacing.
                keyframe, stream.keyframe_wanted = stream.keyframe_wanted, False
                packets = await asyncio.to_thread(render_and_encode, None, keyframe)
                for feed in list(stream.feeds):
                    feed.put(packets)
                await asyncio.sleep(period)
                continue
            if slot is None:
                slot, next_key = present, present
            # Start a slot ahead of its time, so its packets are ready when it is heard.
            await until(self._clock, (slot - 1) / self.video.fps)
            present = self.current_slot() or slot
            if present > slot + 1:
                # Drawing fell behind (a busy machine): skip to the present, never queue up.
                self.late_slots += present - slot
                slot = present
            keyframe = stream.keyframe_wanted or slot >= (next_key or 0)
            stream.keyframe_wanted = False
            try:
                packets = await asyncio.to_thread(render_and_encode, slot, keyframe)
            except Exception:
                trouble.warning("visuals: slot %d could not be drawn; skipped", slot, exc_info=True)
                slot += 1
                continue
            if keyframe:
                next_key = slot + max(1, round(KEYFRAME_INTERVAL_S * self.video.fps))
            await until(self._clock, slot * period)
            for feed in list(stream.feeds):
                feed.put(packets)
            slot += 1


class VisualsTrack(MediaStreamTrack):
    """One viewer's video: the shared stream's VP8 packets (aiortc packetises them for this
    viewer's connection without encoding again). The connection must have negotiated VP8."""

    kind = "video"

    def __init__(self, visuals: LiveVisuals, *, transparent: bool = False) -> None:
        super().__init__()
        self._visuals = visuals
        self._transparent = transparent
        self._feed: VideoFeed | None = None

    async def recv(self) -> av.Packet:
        """The next encoded frame, handed on at its slot's due time."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._feed is None:
            # Subscribe on the first request: a track whose connection never starts costs
            # nothing.
            self._feed = self._visuals.subscribe(transparent=self._transparent)
        packet = await self._feed.get()
        if packet is None or self.readyState != "live":
            raise MediaStreamError
        return packet

    @property
    def dropped(self) -> int:
        """Frames this viewer did not get (it fell behind)."""
        return 0 if self._feed is None else self._feed.dropped

    def stop(self) -> None:
        """Leave the shared stream."""
        if self._feed is not None:
            self._visuals.unsubscribe(self._feed)
            self._feed.end()
        super().stop()


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
    clock : the music clock the audio tracks are paced by.
    """

    def __init__(self, *, ring: AudioRing, visuals: LiveVisuals, clock: MusicClock) -> None:
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
        pc.addTransceiver(audio, direction="sendonly")
        # The shared stream is VP8 (every browser decodes it): this viewer must take VP8.
        pc.addTransceiver(video, direction="sendonly").setCodecPreferences(VP8_CODECS)

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
            await pc.setLocalDescription(await pc.createAnswer())
            if not any(t.currentDirection == "sendonly" for t in pc.getTransceivers()):
                raise ValueError("the offer asks for neither audio nor video")
        except Exception as exc:
            await self._drop(pc)
            if isinstance(exc, ValueError):
                raise
            if "video" in str(exc):
                raise ValueError(
                    "the browser offers no VP8 video; use a browser that decodes VP8 (Chromium, "
                    "OBS, Firefox, Safari)"
                ) from exc
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
        await self.visuals.close()
