"""The root of moodscore's error family, and the errors the models raise.

:class:`MoodscoreError` lives here, in the lowest package, because ``models`` must import nothing
from ``daemon`` (it trains and evaluates on its own) while every error a user can meet has to be
one family: the CLI catches :class:`MoodscoreError`, prints its message as one line and exits
with status 2. :mod:`daemon.errors` re-exports :class:`MoodscoreError` and :class:`ModelError`
(the same class objects) and adds the daemon's own kinds beside them::

    MoodscoreError                      models.errors (re-exported by daemon.errors)
    +-- ModelError                      models.errors (re-exported by daemon.errors)
    |   +-- WeightsNotFound             also a FileNotFoundError
    |   +-- CheckpointError             also a ValueError
    +-- ConfigError, SourceError, EngineError    daemon.errors

Each message says what went wrong *and what to do about it*.
"""

from __future__ import annotations


class MoodscoreError(Exception):
    """Base of every error moodscore reports to the user."""


class ModelError(MoodscoreError):
    """A model's weights are missing, do not load, or cannot run where they were asked to
    (``models.device = "cuda"`` without a GPU)."""


class WeightsNotFound(ModelError, FileNotFoundError):
    """A weights file is not where it should be: a checkpoint path, or a model file that should
    ship in an installed package.

    Also a :class:`FileNotFoundError`, so code that only asks "is the file there?" still works.
    """


class CheckpointError(ModelError, ValueError):
    """A file is there but is not a checkpoint this code can read: not a torch file, another
    model's, a newer format, another vocabulary, or weights that do not fit the network.

    Also a :class:`ValueError` (a bad value on disk), as the loaders raised before.
    """


__all__ = ["CheckpointError", "ModelError", "MoodscoreError", "WeightsNotFound"]
