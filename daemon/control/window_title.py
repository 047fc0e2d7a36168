"""The captured window's title picks the game profile (``[game] auto_profile`` with
``--source screen``): an output of the live session that reads the X11 desktop's active window
title every :data:`INTERVAL_S` (:func:`daemon.platforms.active_window_title`, off the event
loop) and, when it changes, hands it to :meth:`ControlHub.seen_title`. Off Linux or without an X
display it reads nothing and says so once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from daemon.control.hub import ControlHub
from daemon.outputs.base import Output, Stage
from daemon.platforms import active_window_title

log = logging.getLogger("moodscore.control")

INTERVAL_S = 2.0  # a game switch is a human action: seconds are soon enough


class WindowTitleWatch(Output):
    """Reads the active window's title and tells the hub when it changes.

    Parameters
    ----------
    hub : the session's control hub (its teacher switches profiles).
    display : the X display (default ``$DISPLAY``).
    interval_s : seconds between reads.
    """

    stage = Stage.PEERS
    name = "window-title"

    def __init__(
        self, *, hub: ControlHub, display: str | None = None, interval_s: float = INTERVAL_S
    ) -> None:
        self.hub = hub
        self.display = display
        self.interval_s = interval_s
        self.title: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="window-title")

    async def _run(self) -> None:
        told = False
        while True:
            title = await asyncio.to_thread(active_window_title, self.display)
            if title is None and not told:
                told = True
                log.info("auto profile: no window title to read (X11 with xdotool only)")
            if title is not None and title != self.title:
                self.title = title
                try:
                    await self.hub.seen_title(title, where="window")
                except Exception:  # the music plays on; the next title is tried again
                    log.exception("auto profile: the window title %r was not used", title[:80])
            await asyncio.sleep(self.interval_s)

    async def _aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
