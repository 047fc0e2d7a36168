"""The analysis -> conductor link: every mood window, in order, with a watermark.

Live, the latest mood wins (the planner takes every window not yet seen whenever it plans a bar).
In a render the planner waits for the windows that *ended* before each bar's decision time and
takes exactly those, which is what makes a render reproducible however the threads interleave.
"""

from __future__ import annotations

import asyncio

from daemon.messages import Mood


class MoodBoard:
    """The analysis -> conductor link.

    Keeps every window not yet handed to the conductor (a render needs them all, in order, for
    reproducible smoothing), the watermark (end time of the newest window) and whether the
    analysis has finished.
    """

    def __init__(self) -> None:
        self.history: list[Mood] = []
        self._pending: list[Mood] = []
        self._watermark = float("-inf")
        self._finished = False
        self._changed = asyncio.Event()

    @property
    def watermark(self) -> float:
        return self._watermark

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def latest(self) -> Mood | None:
        """The newest window (what the analysis reads now), None before the first."""
        return self.history[-1] if self.history else None

    def put(self, mood: Mood) -> None:
        self.history.append(mood)
        self._pending.append(mood)
        self._watermark = max(self._watermark, mood.t_end)
        self._changed.set()

    def finish(self) -> None:
        self._finished = True
        self._changed.set()

    async def wait_for(self, t: float) -> None:
        """Until a window ending at or after ``t`` arrived, or the analysis finished."""
        while self._watermark < t and not self._finished:
            self._changed.clear()
            await self._changed.wait()

    def take(self, until: float | None) -> list[Mood]:
        """The unseen windows that ended by ``until`` (all of them when None), oldest first."""
        if until is None:
            taken, self._pending = self._pending, []
            return taken
        taken = [m for m in self._pending if m.t_end <= until + 1e-9]
        self._pending = [m for m in self._pending if m.t_end > until + 1e-9]
        return taken
