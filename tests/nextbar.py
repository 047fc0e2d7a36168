"""The documented next-bar rule, as the tests check it.

README, "MQTT": "Next bar" is the next bar line when the command comes at least 0.3 s before
it (the bars already composed ahead are composed again), else the one after. A test knows when
it sent a command and when it first saw it applied; :func:`allowed_bars` gives the bars the
rule allows for those two times: one bar, or two only when the 0.3 s point falls between them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

REPLAN_MARGIN_S = 0.3
# How much later than a test saw it applied the session may check the margin: it re-plans
# right after applying, on the same event loop.
APPLY_SLACK_S = 0.05


def allowed_bars(
    downbeats: Iterable[tuple[int, float]], sent_at: float, applied_by: float
) -> set[int]:
    """Bars a command sent at audio time ``sent_at`` and applied by ``applied_by`` may land on.

    downbeats : (bar, audio time of its downbeat) of the bars played.
    """
    following = min(((b, t) for b, t in downbeats if t > sent_at), key=lambda bt: bt[1])
    allowed = set()
    if following[1] - sent_at >= REPLAN_MARGIN_S:
        allowed.add(following[0])
    if following[1] - applied_by - APPLY_SLACK_S < REPLAN_MARGIN_S:
        allowed.add(following[0] + 1)
    return allowed


def watch_override(session: Any, name: str, value: object) -> asyncio.Future[float]:
    """The engine's audio time when ``session`` shows the override ``name`` = ``value``
    (call before sending the command)."""
    seen: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def on_state(state: dict[str, Any]) -> None:
        if not seen.done() and state["overrides"].get(name) == value:
            seen.set_result(session.engine.audio_time)

    session.control.add_state_listener(on_state)
    return seen
