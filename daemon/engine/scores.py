"""The composer -> engine link: bar scores handed from the event loop to the audio thread.

The composer puts each bar's score a bar or more ahead; the engine takes it when the bar starts.
Never dropped (the architecture's rule for this link): live, a bar that is not there in time is
an underrun the engine counts and covers; in a render the engine waits for it.

Reactions travel the same way: a :class:`~daemon.messages.BarPatch` changes a bar from a beat on
(or adds a stinger); the engine takes the patches every block. In a render the engine also waits,
at every bar line and beat, until the planner has *cleared* that time (it has answered every cue
before it), so a render reacts exactly as a live run would have.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from daemon.messages import BarPatch, BarScore

# What a forwarding queue hands on: ("score", BarScore), ("patch", BarPatch), ("close", None).
Forward = Callable[[tuple[str, object]], None]


class ScoreQueue:
    """Thread-safe hand-off of bar scores from the composer (event loop) to the engine thread.

    ``gated``: a render's planner clears time as it answers cues (:meth:`clear`); the engine
    waits for it (:meth:`wait_cleared`). Ungated, nothing waits.

    Keyed by bar: a bar put twice keeps the later score; bars older than the one asked for are
    dropped when asked. Unbounded, because the composer writes only a bar or two ahead.
    """

    def __init__(self, *, gated: bool = False) -> None:
        self._cond = threading.Condition()
        self._scores: dict[int, BarScore] = {}
        self._patches: list[BarPatch] = []
        # Ungated (live, or scores written up front): every time is clear from the start.
        self._cleared = float("-inf") if gated else float("inf")
        self._closed = False
        self._put_at: dict[int, float] = {}  # time.monotonic() each waiting score came
        # How long the latest bar's score waited for the engine (s): the composer's margin.
        self.last_margin_s: float | None = None
        self._forward: Forward | None = None

    def forward(self, fn: Forward) -> None:
        """Hand everything on to ``fn`` from now on (an engine in another process keeps its own
        queue there): what waits here goes first, in bar order, then each put, patch and close
        as it comes, in order. ``fn`` runs under the queue's lock and must not block."""
        with self._cond:
            for bar in sorted(self._scores):
                fn(("score", self._scores[bar]))
            for patch in self._patches:
                fn(("patch", patch))
            if self._closed:
                fn(("close", None))
            self._scores.clear()
            self._put_at.clear()
            self._patches = []
            self._forward = fn

    def patch(self, patch: BarPatch) -> None:
        """Add a bar patch (taken by the engine at its next block); never blocks."""
        with self._cond:
            if self._closed:
                return
            if self._forward is not None:
                self._forward(("patch", patch))
                return
            self._patches.append(patch)

    def take_patches(self) -> list[BarPatch]:
        """The patches added since the last call, in order (the engine thread)."""
        with self._cond:
            taken, self._patches = self._patches, []
            return taken

    def clear(self, until: float) -> None:
        """The planner has answered everything up to audio time ``until`` (a render)."""
        with self._cond:
            if until > self._cleared:
                self._cleared = until
                self._cond.notify_all()

    def wait_cleared(self, t: float, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until time ``t`` is cleared (or the queue closed);
        True once it is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._cleared < t - 1e-9 and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def put(self, score: BarScore) -> None:
        """Add a bar's score; never blocks (safe on the event loop). Ignored once closed."""
        with self._cond:
            if self._closed:
                return
            if self._forward is not None:
                self._forward(("score", score))
                return
            self._scores[score.bar] = score
            self._put_at.setdefault(score.bar, time.monotonic())
            self._cond.notify_all()

    def get(self, bar: int, timeout: float | None) -> BarScore | None:
        """The score of ``bar``, waiting up to ``timeout`` seconds (None: until it comes).

        Returns None on timeout, when the queue is closed and holds no score for ``bar``, or
        when a later bar is already there (``bar`` was skipped and will never come).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                for stale in [b for b in self._scores if b < bar]:
                    del self._scores[stale]
                for stale in [b for b in self._put_at if b < bar]:
                    del self._put_at[stale]
                score = self._scores.pop(bar, None)
                if score is not None:
                    put_at = self._put_at.pop(bar, None)
                    if put_at is not None:
                        self.last_margin_s = time.monotonic() - put_at
                    return score
                if self._closed or self._scores:
                    return None
                if deadline is None:
                    self._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)

    def close(self) -> None:
        """No more scores will come: wake every waiting ``get`` (which returns None)."""
        with self._cond:
            if self._forward is not None and not self._closed:
                self._forward(("close", None))
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._scores)
