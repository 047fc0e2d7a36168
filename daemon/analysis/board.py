"""The analysis -> conductor link: every mood window and cue, in time order, with a watermark.

Live, the latest mood wins (the planner takes every item not yet seen as it comes). In a render
the planner waits until the analysis has read past a time and takes exactly the items up to it
(windows by their end, cues by their time), which is what makes a render reproducible however
the threads interleave.
"""

from __future__ import annotations

import asyncio

from daemon.messages import Cue, Mood

Item = Mood | Cue


def item_time(item: Item) -> float:
    """When an item happened: a window's end, a cue's time (source time, seconds)."""
    return item.t_end if isinstance(item, Mood) else item.time


class MoodBoard:
    """The analysis -> conductor link.

    Keeps every window and cue not yet handed on (a render needs them all, in order, for
    reproducible smoothing), the watermark (how far the analysis has read: the newest frame or
    window end) and whether the analysis has finished.

    Attributes
    ----------
    history : every window so far.
    cues : every cue so far.
    """

    def __init__(self) -> None:
        self.history: list[Mood] = []
        self.cues: list[Cue] = []
        self._pending: list[Item] = []
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
    def pending(self) -> int:
        """Items not taken yet."""
        return len(self._pending)

    @property
    def latest(self) -> Mood | None:
        """The newest window (what the analysis reads now), None before the first."""
        return self.history[-1] if self.history else None

    def put(self, mood: Mood) -> None:
        self.history.append(mood)
        self._add(mood)

    def put_cue(self, cue: Cue) -> None:
        self.cues.append(cue)
        self._add(cue)

    def reach(self, t: float) -> None:
        """The analysis has read every frame up to source time ``t``: every item up to it is
        here."""
        if t > self._watermark:
            self._watermark = t
            self._changed.set()

    def _add(self, item: Item) -> None:
        self._pending.append(item)
        self._watermark = max(self._watermark, item_time(item))
        self._changed.set()

    def finish(self) -> None:
        self._finished = True
        self._changed.set()

    async def wait_for(self, t: float) -> None:
        """Until the analysis has read up to ``t`` or finished."""
        while self._watermark < t and not self._finished:
            self._changed.clear()
            await self._changed.wait()

    async def wait_new(self) -> None:
        """Until something was added (or the analysis finished) since the last :meth:`take`."""
        while not self._pending and not self._finished:
            self._changed.clear()
            await self._changed.wait()

    def take(self, until: float | None) -> list[Item]:
        """The unseen items up to ``until`` (all of them when None), oldest first."""
        if until is None:
            taken, self._pending = self._pending, []
            return taken
        split = next(
            (i for i, item in enumerate(self._pending) if item_time(item) > until + 1e-9),
            len(self._pending),
        )
        taken, self._pending = self._pending[:split], self._pending[split:]
        return taken
