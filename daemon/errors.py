"""The small exception hierarchy every stage raises from.

Each message says what went wrong *and what to do about it*; the CLI prints it as one line and
exits with status 2, without a traceback.

:class:`MoodscoreError` and :class:`ModelError` are defined in :mod:`models.errors` (``models``
imports nothing from ``daemon``, yet its errors must be in the same family) and re-exported
here as the same class objects; the daemon's own kinds are defined below.
"""

from __future__ import annotations

from models.errors import ModelError, MoodscoreError


class ConfigError(MoodscoreError):
    """A configuration file, key, value or command-line flag is wrong."""


class SourceError(MoodscoreError):
    """A frame source cannot be opened or read (missing file, not a video, no camera)."""


class EngineError(MoodscoreError):
    """The audio engine cannot start or run in the requested mode."""


class EndOfStream(Exception):
    """Raised by a stage's single async method when its stream has finished."""


__all__ = [
    "ConfigError",
    "EndOfStream",
    "EngineError",
    "ModelError",
    "MoodscoreError",
    "SourceError",
]
