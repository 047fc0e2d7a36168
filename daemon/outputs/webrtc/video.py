"""WebRTC video: the beat-synced visuals, drawn and encoded once, shared by every viewer.

:class:`LiveVisuals` draws the frame of each slot (``fps`` per second of audio time) and encodes
it to VP8 once, off the event loop, and hands the packets to every viewer's :class:`VisualsTrack`
when the slot's audio time is heard: three viewers cost what one does, bar packetising. A
transparent stream packs colour and alpha side by side (video codecs carry no alpha); the page
recombines them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from daemon.clock import MusicClock, until
from daemon.logs import RateLimitedLog
from daemon.outputs.webrtc.vp8 import (
    VIDEO_CLOCK,
    VIDEO_TIME_BASE,
    VisualsEncoder,
    stream_bitrate,
    yuv420_frame,
)
from daemon.visuals import EMPTY_STATE, VisualState, VisualTimeline, pack_alpha, render_frame

log = logging.getLogger("moodscore.webrtc")

# A keyframe at least this often in the shared video stream (see LiveVisuals).
KEYFRAME_INTERVAL_S = 2.0
# Encoded frames a viewer may have waiting before it is dropped back to the next keyframe.
FEED_FRAMES = 8


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """Size and rate of the visuals stream."""

    width: int
    height: int
    fps: float


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
    worker_process : draw and encode in a process of their own
        (:mod:`daemon.outputs.webrtc.worker`), so they never hold the audio thread up
        (``visuals.worker_process``); in a thread of this process otherwise.
    """

    def __init__(
        self,
        *,
        timeline: VisualTimeline,
        clock: MusicClock,
        video: VideoFormat,
        worker_process: bool = False,
    ):
        self.timeline = timeline
        self.worker_process = worker_process
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
        self.workers_started = 0  # worker processes that drew a stream (worker_process)
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
        t, state, pts = self._inputs(slot)
        width, height = self.video.width, self.video.height
        rgba = render_frame(t, state, width=width, height=height, transparent=transparent)
        frame = yuv420_frame(pack_alpha(rgba) if transparent else rgba)
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
        return frame

    def _inputs(self, slot: int | None) -> tuple[float, VisualState, int]:
        """What the frame of ``slot`` is drawn from: its audio time, the visual state then and
        its timestamp (the slot's wall time since :attr:`origin`, 90 kHz)."""
        offset = self._clock.wall_time(0.0)
        if slot is None or offset is None:
            t, state, wall = 0.0, EMPTY_STATE, time.perf_counter()
        else:
            t = slot / self.video.fps
            state, wall = self.timeline.state_at(t), offset + t
        return t, state, max(0, round((wall - self.origin) * VIDEO_CLOCK))

    async def _produce(self, stream: _Stream, transparent: bool) -> None:
        worker = None
        if self.worker_process:
            from daemon.outputs.webrtc.worker import VisualsWorker

            try:
                worker = await asyncio.to_thread(
                    VisualsWorker,
                    width=self.video.width,
                    height=self.video.height,
                    fps=self.video.fps,
                    transparent=transparent,
                )
            except (RuntimeError, OSError) as exc:
                log.warning("visuals: no worker process (%s); drawing in this one", exc)
            else:
                self.workers_started += 1
        try:
            await self._produce_with(stream, transparent, worker)
        finally:
            if worker is not None:
                await asyncio.to_thread(worker.close)

    async def _produce_with(self, stream: _Stream, transparent: bool, worker: Any) -> None:
        width = self.video.width * (2 if transparent else 1)
        encoder = None
        if worker is None:
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
            if encoder is not None:
                packets = encoder.encode(self.render(slot, transparent), keyframe=keyframe)
            else:
                t, state, pts = self._inputs(slot)
                packets = worker.encode(t, state, pts=pts, keyframe=keyframe)
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
