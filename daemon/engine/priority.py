"""Scheduling priority for the audio thread, where the system allows it.

A live engine in ``manual`` mode computes each block on its own thread and must hand it on
before the listener needs it; on a machine busy with a browser, encoders and other programs, an
ordinary thread waits its turn for a core and a block comes late (an audible gap). Raising the
thread's priority lets it take a core as soon as it wakes.

``engine.priority``: ``"high"`` (default) lowers the thread's nice value to -10; ``"realtime"``
asks for ``SCHED_FIFO`` (falling back to ``high``); ``"normal"`` leaves it. Both need the right
(root, ``CAP_SYS_NICE``, or ``ulimit -e`` / ``-r`` limits that allow it); without it the music
plays at normal priority and the log says so, once.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

log = logging.getLogger(__name__)

Priority = Literal["realtime", "high", "normal"]
# SCHED_FIFO priority: above ordinary threads, below the kernel's own real-time work.
REALTIME_PRIORITY = 10
HIGH_NICE = -10


def raise_thread_priority(priority: Priority, *, what: str = "audio thread") -> str:
    """Raise the calling thread's priority as ``priority`` asks; returns what it got
    (``"realtime"``, ``"high"`` or ``"normal"``) and logs one line saying so."""
    if priority == "normal":
        return "normal"
    refused: list[str] = []
    if priority == "realtime":
        try:
            # pid 0 is the calling thread: Linux schedules threads, not processes.
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
        except (OSError, AttributeError) as exc:
            refused.append(f"real-time scheduling: {getattr(exc, 'strerror', None) or exc}")
        else:
            log.info("%s: real-time scheduling (SCHED_FIFO %d)", what, REALTIME_PRIORITY)
            return "realtime"
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HIGH_NICE)
    except (OSError, AttributeError) as exc:
        refused.append(f"nice {HIGH_NICE}: {getattr(exc, 'strerror', None) or exc}")
    else:
        log.info(
            "%s: raised priority (nice %d)%s",
            what,
            HIGH_NICE,
            f"; not allowed: {refused[0]}" if refused else "",
        )
        return "high"
    log.info(
        "%s: normal priority (not allowed: %s); on a busy machine the audio may glitch. Run "
        "with CAP_SYS_NICE or a `ulimit -e 30` limit to allow it, or set engine.priority = "
        '"normal" to keep it as it is',
        what,
        "; ".join(refused),
    )
    return "normal"


__all__ = ["Priority", "raise_thread_priority"]
