"""Progress of a render for a progress bar: the clock's audio time, a few times a second."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from daemon.clock import MusicClock
from daemon.outputs.base import Output, Stage

INTERVAL_S = 0.2


class ProgressOutput(Output):
    """Calls ``report(audio_time)`` on the event loop every :data:`INTERVAL_S`, and once more
    with the final audio time when the engine has stopped.

    Parameters
    ----------
    report : what to call (a tqdm bar's update, a test's recorder).
    """

    stage = Stage.RECORDING
    name = "progress"

    def __init__(self, report: Callable[[float], None]) -> None:
        self._report = report
        self._task: asyncio.Task[None] | None = None

    def _attach(self, clock: MusicClock) -> None:
        pass  # polls the clock; nothing to subscribe to

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="progress")

    async def _poll(self) -> None:
        while True:
            self._report(self.clock.audio_time)
            await asyncio.sleep(INTERVAL_S)

    async def _aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._report(self.clock.audio_time)
