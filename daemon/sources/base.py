"""The frame-source interface, and the bookkeeping every threaded source shares.

A source is as small as aiortc's ``MediaStreamTrack``: one async method, :meth:`FrameSource.recv`,
which returns the next :class:`~daemon.messages.Frame` and raises
:class:`~daemon.errors.EndOfStream` once the stream has finished, plus an idempotent
:meth:`FrameSource.close`.

:class:`ThreadedSource` does what every concrete source needs, once (as mido's ``BaseOutput``
does for ports): blocking reads run in a worker thread, one at a time; frames are numbered;
paced sources are held back until their ``pts`` on the wall clock; a duration limit ends the
stream; ``close`` waits for an in-flight read before it releases the file or device. Subclasses
implement only ``_read`` and ``_release``.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from daemon.errors import EndOfStream
from daemon.messages import Frame

# How far a paced source may fall behind the wall clock before it re-anchors its clock instead
# of delivering the backlog as a burst (a consumer that stalled for a second should see the
# next frame now, not thirty frames at once).
MAX_PACING_LAG_S = 0.25


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What :func:`daemon.sources.probe_video` reads from a video file's headers.

    duration is in seconds (None when the container does not say), fps the stream's average
    frame rate, width/height in pixels, codec the FFmpeg decoder name (``"h264"``), has_audio
    whether the file carries at least one audio stream.
    """

    duration: float | None
    fps: float
    width: int
    height: int
    codec: str
    has_audio: bool


class FrameSource(ABC):
    """Where frames come from: a video file, a camera or the built-in demo.

    Attributes
    ----------
    description : human words for logs and the CLI ("built-in demo scene", "webcam 0",
        "video file clip.mp4").
    fps : frames per second the source delivers (nominal for cameras).
    size : (width, height) of the delivered frames in pixels.
    duration : length in seconds when known (files, a demo with a duration), None for endless
        streams (cameras, an unlimited demo, a looping file).
    """

    description: str
    fps: float
    size: tuple[int, int]
    duration: float | None

    @abstractmethod
    async def recv(self) -> Frame:
        """The next frame, in order.

        Frames carry ``pts`` in seconds from the start of the source and ``index`` from 0.

        Raises
        ------
        EndOfStream
            When the stream has finished or the source was closed.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release the file, device or thread; safe to call more than once."""

    async def __aenter__(self) -> FrameSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description!r} {self.size[0]}x{self.size[1]}>"


class ThreadedSource(FrameSource):
    """Base of sources whose reads block: they run in a worker thread, never on the event loop.

    Parameters
    ----------
    description, fps, size, duration : see :class:`FrameSource`.
    pace : hold each frame back until its ``pts`` has come on the wall clock (files and the
        demo when live). Cameras pass False: they are paced by the hardware.
    limit : end the stream at the first frame whose ``pts`` reaches this many seconds.
    """

    def __init__(
        self,
        *,
        description: str,
        fps: float,
        size: tuple[int, int],
        duration: float | None,
        pace: bool,
        limit: float | None = None,
    ) -> None:
        self.description = description
        self.fps = fps
        self.size = size
        self.duration = duration
        self._pace = pace
        self._limit = limit
        self._index = 0
        self._finished = False
        self._closed = False
        # Serialises the blocking calls: decoders and capture devices are not re-entrant, and
        # close() must not free a container while a worker thread is still decoding from it.
        self._io_lock = threading.Lock()
        # One recv at a time keeps frames in order even if two tasks call recv concurrently.
        self._recv_lock = asyncio.Lock()
        self._clock_origin: float | None = None

    @abstractmethod
    def _read(self) -> tuple[float, np.ndarray] | None:
        """Blocking: the next ``(pts, image)``, or None at the end. Runs in a worker thread.

        image : np.ndarray [shape=(height, width, 3), dtype=uint8], RGB.
        """

    @abstractmethod
    def _release(self) -> None:
        """Blocking: free the file or device. Runs in a worker thread, after any read."""

    async def recv(self) -> Frame:
        """The next frame; see :meth:`FrameSource.recv`."""
        async with self._recv_lock:
            if self._finished or self._closed:
                raise EndOfStream
            item = await asyncio.to_thread(self._locked_read)
            if item is None or (self._limit is not None and item[0] >= self._limit - 1e-9):
                self._finished = True
                raise EndOfStream
            pts, image = item
            if self._pace:
                await self._wait_until(pts)
            frame = Frame(pts=pts, image=image, index=self._index)
            self._index += 1
            return frame

    async def close(self) -> None:
        """Release the file or device after any in-flight read; idempotent."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._locked_release)

    def _locked_read(self) -> tuple[float, np.ndarray] | None:
        with self._io_lock:
            if self._closed:
                return None
            return self._read()

    def _locked_release(self) -> None:
        with self._io_lock:
            self._release()

    async def _wait_until(self, pts: float) -> None:
        now = asyncio.get_running_loop().time()
        if self._clock_origin is None:
            # The first frame plays now, whatever its pts; later frames keep their spacing.
            self._clock_origin = now - pts
            return
        delay = self._clock_origin + pts - now
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -MAX_PACING_LAG_S:
            self._clock_origin -= delay


class TappedSource(FrameSource):
    """A source that hands every frame to an async tap before passing it on (a render's video
    writer sees exactly the frames the analysis reads).

    Parameters
    ----------
    inner : the source read (closed with this one).
    tap : awaited with every frame.
    """

    def __init__(self, inner: FrameSource, tap: Callable[[Frame], Awaitable[None]]) -> None:
        self._inner = inner
        self._tap = tap
        self.description = inner.description
        self.fps = inner.fps
        self.size = inner.size
        self.duration = inner.duration

    async def recv(self) -> Frame:
        frame = await self._inner.recv()
        await self._tap(frame)
        return frame

    async def close(self) -> None:
        await self._inner.close()
