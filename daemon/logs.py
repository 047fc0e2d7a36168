"""Logging helpers shared by the stages: a warning that repeats is said once per interval."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Log a repeating warning at most once per ``interval`` seconds, with how often it happened."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object, exc_info: bool = False) -> None:
        """Log ``message % args`` unless the last report was less than ``interval`` ago."""
        now = time.monotonic()
        if now - self._last < self._interval:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} more since the last report)"
        self._logger.warning(message, *args, exc_info=exc_info)
        self._last = now
        self._suppressed = 0
