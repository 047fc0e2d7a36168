"""MP4 output for renders: the input's picture with the generated score muxed in (H.264 + AAC).

When the input's video codec can live in MP4 (H.264, HEVC, MPEG-4, AV1, VP9) its packets are
copied unchanged: no quality loss, and a minute of video costs a fraction of a second. Anything
else (and the built-in demo, which has no file) is encoded once with libx264 while the render
runs, by :class:`VideoWriter` on its own thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile

from daemon.clock import MusicClock
from daemon.errors import MoodscoreError
from daemon.messages import Frame
from daemon.outputs.base import Output, Stage
from daemon.visuals import VisualTimeline

log = logging.getLogger("moodscore.outputs")

REMUXABLE_CODECS = frozenset({"h264", "hevc", "mpeg4", "av1", "vp9"})
AUDIO_BIT_RATE = 192_000


def can_remux(path: Path) -> bool:
    """True when ``path``'s first video stream can be copied into an MP4 without re-encoding."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return False
            return container.streams.video[0].codec_context.name in REMUXABLE_CODECS
    except (av.FFmpegError, OSError):
        return False


class VideoWriter:
    """Encodes frames to a video-only H.264 MP4 on a worker thread.

    Parameters
    ----------
    path : the MP4 to write.
    fps : frame rate.
    size : (width, height); odd sizes are rounded down to even, as yuv420p needs.
    preset : libx264 speed preset.
    """

    def __init__(
        self, path: Path, *, fps: float, size: tuple[int, int], preset: str = "veryfast"
    ) -> None:
        self.path = path
        width, height = size[0] // 2 * 2, size[1] // 2 * 2
        self._container = av.open(str(path), "w")
        rate = fractions.Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = width, height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": preset, "crf": "20"}
        self._time_base = fractions.Fraction(1, 90_000)
        self._stream.time_base = self._time_base
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=32)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="video-writer", daemon=True)
        self._thread.start()
        self._closed = False

    async def write(self, frame: Frame) -> None:
        """Queue one frame; waits (off the event loop) when the encoder is behind."""
        if self._error is not None:
            raise MoodscoreError(f"writing {self.path} failed: {self._error}") from self._error
        await asyncio.to_thread(self._queue.put, frame)

    def close(self) -> None:
        """Flush the encoder and finalise the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise MoodscoreError(f"writing {self.path} failed: {self._error}") from self._error

    def _work(self) -> None:
        width, height = self._stream.width, self._stream.height
        try:
            while (frame := self._queue.get()) is not None:
                image = frame.image[:height, :width]
                video_frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(image), format="rgb24"
                )
                video_frame.pts = round(frame.pts / self._time_base)
                video_frame.time_base = self._time_base
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            for packet in self._stream.encode():
                self._container.mux(packet)
        except Exception as exc:  # reported by write()/close() on the caller's side
            self._error = exc
            while self._queue.get() is not None:  # drain so a blocked writer wakes up
                pass
        finally:
            self._container.close()


def mux_mp4(out: Path, *, video: Path, audio_wav: Path) -> None:
    """Write ``out``: the first video stream of ``video`` copied as is, plus ``audio_wav`` as AAC.

    Audio streams of ``video`` are dropped: the score replaces them.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as source, av.open(str(out), "w") as target:
        video_in = source.streams.video[0]
        video_out = target.add_stream_from_template(video_in)
        audio_out = _add_audio_stream(target, audio_wav)
        for packet in source.demux(video_in):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = video_out
            target.mux(packet)
        _encode_audio(target, audio_out, audio_wav)
    log.debug("muxed %s with the audio of %s", out, audio_wav)


VisualsMode = str  # "overlay" | "only" (config.CHOICES[("visuals", "render")] without "none")


