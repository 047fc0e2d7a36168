"""Screen capture of a monitor or a region with ``mss``, read in a worker thread.

Specs (``--source``): ``screen`` (the first monitor), ``screen:N`` (monitor N, 1-based as the
system numbers them; ``screen:0`` is all monitors together) and ``screen:X,Y,W,H`` (a region
in pixels of the whole desktop, e.g. the game's window). The screen is grabbed once when the
source is built, so "no display" is reported before anything starts. Frames are taken at
``source.fps`` (the thread sleeps to the next tick; a slow grab just yields fewer frames, pts
always tells the truth), converted BGRA -> RGB; ``pts`` is seconds on the monotonic clock since
the first frame.

A capture card or OBS's virtual camera is a webcam (``webcam:N``); a recording is a file.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import numpy as np

from daemon.errors import SourceError
from daemon.sources.base import ThreadedSource

log = logging.getLogger("moodscore.sources")

SCREEN_SPEC = re.compile(r"^screen(?::(?:(\d+)|(-?\d+),(-?\d+),(\d+),(\d+)))?$")
WHAT_TO_PASS = "use screen, screen:N (monitor N) or screen:X,Y,W,H (a region)"


def parse_screen_spec(spec: str) -> int | tuple[int, int, int, int]:
    """``screen`` -> 1, ``screen:N`` -> N, ``screen:X,Y,W,H`` -> (x, y, w, h).

    Raises
    ------
    SourceError
        The spec is not one of these forms, or the region is empty.
    """
    match = SCREEN_SPEC.match(spec.strip())
    if match is None:
        raise SourceError(f"unknown screen source {spec!r}; {WHAT_TO_PASS}")
    if match.group(1) is not None:
        return int(match.group(1))
    if match.group(2) is None:
        return 1
    x, y, w, h = (int(match.group(k)) for k in range(2, 6))
    if w <= 0 or h <= 0:
        raise SourceError(f"screen region {spec!r} is empty; width and height must be > 0")
    return x, y, w, h


class ScreenSource(ThreadedSource):
    """Frames of a monitor or a screen region, RGB, at ``fps``.

    Parameters
    ----------
    target : monitor number (0 = all, 1 = first, ...) or a region (x, y, width, height).
    fps : frames per second to capture.
    display : the X display to capture (default: ``$DISPLAY``); Linux only.
    """

    def __init__(
        self,
        target: int | tuple[int, int, int, int],
        *,
        fps: float,
        display: str | None = None,
    ) -> None:
        try:
            import mss
            from mss.exception import ScreenShotError
        except ImportError as exc:  # pragma: no cover - mss is a dependency
            raise SourceError(f"screen capture needs mss ({exc}); run tools/setup.sh") from exc
        self.display = display  # None: $DISPLAY
        kwargs: dict[str, Any] = {"display": display} if display else {}
        try:
            self._mss = mss.MSS(**kwargs)
        except ScreenShotError as exc:
            raise SourceError(
                f"no screen to capture ({exc}); run on a desktop session (DISPLAY set), or pass "
                "--source FILE or --source webcam:N (a capture card or OBS virtual camera)"
            ) from exc
        try:
            monitors = self._mss.monitors
            if isinstance(target, int):
                if not 0 <= target < len(monitors):
                    raise SourceError(
                        f"no monitor {target}: this desktop has {len(monitors) - 1} "
                        f"(screen:1 .. screen:{len(monitors) - 1}; screen:0 is all of them)"
                    )
                self._region = dict(monitors[target])
                name = f"screen {target}" if target else "all screens"
            else:
                x, y, w, h = target
                desktop = monitors[0]
                inside = (
                    x >= desktop["left"]
                    and y >= desktop["top"]
                    and x + w <= desktop["left"] + desktop["width"]
                    and y + h <= desktop["top"] + desktop["height"]
                )
                if not inside:
                    raise SourceError(
                        f"screen region {x},{y},{w},{h} is outside the desktop "
                        f"({desktop['width']}x{desktop['height']} at "
                        f"{desktop['left']},{desktop['top']}); {WHAT_TO_PASS}"
                    )
                self._region = {"left": x, "top": y, "width": w, "height": h}
                name = f"screen region {w}x{h} at {x},{y}"
            first = self._grab()
        except (ScreenShotError, SourceError) as exc:
            self._mss.close()
            if isinstance(exc, SourceError):
                raise
            raise SourceError(f"screen capture failed ({exc}); {WHAT_TO_PASS}") from exc
        self._first: np.ndarray | None = first
        self._period = 1.0 / fps
        self._origin: float | None = None
        self._next = 0.0
        super().__init__(
            description=name,
            fps=fps,
            size=(int(first.shape[1]), int(first.shape[0])),
            duration=None,
            pace=False,  # the thread keeps the capture rate itself
        )

    def _grab(self) -> np.ndarray:
        shot = self._mss.grab(self._region)
        bgra = np.frombuffer(shot.bgra, dtype=np.uint8).reshape(shot.height, shot.width, 4)
        return np.ascontiguousarray(bgra[:, :, 2::-1])

    def _read(self) -> tuple[float, np.ndarray] | None:
        from mss.exception import ScreenShotError

        now = time.monotonic()
        if self._origin is None:
            self._origin = now
        else:
            wait = self._origin + self._next - now
            if wait > 0:
                time.sleep(wait)
        self._next = max(self._next + self._period, time.monotonic() - self._origin)
        if self._first is not None:
            image, self._first = self._first, None
        else:
            try:
                image = self._grab()
            except ScreenShotError as exc:
                log.warning("%s: capture failed (%s); ending the stream", self.description, exc)
                return None
        return time.monotonic() - self._origin, image

    def _release(self) -> None:
        self._mss.close()
