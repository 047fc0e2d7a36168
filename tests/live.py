"""The live daemon for tests, built by the composition root exactly as ``moodscore run`` builds it.

No stand-ins: the demo source, the analysis, the conductor and composer, the pyo engine in
``manual`` mode (no sound card here), and whatever outputs the config asks for (the web server on
a free port, MQTT, MIDI, the recording).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from daemon.app import LiveRequest, build_live
from daemon.config import Config, load_config
from daemon.engine import BackendChoice
from daemon.session import Session, SessionReport
from daemon.sources import open_source
from daemon.web.server import WebServer

MANUAL = BackendChoice("manual", "tests: no sound card")


def live_config(**sections: dict[str, Any]) -> Config:
    """The shipped config (no user file), the web page on a free loopback port, no MQTT, with
    ``sections`` over it (``web={"token": "x"}``)."""
    config = load_config(use_user_file=False).replace("engine", backend="manual")
    config = config.replace("web", enabled=True, host="127.0.0.1", port=0)
    config = config.replace("mqtt", enabled=False).replace("midi", enabled=False)
    for section, values in sections.items():
        config = config.replace(section, **values)
    return config


def build(
    config: Config,
    *,
    seconds: float | None = None,
    record_dir: Path | None = None,
    source: str = "demo",
) -> Session:
    """A live session of ``moodscore run --source SOURCE --duration SECONDS``."""
    opened = open_source(source, config.source, paced=True)
    request = LiveRequest(duration=seconds, record_dir=record_dir, web_port_flexible=False)
    return build_live(config, request, opened, MANUAL)


def web_of(session: Session) -> WebServer:
    """The session's web server."""
    return next(o for o in session.outputs if isinstance(o, WebServer))


@contextlib.asynccontextmanager
async def running(session: Session) -> AsyncIterator[asyncio.Task[SessionReport]]:
    """Run ``session`` in a task until the block ends (then stop it in order); entered once the
    first bar sounds, so its web server listens and its clock runs."""
    started = asyncio.Event()
    session.control.add_state_listener(
        lambda state: started.set() if state["bar"] is not None else None
    )
    task = asyncio.create_task(session.run(), name="live session")
    try:
        done, _ = await asyncio.wait(
            {task, asyncio.create_task(started.wait())},
            timeout=20,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if task in done:
            task.result()  # raises what stopped it
        if not started.is_set():
            raise TimeoutError("the live session did not start its first bar within 20 s")
        yield task
    finally:
        session.request_stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
