"""Analysis modes by name (``analysis.mode``, ``--mode``), imported only when used.

As mido picks a backend module from a string, :func:`make_window_model` builds the window model
a mode names; heavy imports (mediapipe, torch) happen only for the mode in use. A new mode adds
one factory to :data:`_FACTORIES` and its name to the ``Literal`` of ``AnalysisConfig.mode`` in
``daemon/config_sections.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon.analysis.base import WindowModel
from daemon.config import CHOICES, Config
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.analysis.teach import Teacher


def _frame(config: Config, teacher: Teacher | None = None) -> WindowModel[Any]:
    from daemon.analysis.features import FrameFeatureModel

    return FrameFeatureModel(config=config.analysis)


def _face(config: Config, teacher: Teacher | None = None) -> WindowModel[Any]:
    from daemon.analysis.face import FaceModel

    return FaceModel(config=config.face, device=config.models.device)


def _game(config: Config, teacher: Teacher | None = None) -> WindowModel[Any]:
    from daemon.analysis.game import GameModel

    return GameModel(config=config.game, device=config.models.device, teacher=teacher)


def _auto(config: Config, teacher: Teacher | None = None) -> WindowModel[Any]:
    from daemon.analysis.game import AutoModel, GameModel

    game = GameModel(config=config.game, device=config.models.device, teacher=teacher)
    return AutoModel(face=_face(config), game=game)


def teaches(config: Config) -> bool:
    """Whether the mode reads game scenes, and so can be taught (``game``, ``auto``)."""
    return config.analysis.mode in ("game", "auto")


_FACTORIES: dict[str, Callable[[Config, Teacher | None], WindowModel[Any]]] = {
    "frame": _frame,
    "face": _face,
    "game": _game,
    "auto": _auto,
}


def analysis_modes() -> tuple[str, ...]:
    """The modes a user may name: those the config accepts that have a model here."""
    return tuple(m for m in CHOICES[("analysis", "mode")] if m in _FACTORIES)


def make_window_model(config: Config, teacher: Teacher | None = None) -> WindowModel[Any]:
    """The window model of ``config.analysis.mode``, ready to use (close it when done);
    ``teacher``: what the user taught (the game modes read with it).

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
    return factory(config, teacher)
