"""The small exception hierarchy every stage raises from.

Each message says what went wrong *and what to do about it*; the CLI prints it as one line and
exits with status 2, without a traceback.
"""

from __future__ import annotations


class MoodscoreError(Exception):
    """Base of every error moodscore reports to the user."""


class ConfigError(MoodscoreError):
    """A configuration file, key, value or command-line flag is wrong."""


class SourceError(MoodscoreError):
    """A frame source cannot be opened or read (missing file, not a video, no camera)."""


class ModelError(MoodscoreError):
    """A model's weights are missing or do not load."""


class EngineError(MoodscoreError):
    """The audio engine cannot start or run in the requested mode."""


class EndOfStream(Exception):
    """Raised by a stage's single async method when its stream has finished."""
