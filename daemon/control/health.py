"""Health telemetry: is the music glitching, and is the machine keeping up?

:class:`HealthMonitor` samples a running session once a second and keeps a small report that
every front end shows: ``health`` in the web API's ``/api/state`` and the panel's badge, the
retained MQTT topic ``health`` (with a Home Assistant sensor), and one line when ``run`` stops.

Figures (counts since the start; ``*_per_min`` over the last minute):

- ``late_blocks``: audio blocks the live engine handed on after their time (gaps a listener of
  the stream hears); ``xruns``: with a sound card or JACK, callbacks that came more than two
  periods late; ``underruns``: bars that started before the composer had written them (the
  bar before is replayed);
- ``dropped_frames``: frames the analysis skipped to keep up (the newest frame wins);
  ``analysis_fps``: frames analysed per second;
- ``composer_margin_s``: how long before it was needed the tightest bar of the last minute was
  written (a bar's length when all is well; near 0, underruns come next);
- ``cpu_percent`` (of one core, the whole process) and ``rss_mb`` (resident memory);
- ``status``: ``ok``, or ``glitching`` while late blocks, xruns or underruns happened in the last
  minute; a warning is logged when glitches go on for :data:`PERSIST_S` seconds (and then at most
  once a minute).

The monitor reads its figures through probes the composition root hands it (plain callables), so
it depends on no stage.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from daemon.clock import MusicClock
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.health")

# Seconds between samples.
SAMPLE_S = 1.0
# The window the per-minute figures and the status look at.
WINDOW_S = 60.0
# Glitches in every 10 s of this long make a warning.
PERSIST_S = 30.0
# At most one "still glitching" warning per this many seconds.
WARN_EVERY_S = 60.0

# The counts that are glitches a listener hears.
GLITCHES = ("late_blocks", "xruns", "underruns")
Probe = Callable[[], float | int | None]


def process_rss_mb() -> float:
    """Resident memory of this process, MB (from /proc where there is one)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource  # Unix only; Windows has neither /proc nor this module
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def process_cpu_s() -> float:
    """CPU seconds this process used so far (all threads, user + system)."""
    return time.process_time()  # user + system of every thread; works on Windows too


