"""Freed memory handed back to the system, so a daemon left running all day stays its size.

Why: on the 60-minute soak (viewers coming and going, a broker restarted, floods) the daemon's
resident size climbed ~0.4 MB a minute (22 MB over the hour) although little of it was live:

- A closed viewer's peer connection is a web of reference cycles (aiortc's transports, senders
  and their event handlers point at one another), so only the cyclic collector frees it, and
  Python runs a full collection only once the objects that survived the younger generations
  are a quarter of the long-lived ones: with the models and libraries the daemon holds
  (~225,000 objects) that is rare, and each one walks all of them (~120 ms with the
  interpreter's lock held). Meanwhile the peers' buffers stay.
- The daemon mallocs and frees through many threads (aiortc encodes each viewer's audio in
  executor threads, PyAV and numpy allocate frames there, the recorder and the analysis have
  threads of their own). glibc gives threads that contend for the heap arenas of their own (up
  to eight per core) and keeps what is freed in them for reuse; one ``malloc_trim(0)`` gave
  56 MB back to the system in the soak.

So :class:`MemoryKeeper`, an output of a live session, freezes what the session built before
the music (:func:`gc.freeze`: the models, modules and config are never walked again), then every
:data:`KEEP_EVERY_S` seconds runs a full collection (a few milliseconds over what was made
since) and hands freed heap back with ``malloc_trim(0)`` on a worker thread (ctypes lets go of
the interpreter's lock for the call; the audio is rendered in the engine's own process and never
waits on either). :func:`limit_malloc_arenas` caps glibc's arenas at start-up (what the
``MALLOC_ARENA_MAX`` environment variable does, set from inside). Without glibc (musl, macOS,
Windows) only the collection runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import time
from functools import cache

from daemon.clock import MusicClock
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.memory")

# Seconds between rounds: often enough that a closed viewer's memory never piles up for long,
# rare enough that the collection and the walk over the heap (milliseconds each) cost nothing.
KEEP_EVERY_S = 30.0
# Arenas for the daemon's process: its threads mostly wait; two keep contention low.
ARENAS = 2
_M_ARENA_MAX = -8  # glibc's <malloc.h>


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc, or None (musl, macOS, Windows: no malloc_trim)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (call before threads start); True if done."""
    libc = _libc()
    return libc is not None and libc.mallopt(_M_ARENA_MAX, arenas) == 1


def trim_heap() -> bool:
    """Hand freed heap memory back to the system now; True if glibc released any."""
    libc = _libc()
    return libc is not None and libc.malloc_trim(0) == 1


class MemoryKeeper(Output):
    """Collects cycles and trims the heap every ``every_s`` seconds while the session plays
    (closed with the last outputs).

    Attributes
    ----------
    rounds : rounds done so far.
    collected : unreachable objects the collections found.
    longest_ms : the longest round took, milliseconds (collection and trim).
    """

    stage = Stage.ANNOUNCE
    name = "memory"

    def __init__(self, *, every_s: float = KEEP_EVERY_S) -> None:
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.collected = 0
        self.longest_ms = 0.0

    def _attach(self, clock: MusicClock) -> None:
        pass

    async def start(self) -> None:
        """Freeze what was built before the music, then keep the memory every ``every_s``."""
        gc.collect()
        gc.freeze()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="memory")

    async def _aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            started = time.perf_counter()
            try:
                self.collected += gc.collect()
                await asyncio.to_thread(trim_heap)
            except Exception:  # never worth stopping the music for
                log.exception("memory: collecting or trimming failed; trying again later")
                continue
            took_ms = (time.perf_counter() - started) * 1000.0
            self.rounds += 1
            self.longest_ms = max(self.longest_ms, took_ms)
            log.debug("memory: collected and trimmed in %.1f ms", took_ms)
