"""The composer -> engine link: bar scores handed from the event loop to the audio thread.

The composer puts each bar's score a bar or more ahead; the engine takes it when the bar starts.
Never dropped (the architecture's rule for this link): live, a bar that is not there in time is
an underrun the engine counts and covers; in a render the engine waits for it.
"""

from __future__ import annotations

import threading
import time

from daemon.messages import BarScore


class ScoreQueue:
    """Thread-safe hand-off of bar scores from the composer (event loop) to the engine thread.

    Keyed by bar: a bar put twice keeps the later score; bars older than the one asked for are
    dropped when asked. Unbounded, because the composer writes only a bar or two ahead.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._scores: dict[int, BarScore] = {}
        self._closed = False

    def put(self, score: BarScore) -> None:
        """Add a bar's score; never blocks (safe on the event loop). Ignored once closed."""
        with self._cond:
            if self._closed:
                return
            self._scores[score.bar] = score
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
                score = self._scores.pop(bar, None)
                if score is not None:
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
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __len__(self) -> int:
        with self._cond:
            return len(self._scores)