def write_music_video(
    out: Path,
    *,
    video: Path | None,
    audio_wav: Path,
    timeline: VisualTimeline,
    mode: VisualsMode,
    fps: float = 30.0,
    size: tuple[int, int] = (1280, 720),
    duration: float | None = None,
    preset: str = "veryfast",
) -> int:
    """Write ``out``: the beat-synced visuals (H.264) with ``audio_wav`` as AAC.

    Each frame at ``t`` seconds from the first frame (the render's audio time) is drawn from
    ``timeline.state_at(t)``. ``overlay`` composites the transparent visuals over ``video``'s
    picture, frame by frame at its own times. ``only`` draws the opaque visuals alone at
    ``fps`` and ``size`` for ``duration`` seconds (default: the WAV's length); it needs no
    picture, so a render need not encode one just to be read back. Returns the number of frames
    written.
    """
    from daemon.visuals import composite, render_frame

    if mode not in ("overlay", "only"):
        raise ValueError(f"visuals mode {mode!r} is not overlay or only")
    if mode == "overlay" and video is None:
        raise ValueError("overlay visuals need the input's video")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(av.open(str(out), "w"))
        if mode == "overlay":
            assert video is not None
            source = stack.enter_context(av.open(str(video)))
            video_in = source.streams.video[0]
            video_in.thread_type = "AUTO"
            rate = fractions.Fraction(video_in.average_rate or 30)
            width = video_in.codec_context.width // 2 * 2
            height = video_in.codec_context.height // 2 * 2
            pictures: Iterator[tuple[float, np.ndarray | None]] = _pictures(
                source.decode(video_in), width=width, height=height
            )
        else:
            rate = fractions.Fraction(fps).limit_denominator(1001)
            width, height = size[0] // 2 * 2, size[1] // 2 * 2
            seconds = duration if duration is not None else soundfile.info(str(audio_wav)).duration
            count = max(1, round(seconds * float(rate)))
            pictures = ((k / float(rate), None) for k in range(count))
        video_out = target.add_stream("libx264", rate=rate.limit_denominator(1001))
        video_out.width, video_out.height = width, height
        video_out.pix_fmt = "yuv420p"
        video_out.options = {"preset": preset, "crf": "20"}
        time_base = fractions.Fraction(1, 90_000)
        video_out.time_base = time_base
        audio_out = _add_audio_stream(target, audio_wav)
        for t, picture in pictures:
            state = timeline.state_at(t)
            if picture is not None:
                visuals = render_frame(t, state, width=width, height=height, transparent=True)
                image = composite(visuals, picture)
            else:
                visuals = render_frame(t, state, width=width, height=height)
                image = np.ascontiguousarray(visuals[:, :, :3])
            encoded = av.VideoFrame.from_ndarray(image, format="rgb24")
            encoded.pts = round(t / time_base)
            encoded.time_base = time_base
            for packet in video_out.encode(encoded):
                target.mux(packet)
            written += 1
        for packet in video_out.encode():
            target.mux(packet)
        _encode_audio(target, audio_out, audio_wav)
    log.debug("music video %s: %d frames with visuals (%s)", out, written, mode)
    return written


def _pictures(
    frames: Iterable[av.VideoFrame], *, width: int, height: int
) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds from the first frame, RGB picture [shape=(height, width, 3)]) per decoded frame."""
    origin: float | None = None
    for frame in frames:
        if frame.pts is None or frame.time is None:
            continue
        if origin is None:
            origin = float(frame.time)
        yield float(frame.time) - origin, frame.to_ndarray(format="rgb24")[:height, :width]


def _add_audio_stream(target: Any, audio_wav: Path) -> Any:
    info = soundfile.info(str(audio_wav))
    stream = target.add_stream("aac", rate=info.samplerate)
    stream.layout = "stereo" if info.channels == 2 else "mono"
    stream.bit_rate = AUDIO_BIT_RATE
    return stream


def _encode_audio(target: Any, stream: Any, audio_wav: Path) -> None:
    """Encode the whole WAV into ``stream`` (AAC) of ``target`` and flush it."""
    audio, sample_rate = soundfile.read(str(audio_wav), dtype="float32", always_2d=True)
    planar = np.ascontiguousarray(audio.T)
    layout = "stereo" if planar.shape[0] == 2 else "mono"
    time_base = fractions.Fraction(1, sample_rate)
    chunk = 4096
    for start in range(0, planar.shape[1], chunk):
        piece = np.ascontiguousarray(planar[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = time_base
        for packet in stream.encode(frame):
            target.mux(packet)
    for packet in stream.encode():
        target.mux(packet)


class VisualsCapture(Output):
    """Keeps every bar's grid and notes of a render, for the music video's visuals (drawn after
    the render, by :func:`write_music_video`).

    Attributes
    ----------
    timeline : everything the visuals draw from, kept whole.
    """

    stage = Stage.RECORDING
    name = "visuals"

    def __init__(self) -> None:
        self.timeline = VisualTimeline(keep_s=None)

    def _attach(self, clock: MusicClock) -> None:
        self.timeline.attach(clock)

    async def _aclose(self) -> None:
        pass  # the timeline is read after the session
