"""The optional parts of the install (pyproject's extras) and the error a missing one gives.

The core (``pip install moodscore``) runs, renders and composes from frame or game video. What
not everyone needs is an extra: ``[face]`` (face mode), ``[library]`` (your own music library),
``[train]`` (training the models), ``[dev]`` (tests, linters, the bench's sample photos). Code
that needs an extra calls :func:`require` before it starts, so a missing one is one line that
says what to install, never an ImportError halfway through.
"""

from __future__ import annotations

import importlib.util

from daemon.errors import MoodscoreError

# extra -> (the modules it provides, what it is for)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "face": (("mediapipe",), "face mode (--mode face)"),
    "library": (
        ("librosa", "soxr"),
        "playing and indexing your own tracks (`moodscore library`, --library)",
    ),
    "train": (("music21",), "training the melody model (`moodscore train-melody`)"),
    "dev": (("skimage",), "the bench's sample photos and the tests"),
}


class MissingExtra(MoodscoreError):
    """A part of moodscore needs an extra that is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    modules, _ = EXTRAS[extra]
    return [name for name in modules if importlib.util.find_spec(name) is None]


def install_hint(extra: str) -> str:
    """How to add ``extra`` to a pip or pipx install."""
    return (
        f"pip install 'moodscore[{extra}]' (with pipx: pipx install --force 'moodscore[{extra}]')"
    )


def require(extra: str, *, what: str | None = None) -> None:
    """Raise :class:`MissingExtra` unless every module of ``extra`` is importable.

    Parameters
    ----------
    extra : a key of :data:`EXTRAS`.
    what : the feature that needs it, for the message (default: the extra's own purpose).
    """
    missing = missing_modules(extra)
    if missing:
        purpose = what or EXTRAS[extra][1]
        raise MissingExtra(
            f"{purpose} needs the [{extra}] extra ({', '.join(missing)} not installed): "
            f"{install_hint(extra)}"
        )
