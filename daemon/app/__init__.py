"""The composition root: one place that builds a session for ``run``, ``render`` and ``compose``.

From the configuration (already layered: config.toml < user file < environment < flags) and a
request, :func:`~daemon.app.core.build_core` makes the stages every command shares (board,
conductor, composer or library, engine, planner, control hub and router), each command's module
chooses its outputs, and :class:`~daemon.session.Session` runs them. ``cli.py`` only parses
flags and maps errors.

- :mod:`.core`: the shared stages, the session, the outputs ``run`` and ``render`` share;
- :mod:`.live`: ``run``;
- :mod:`.render`: ``render`` and ``analyze``;
- :mod:`.compose`: ``compose``.

Adding an output is one class in :mod:`daemon.outputs` and one line in
:func:`~daemon.app.core.common_outputs` (or the command's own list).
"""

from daemon.app.compose import ComposeReport, ComposeRequest, check_compose, compose
from daemon.app.core import Core, build_core, build_session, common_outputs
from daemon.app.live import LiveRequest, build_live, run_live
from daemon.app.render import RenderRequest, analyze, check_render, render

__all__ = [
    "ComposeReport",
    "ComposeRequest",
    "Core",
    "LiveRequest",
    "RenderRequest",
    "analyze",
    "build_core",
    "build_live",
    "build_session",
    "check_compose",
    "check_render",
    "common_outputs",
    "compose",
    "render",
    "run_live",
]