class HealthMonitor(Output):
    """Samples the session's health once a second (an output of the clock, closed last but one).

    Parameters
    ----------
    counts : probes of counts that only grow: ``late_blocks``, ``xruns``, ``underruns``,
        ``dropped_frames``, ``frames_analysed`` and any others (``web_refused``, ...); a probe
        that raises or returns None reads as 0.
    margin : the composer's margin of the latest bar, seconds (None before the first).
    publish : called with each new report (the hub's :meth:`~ControlHub.set_health`).
    sample_s : seconds between samples.
    """

    stage = Stage.ANNOUNCE
    name = "health"

    def __init__(
        self,
        *,
        counts: Mapping[str, Probe],
        margin: Probe = lambda: None,
        publish: Callable[[dict[str, Any]], None] = lambda report: None,
        sample_s: float = SAMPLE_S,
    ) -> None:
        self._counts = dict(counts)
        self._margin = margin
        self._publish = publish
        self._sample_s = sample_s
        self._started = time.monotonic()
        # (monotonic time, cpu seconds, counts) per sample over the last window.
        self._history: collections.deque[tuple[float, float, dict[str, float]]] = (
            collections.deque()
        )
        self._margins: collections.deque[tuple[float, float]] = collections.deque()
        self._glitch_since: float | None = None
        self._warned_at = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self.report: dict[str, Any] = self._empty()

    def _attach(self, clock: MusicClock) -> None:
        pass

    async def start(self) -> None:
        """Start sampling."""
        self._started = time.monotonic()
        self.sample()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health")

    async def _aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.sample()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._sample_s)
            try:
                self.sample()
            except Exception:
                log.exception("health: sampling failed; trying again")

    def _read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, probe in self._counts.items():
            try:
                value = probe()
            except Exception:
                value = None
            values[name] = float(value or 0)
        return values

    def _empty(self) -> dict[str, Any]:
        report: dict[str, Any] = {name: 0 for name in self._counts}
        report.update(
            {
                "status": "ok",
                "late_blocks_per_min": 0,
                "glitches_per_min": 0,
                "analysis_fps": None,
                "composer_margin_s": None,
                "cpu_percent": None,
                "rss_mb": round(process_rss_mb(), 1),
                "uptime_s": 0.0,
            }
        )
        return report

    def sample(self, *, now: float | None = None) -> dict[str, Any]:
        """Take a sample now: update :attr:`report`, publish it, warn when glitches persist."""
        now = time.monotonic() if now is None else now
        counts = self._read()
        cpu = process_cpu_s()
        history = self._history
        history.append((now, cpu, counts))
        while len(history) > 2 and history[1][0] <= now - WINDOW_S:
            history.popleft()
        margin = self._margin()
        if margin is not None:
            self._margins.append((now, float(margin)))
        while self._margins and self._margins[0][0] < now - WINDOW_S:
            self._margins.popleft()
        first_t, first_cpu, first = history[0]
        span = now - first_t
        report: dict[str, Any] = {name: int(value) for name, value in counts.items()}

        def per_min(name: str) -> float:
            if span <= 0:
                return 0.0
            return (counts.get(name, 0.0) - first.get(name, 0.0)) * 60.0 / span

        glitches = sum(counts.get(n, 0.0) - first.get(n, 0.0) for n in GLITCHES)
        fps = None
        if span > 0 and "frames_analysed" in counts:
            fps = round((counts["frames_analysed"] - first.get("frames_analysed", 0.0)) / span, 1)
        report.update(
            {
                "status": "glitching" if glitches > 0 else "ok",
                "late_blocks_per_min": round(per_min("late_blocks"), 1),
                "glitches_per_min": round(sum(per_min(n) for n in GLITCHES), 1),
                "analysis_fps": fps,
                "composer_margin_s": (
                    round(min(m for _, m in self._margins), 3) if self._margins else None
                ),
                "cpu_percent": round(100.0 * (cpu - first_cpu) / span, 1) if span > 0 else None,
                "rss_mb": round(process_rss_mb(), 1),
                "uptime_s": round(now - self._started, 1),
            }
        )
        self.report = report
        self._warn(now)
        try:
            self._publish(dict(report))
        except Exception:
            log.exception("health: publishing failed")
        return report

    def _warn(self, now: float) -> None:
        """Warn when every 10 s of the last :data:`PERSIST_S` had glitches."""
        recent = [item for item in self._history if item[0] >= now - 10.0 - 1e-9]
        if len(recent) < 2:
            return
        fresh = sum(recent[-1][2].get(n, 0.0) - recent[0][2].get(n, 0.0) for n in GLITCHES)
        if fresh <= 0:
            self._glitch_since = None
            return
        if self._glitch_since is None:
            self._glitch_since = recent[0][0]
        if now - self._glitch_since >= PERSIST_S and now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            report = self.report
            log.warning(
                "audio is glitching: %s late blocks, %s xruns, %s bars late from the composer "
                "in the last minute (CPU %s %%); the machine is too busy for the music: close "
                "other programs, or see `moodscore bench`",
                round(per_window(self._history, "late_blocks")),
                round(per_window(self._history, "xruns")),
                round(per_window(self._history, "underruns")),
                report.get("cpu_percent"),
            )

    def summary(self) -> str:
        """One line for the end of ``run``."""
        r = self.report
        fps = r.get("analysis_fps")
        margin = r.get("composer_margin_s")
        return (
            f"health: {r.get('late_blocks', 0)} late blocks, {r.get('xruns', 0)} xruns, "
            f"{r.get('underruns', 0)} bars late from the composer, "
            f"{r.get('dropped_frames', 0)} frames dropped"
            + (f", analysis {fps:g} fps" if fps is not None else "")
            + (f", composer margin {margin:.2f} s" if margin is not None else "")
            + f", CPU {r.get('cpu_percent') or 0:g} %, memory {r.get('rss_mb', 0):.0f} MB"
            + f" over {r.get('uptime_s', 0):.0f} s"
        )


def per_window(
    history: collections.deque[tuple[float, float, dict[str, float]]], name: str
) -> float:
    """How much the count ``name`` grew over the samples in ``history``."""
    if not history:
        return 0.0
    return history[-1][2].get(name, 0.0) - history[0][2].get(name, 0.0)


__all__ = ["GLITCHES", "HealthMonitor", "process_cpu_s", "process_rss_mb"]
