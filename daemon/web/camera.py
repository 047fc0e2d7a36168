"""A browser's camera as a frame source: the panel's "use this browser's camera" sends it to the
daemon over WebRTC, and the session analyses it like a webcam (in whatever mode it runs: the
face mode reads the faces in it).

The frames stay in the process, as a webcam's do: decoded, handed to the analysis, dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from daemon.errors import EndOfStream, SourceError
from daemon.messages import Frame
from daemon.sources import FrameSource

log = logging.getLogger("moodscore.web")

# How long the browser may take to send its first frame after the answer.
FIRST_FRAME_TIMEOUT_S = 15.0
# Nominal rate the panel asks the camera for.
CAMERA_FPS = 30.0


class BrowserCamera(FrameSource):
    """Frames of one browser's camera, received over its own peer connection.

    Build it with :func:`answer_camera`; :meth:`wait_ready` waits for the first frame (then
    ``size`` is known). ``pts`` counts from the first frame on the sender's clock (RTP
    timestamps), so the browser's own pacing and jitter carry through; a stream that stops (the
    tab closed, the camera unplugged) ends with :class:`~daemon.errors.EndOfStream`.
    """

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.description = "browser camera"
        self.fps = CAMERA_FPS
        self.size = (0, 0)
        self.duration = None
        self._pc = pc
        self._track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self._first: av.VideoFrame | None = None
        self._origin: float | None = None
        self._index = 0
        self._closed = False
        self.ended = asyncio.Event()  # the stream ended or the source was closed

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and not self._track.done():
            self._track.set_result(track)

    async def wait_ready(self) -> None:
        """Until the first frame arrived.

        Raises
        ------
        SourceError
            No frame within :data:`FIRST_FRAME_TIMEOUT_S`, or the stream ended first.
        """
        try:
            async with asyncio.timeout(FIRST_FRAME_TIMEOUT_S):
                track = await self._track
                frame = await track.recv()
        except (TimeoutError, MediaStreamError) as exc:
            raise SourceError(
                "the browser's camera sent no picture; allow the camera in the browser and try "
                "again"
            ) from exc
        assert isinstance(frame, av.VideoFrame)
        self._first = frame
        self.size = (frame.width, frame.height)
        self.description = f"browser camera {frame.width}x{frame.height}"

    async def recv(self) -> Frame:
        """The next frame (RGB); see :meth:`FrameSource.recv`."""
        if self._closed:
            raise EndOfStream
        frame, self._first = self._first, None
        if frame is None:
            try:
                track = await self._track
                received = await track.recv()
            except MediaStreamError:
                self.ended.set()
                raise EndOfStream from None
            assert isinstance(received, av.VideoFrame)
            frame = received
        stamp = float(frame.time) if frame.time is not None else time.perf_counter()
        if self._origin is None:
            self._origin = stamp
        image = await asyncio.to_thread(frame.to_ndarray, format="rgb24")
        out = Frame(pts=max(0.0, stamp - self._origin), image=image, index=self._index)
        self._index += 1
        return out

    async def close(self) -> None:
        """Close the peer connection (the browser sees its camera stream end); idempotent."""
        if self._closed:
            return
        self._closed = True
        self.ended.set()
        with contextlib.suppress(Exception):
            await self._pc.close()


async def answer_camera(sdp: str, kind: str) -> tuple[RTCSessionDescription, BrowserCamera]:
    """Answer a browser's offer that sends its camera; returns the answer and the source.

    Raises
    ------
    ValueError
        Not an SDP offer with a video track.
    """
    if kind != "offer":
        raise ValueError(f"expected an SDP offer, got {kind!r}")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    camera = BrowserCamera(pc)
    pc.on("track", camera._on_track)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        log.debug("browser camera: %s", pc.connectionState)
        if pc.connectionState == "failed":
            await camera.close()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not any(t.kind == "video" for t in pc.getTransceivers()):
            raise ValueError("the offer sends no video; send the camera's video track")
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        await camera.close()
        if isinstance(exc, ValueError):
            raise
        raise ValueError(f"could not answer the camera's offer: {exc}") from exc
    return pc.localDescription, camera
