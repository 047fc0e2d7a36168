"""Webcams through OpenCV's ``VideoCapture``, read in a worker thread.

The camera is opened and one frame read when the source is built, so "no camera at index 0"
is reported before anything starts. Frames are converted BGR -> RGB; ``pts`` is seconds on the
monotonic clock since the first frame. A camera that stops delivering (unplugged, taken by
another program) ends the stream after a warning, and the daemon stops in order.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.config import SourceConfig
from daemon.errors import SourceError
from daemon.sources.base import ThreadedSource

log = logging.getLogger("moodscore.sources")

# A camera that returns no frame this many times in a row has gone away.
MAX_FAILED_READS = 30


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a webcam source uses (tests inject a fake)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def set(self, prop: int, value: float) -> bool: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


def _open_capture(device: int | str) -> Capture:
    import cv2

    # On Linux a missing /dev/videoN is certain to fail; checking first spares the user
    # OpenCV's own warnings about it.
    path = Path(f"/dev/video{device}") if isinstance(device, int) else Path(device)
    if sys.platform.startswith("linux") and not path.exists():
        where = f"at index {device}" if isinstance(device, int) else f"at {device}"
        raise SourceError(f"no camera {where}; pass --source FILE or --source demo")

    capture: Capture = cv2.VideoCapture(device)
    return capture


class WebcamSource(ThreadedSource):
    """Frames of a camera, RGB, at the rate the camera delivers them.

    Parameters
    ----------
    device : camera index (0 = first) or a device path such as ``/dev/video2``.
    config : the ``[source]`` section: requested width, height and fps.
    open_capture : makes the capture object (default ``cv2.VideoCapture``); tests pass a fake.
    """

    def __init__(
        self,
        device: int | str,
        *,
        config: SourceConfig,
        open_capture: Callable[[int | str], Capture] = _open_capture,
    ) -> None:
        import cv2

        name = f"webcam {device}"
        self._capture = open_capture(device)
        if not self._capture.isOpened():
            self._capture.release()
            where = f"at index {device}" if isinstance(device, int) else f"at {device}"
            raise SourceError(f"no camera {where}; pass --source FILE or --source demo")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, config.width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height)
        self._capture.set(cv2.CAP_PROP_FPS, config.fps)
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            raise SourceError(
                f"{name} opened but gives no picture (in use by another program?); "
                "close the other program, or pass --source FILE or --source demo"
            )
        fps = float(self._capture.get(cv2.CAP_PROP_FPS)) or config.fps
        self._first: np.ndarray | None = first
        self._origin: float | None = None
        super().__init__(
            description=name,
            fps=fps,
            size=(int(first.shape[1]), int(first.shape[0])),
            duration=None,
            pace=False,  # the camera paces itself
        )

    def _read(self) -> tuple[float, np.ndarray] | None:
        if self._first is not None:
            image, self._first = self._first, None
        else:
            image = None
            for _ in range(MAX_FAILED_READS):
                ok, image = self._capture.read()
                if ok and image is not None:
                    break
                time.sleep(0.01)
                image = None
            if image is None:
                log.warning("%s stopped delivering frames; ending the stream", self.description)
                return None
        assert image is not None
        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        return now - self._origin, _to_rgb(image)

    def _release(self) -> None:
        self._capture.release()


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """BGR, BGRA or grey camera frames -> RGB ``[shape=(h, w, 3), dtype=uint8]``."""
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    return np.ascontiguousarray(image[:, :, 2::-1])
