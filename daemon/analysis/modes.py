"""Analysis modes by name (``analysis.mode``, ``--mode``), imported only when used.

As mido picks a backend module from a string, :func:`make_window_model` builds the window model
a mode names; heavy imports (mediapipe, torch) happen only for the mode in use. A new mode adds
one factory to :data:`_FACTORIES` and its name to the ``Literal`` of ``AnalysisConfig.mode`` in
``daemon/config_sections.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.analysis.base import WindowModel
from daemon.config import CHOICES, Config
from daemon.errors import ConfigError


def _frame(config: Config) -> WindowModel[Any]:
    from daemon.analysis.features import FrameFeatureModel

    return FrameFeatureModel(config=config.analysis)


def _face(config: Config) -> WindowModel[Any]:
    from daemon.analysis.face import FaceModel

    return FaceModel(config=config.face, device=config.models.device)


def _game(config: Config) -> WindowModel[Any]:
    from daemon.analysis.game import GameModel

    return GameModel(config=config.game, device=config.models.device)


def _auto(config: Config) -> WindowModel[Any]:
    from daemon.analysis.game import AutoModel, GameModel

    game = GameModel(config=config.game, device=config.models.device)
    return AutoModel(face=_face(config), game=game)


_FACTORIES: dict[str, Callable[[Config], WindowModel[Any]]] = {
    "frame": _frame,
    "face": _face,
    "game": _game,
    "auto": _auto,
}


def analysis_modes() -> tuple[str, ...]:
    """The modes a user may name: those the config accepts that have a model here."""
    return tuple(m for m in CHOICES[("analysis", "mode")] if m in _FACTORIES)


def make_window_model(config: Config) -> WindowModel[Any]:
    """The window model of ``config.analysis.mode``, ready to use (close it when done).

    Raises
    ------
    ConfigError
        The mode has no model yet.
    ModelError
        The mode's model files are missing or do not load.
    """
    mode = config.analysis.mode
    factory = _FACTORIES.get(mode)
    if factory is None:
        raise ConfigError(
            f"analysis mode {mode!r} is not available yet; use one of {', '.join(analysis_modes())}"
        )
    return factory(config)
