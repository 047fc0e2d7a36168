"""Video files, decoded with PyAV (FFmpeg) in a worker thread.

The file is opened and its first frame decoded when the source is built, so a missing file, a
file that is not a video or a stream that does not decode fails with a :class:`SourceError`
before anything starts. Decoding then runs in a worker thread (PyAV releases the GIL while
FFmpeg decodes, and ``thread_type="AUTO"`` lets FFmpeg use frame and slice threads).

Damage is handled the way a player would: a packet that does not decode is skipped with a
warning and decoding goes on; a container that cannot be read any further (truncated download,
I/O error) ends the stream cleanly after a warning saying where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from daemon.errors import SourceError
from daemon.sources.base import ThreadedSource, VideoInfo

log = logging.getLogger("moodscore.sources")

WHAT_TO_PASS = "pass an existing video file, --source demo or --source webcam[:N]"
# Only the first few corrupt packets are logged one by one; a badly damaged file would
# otherwise flood the log. The total is reported when the stream ends.
MAX_CORRUPT_WARNINGS = 5
# Used when a container states no frame rate at all (some raw streams): pacing and window
# bookkeeping need a number, and pts still comes from the file where it has one.
FALLBACK_FPS = 30.0


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video file's headers: duration, frame rate, size, codec and whether it has audio.

    Raises
    ------
    SourceError
        When the file is missing, is not a container FFmpeg can read, or has no video stream.
    """
    path = Path(path)
    container = _open_container(path)
    try:
        stream = _video_stream(container, path)
        return _info(container, stream)
    finally:
        container.close()


class VideoFileSource(ThreadedSource):
    """Frames of a video file, RGB, with ``pts`` from the stream's own timestamps.

    Parameters
    ----------
    path : the video file.
    paced : deliver frames at their pts against the wall clock (live); otherwise as fast as
        decoding allows, every frame, in order (render, analyze).
    loop : start again from the beginning at the end of the file, with pts still increasing.
        Only honoured when ``paced`` (a render of an endless file would never finish).
    limit : end the stream at this many seconds of source time.
    """

    def __init__(
        self, path: str | Path, *, paced: bool, loop: bool = False, limit: float | None = None
    ) -> None:
        self.path = Path(path)
        self._container = _open_container(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            self._stream.thread_type = "AUTO"
            info = _info(self._container, self._stream)
            self._loop = loop and paced
            self._time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
            start = self._stream.start_time
            self._origin: int | None = start if start is not None else None
            self._offset = 0.0  # seconds added to pts: the length of the passes already played
            self._last_pts: float | None = None
            self._frames_in_pass = 0
            self._corrupt = 0
            self._fps = info.fps
            self._frames = self._decode()
            first = self._read_next()
        except BaseException:
            self._container.close()
            raise
        if first is None:
            self._container.close()
            raise SourceError(
                f"{self.path} has a video stream but none of its frames decode; "
                f"re-encode it (ffmpeg -i {self.path.name} fixed.mp4) or {WHAT_TO_PASS}"
            )
        self._pending: tuple[float, np.ndarray] | None = first
        height, width = first[1].shape[:2]
        duration = None if self._loop else info.duration
        if limit is not None:
            duration = limit if duration is None else min(duration, limit)
        super().__init__(
            description=f"video file {self.path.name}",
            fps=info.fps,
            size=(width, height),
            duration=duration,
            pace=paced,
            limit=limit,
        )
        self.info = info

    def _read(self) -> tuple[float, np.ndarray] | None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        item = self._read_next()
        if item is None and self._loop and self._frames_in_pass > 0 and self._rewind():
            item = self._read_next()
        if item is None and self._corrupt:
            log.warning("%s: %d corrupt packet(s) were skipped", self.path, self._corrupt)
            self._corrupt = 0
        return item

    def _release(self) -> None:
        self._frames.close()
        self._container.close()

    def _read_next(self) -> tuple[float, np.ndarray] | None:
        return next(self._frames, None)

    def _rewind(self) -> bool:
        """Seek back to the start for the next loop; False when the file cannot seek."""
        assert self._last_pts is not None
        try:
            self._container.seek(0)
        except (av.FFmpegError, OSError) as exc:
            log.warning("%s: cannot seek back to loop (%s); ending the stream", self.path, exc)
            return False
        # The next pass starts one frame after the last frame of this one.
        self._offset = self._last_pts + 1.0 / self._fps
        self._frames_in_pass = 0
        self._frames.close()
        self._frames = self._decode()
        return True

    def _decode(self) -> Generator[tuple[float, np.ndarray], None, None]:
        demux = self._container.demux(self._stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                # The demuxer cannot go on (truncated file, read error): end cleanly.
                at = "the start" if self._last_pts is None else f"{self._last_pts:.2f} s"
                log.warning(
                    "%s: reading stopped after %s: %s; ending the stream", self.path, at, exc
                )
                return
            try:
                frames = packet.decode()
            except (av.FFmpegError, OSError) as exc:
                self._corrupt += 1
                if self._corrupt <= MAX_CORRUPT_WARNINGS:
                    log.warning(
                        "%s: skipped a corrupt packet (pts %s): %s", self.path, packet.pts, exc
                    )
                continue
            for frame in frames:
                yield self._convert(frame)

    def _convert(self, frame: av.VideoFrame) -> tuple[float, np.ndarray]:
        if frame.pts is None:
            # No timestamp (some raw streams): one frame period after the previous frame.
            pts = 0.0 if self._last_pts is None else self._last_pts + 1.0 / self._fps
        else:
            if self._origin is None:
                self._origin = frame.pts
            pts = self._offset + float((frame.pts - self._origin) * self._time_base)
        self._last_pts = pts
        self._frames_in_pass += 1
        image = frame.to_ndarray(format="rgb24")
        return pts, image


def _open_container(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise SourceError(f"no such file: {path}; {WHAT_TO_PASS}")
    if path.is_dir():
        raise SourceError(f"{path} is a directory; {WHAT_TO_PASS}")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SourceError(
            f"{path} is not a video PyAV can decode ({reason}); {WHAT_TO_PASS}"
        ) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.VideoStream:
    if not container.streams.video:
        raise SourceError(f"{path} has no video stream; {WHAT_TO_PASS}")
    return container.streams.video[0]


def _info(container: av.container.InputContainer, stream: av.VideoStream) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else FALLBACK_FPS
    duration: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
    return VideoInfo(
        duration=duration,
        fps=fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        codec=codec,
        has_audio=bool(container.streams.audio),
    )
