"""A daemon left running hands freed memory back (:mod:`daemon.control.memory`): the hour's
soak (``tools/soak.py --minutes 60``) is the measure; these check the mechanism on glibc."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import textwrap
import weakref
from pathlib import Path

from daemon.control.memory import MemoryKeeper, limit_malloc_arenas

ROOT = Path(__file__).resolve().parents[1]

# Threads that allocate 50 kB blocks (below glibc's mmap threshold: they come from the arenas)
# and free all but one in sixteen, as viewers' encoders do when they come and go: the heap keeps
# the holes, so the process stays large until the heap is trimmed.
_FRAGMENTED_HEAP = textwrap.dedent(
    """
    import json, threading
    import numpy as np
    from daemon.control.health import process_rss_mb
    from daemon.control.memory import trim_heap

    kept = []
    def churn():
        blocks = [np.ones(50_000, dtype=np.uint8) for _ in range(1200)]
        kept.extend(blocks[::16])
    threads = [threading.Thread(target=churn) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    before = process_rss_mb()
    released = trim_heap()
    print(json.dumps({"before": before, "after": process_rss_mb(), "released": released}))
    """
)


def test_trimming_hands_a_fragmented_heap_back_to_the_system() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FRAGMENTED_HEAP],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=True,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    # 6 x 1200 x 50 kB = 360 MB allocated, 1/16 of it kept (~22 MB): most of the rest goes back.
    assert figures["released"], figures
    assert figures["before"] - figures["after"] > 150, figures


class _Peer:
    """A closed viewer's connection in miniature: objects that point at one another."""

    def __init__(self) -> None:
        self.transport: dict[str, object] = {"peer": self}


def test_the_keeper_frees_cycles_while_the_session_plays_and_stops_with_it() -> None:
    async def play() -> tuple[MemoryKeeper, bool]:
        keeper = MemoryKeeper(every_s=0.05)
        await keeper.start()
        gc.disable()  # as if Python's own full collection were not due for a long while
        try:
            peer = _Peer()
            gone = weakref.ref(peer)
            del peer  # the viewer left: only a collection frees the cycle
            await asyncio.sleep(0.5)
            freed = gone() is None
        finally:
            gc.enable()
        await keeper.aclose()
        rounds = keeper.rounds
        await asyncio.sleep(0.2)
        assert keeper.rounds == rounds  # closed: no round after
        return keeper, freed

    try:
        keeper, freed = asyncio.run(play())
    finally:
        gc.unfreeze()  # what the keeper froze is this test process's, not a session's
    assert freed and keeper.collected >= 2
    assert keeper.rounds >= 3 and 0 < keeper.longest_ms < 1000


def test_the_arenas_are_capped_on_glibc() -> None:
    assert limit_malloc_arenas()
