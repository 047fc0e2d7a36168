"""Frame sources: video files, webcams and the built-in demo, chosen by a spec string.

``open_source(spec, ...)`` picks the source kind by name, as mido picks a backend: ``demo``,
``webcam``, ``webcam:N``, a device path (``/dev/video2``) or a video file path; ``auto`` tries the
webcam and falls back to the demo, saying which once.
"""

from __future__ import annotations

import re
from pathlib import Path

from daemon.config import SourceConfig
from daemon.errors import SourceError
from daemon.sources.base import FrameSource, TappedSource, ThreadedSource, VideoInfo
from daemon.sources.demo import DemoSource, demo_intensity, draw_demo_frame
from daemon.sources.video import VideoFileSource, probe_video
from daemon.sources.webcam import WebcamSource

__all__ = [
    "DemoSource",
    "FrameSource",
    "TappedSource",
    "ThreadedSource",
    "VideoFileSource",
    "VideoInfo",
    "WebcamSource",
    "demo_intensity",
    "draw_demo_frame",
    "open_source",
    "probe_video",
]

_WEBCAM = re.compile(r"^webcam(?::(\d+))?$")


def open_source(
    spec: str, config: SourceConfig, *, paced: bool, duration: float | None = None
) -> FrameSource:
    """Open the source ``spec`` names, checking it works before anything starts.

    Parameters
    ----------
    spec : ``auto`` | ``demo`` | ``webcam`` | ``webcam:N`` | ``/dev/videoN`` | ``screen`` |
        ``screen:N`` | ``screen:X,Y,W,H`` (see :mod:`daemon.sources.screen`) | a video file path.
    config : the ``[source]`` section.
    paced : deliver frames in real time (live ``run``) or as fast as possible, every frame
        (``render``, ``analyze``).
    duration : end the stream after this many seconds (the demo is endless without it).

    Raises
    ------
    SourceError
        An unknown spec, a missing or undecodable file, a camera that does not open; the
        message says what to pass instead.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("the source is empty; use demo, webcam[:N] or a video file path")
    if spec == "auto":
        # The description says which source won and why, and the CLI logs it once.
        try:
            return WebcamSource(config.webcam_index, config=config)
        except SourceError:
            demo = DemoSource(config=config, paced=paced, duration=duration)
            demo.description += f" (no webcam at index {config.webcam_index})"
            return demo
    if spec == "demo":
        return DemoSource(config=config, paced=paced, duration=duration)
    if spec.startswith("webcam"):
        match = _WEBCAM.match(spec)
        if match is None:
            raise SourceError(f"unknown source {spec!r}; use webcam or webcam:N (N = 0, 1, ...)")
        index = int(match.group(1)) if match.group(1) else config.webcam_index
        return WebcamSource(index, config=config)
    if spec.startswith("/dev/video"):
        return WebcamSource(spec, config=config)
    if spec == "screen" or spec.startswith("screen:"):
        from daemon.sources.screen import ScreenSource, parse_screen_spec

        return ScreenSource(parse_screen_spec(spec), fps=config.fps)
    path = Path(spec).expanduser()
    if not path.exists() and not path.suffix:
        raise SourceError(f"unknown source {spec!r}; use demo, webcam[:N] or a video file path")
    return VideoFileSource(path, paced=paced, loop=config.loop, limit=duration)
