"""The control hub: where commands come in and the state every front end shows comes out.

Front ends (MQTT, the web API and panel, tests) call :meth:`ControlHub.execute`: the payload is
validated (:func:`~daemon.control.commands.parse_command`) and queued, and the answer is a
:class:`~daemon.control.commands.CommandResult`; bad input never raises. The
:class:`~daemon.control.router.Router` takes the commands off the bounded queue (on overflow the
oldest is dropped, with a warning) and applies each on the musical grid.
:meth:`ControlHub.state` is the snapshot every front end shows and publishes; the router and the
session keep it current with :meth:`ControlHub.update`.

``source`` commands do not queue: they open the new source at once (the session's
:class:`SourceSwitcher`), so the answer says whether it opened. Nor does ``teach`` with a
``file``: the recording is read in a thread and the answer says what was taught.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from daemon.control.commands import (
    OK,
    Command,
    CommandError,
    CommandResult,
    GameCommand,
    SourceCommand,
    TeachCommand,
    TeachUndoCommand,
    parse_command,
)
from daemon.errors import MoodscoreError
from daemon.logs import RateLimitedLog
from daemon.messages import Cue
from daemon.scenes import available_scenes

if TYPE_CHECKING:
    from daemon.sources import FrameSource

log = logging.getLogger("moodscore.control")

# Commands waiting for the router; a flood beyond this drops the oldest (the newest wins).
DEFAULT_QUEUE_SIZE = 64

StateListener = Callable[[dict[str, Any]], None]
EventListener = Callable[[str, dict[str, Any]], None]


class SourceSwitcher(Protocol):
    """What switches the live source: the running session.

    Both raise a :class:`~daemon.errors.MoodscoreError` when the switch cannot happen; the old
    source keeps running then.
    """

    def switch_source(self, spec: str) -> Awaitable[str]:
        """Open ``spec`` (``demo``, ``webcam:N``, a file), then replace the running source with
        it; its description."""
        ...

    def use_source(self, source: FrameSource) -> Awaitable[str]:
        """Replace the running source with ``source``, already open (a browser's camera); its
        description. ``source`` is closed when it cannot be used."""
        ...


class Teaching(Protocol):
    """What the hub asks of the game mode's teacher (:class:`daemon.analysis.teach.Teacher`)."""

    def can_undo(self) -> bool: ...

    def teach_file(self, scene: str, path: Path | str, *, start: float, seconds: float) -> str: ...

    def switch(self, game: str) -> str: ...

    def profiles(self) -> list[dict[str, Any]]: ...

    def profile_bytes(self, game: str | None) -> bytes: ...

    def snapshot(self) -> dict[str, Any]: ...

    def export_bytes(self) -> bytes: ...

    def import_bytes(self, raw: bytes, *, where: str) -> None: ...


class ControlHub:
    """Where commands come in and the state every front end shows comes out.

    Parameters
    ----------
    queue_size : commands that may wait for the router; beyond it the oldest is dropped.
    scenes : the scene preset names ``scene`` commands may name (the session's preset library).

    Front ends call :meth:`execute`, :meth:`use_source`, :meth:`state` and
    :meth:`add_state_listener`, all on the event loop. The router calls :meth:`next_command`;
    the router and the session call :meth:`update`; a running live session sets itself as the
    :class:`SourceSwitcher` (:meth:`set_source_switcher`).
    """

    def __init__(
        self,
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        scenes: Callable[[], Sequence[str]] = available_scenes,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._queue: collections.deque[Command] = collections.deque()
        self._queue_size = queue_size
        self._waiting = asyncio.Event()
        self._sources: SourceSwitcher | None = None
        self.scene_names = scenes
        self._source_lock = asyncio.Lock()
        self._listeners: list[StateListener] = []
        self._drop_log = RateLimitedLog(log)
        self._reject_log = RateLimitedLog(log)
        self.dropped = 0  # commands dropped because the queue was full
        self.rejected = 0  # commands refused as malformed
        self._state: dict[str, Any] = {
            "valence": 0.0,
            "arousal": 0.0,
            "scene": None,
            "bpm": None,
            "layers": None,
            "key": None,
            "mode": None,
            "source": None,
            "overrides": {},
            "muted": [],
            "playing": True,
            "bar": None,
            "cue": None,
            "delays": {},
            "teach": None,
        }
        self._event_listeners: list[EventListener] = []
        self._health: dict[str, Any] = {}
        self._health_listeners: list[StateListener] = []
        # The game mode's teacher (``teach`` commands, the ``teach`` state); None: no game mode.
        self.teacher: Teaching | None = None
        # ``[game] auto_profile``: its ``[game.profiles]`` mapping; None: profiles are not
        # chosen from the OBS scene or the window title.
        self.auto_profiles: Mapping[str, str] | None = None

    # -- front ends ------------------------------------------------------------------------

    async def execute(
        self, name: str, payload: bytes | str | Mapping[str, Any] | None
    ) -> CommandResult:
        """Validate the command and hand it to the session; never raises for bad input.

        Returns ``CommandResult(True, "ok")`` once the command is queued (it takes effect on the
        grid: see the module's docstring), or ``ok=False`` with the reason. A ``source``
        command returns once the new source is open, or with the error that kept it from
        opening (the old source then keeps running).
        """
        try:
            command = parse_command(name, payload, scenes=self.scene_names())
        except CommandError as exc:
            self.rejected += 1
            self._reject_log.warning("command refused: %s", exc)
            return CommandResult(False, str(exc))
        if isinstance(command, SourceCommand):
            return await self._switch(command.source)
        if isinstance(command, TeachCommand | TeachUndoCommand | GameCommand):
            refusal = self._teach_refusal(command)
            if refusal is not None:
                self.rejected += 1
                self._reject_log.warning("command refused: %s", refusal)
                return CommandResult(False, refusal)
            if isinstance(command, TeachCommand) and command.file is not None:
                return await self._teach_file(command, command.file)
            if isinstance(command, GameCommand):
                return await self.switch_game(command.game)
        self.submit(command)
        return OK

    async def _teach_file(self, command: TeachCommand, file: str) -> CommandResult:
        teacher = self.teacher
        assert teacher is not None  # _teach_refusal said so
        try:
            what = await asyncio.to_thread(
                teacher.teach_file,
                command.scene,
                file,
                start=command.start,
                seconds=command.seconds,
            )
        except MoodscoreError as exc:
            self._reject_log.warning("teach refused: %s", exc)
            return CommandResult(False, str(exc))
        except Exception as exc:  # a worker that died: say so, the music plays on
            log.exception("teach: reading %s failed", file[:200])
            return CommandResult(False, f"teach: reading the file failed ({exc})")
        self.update(teach=teacher.snapshot())
        return CommandResult(True, f"taught {what}")

    async def switch_game(self, game: str) -> CommandResult:
        """Teach and read ``game``'s profile from the next bar (``game`` commands, the automatic
        choice from the OBS scene or the window title)."""
        teacher = self.teacher
        if teacher is None:
            return CommandResult(False, "game: no game profile: run with --mode game")
        try:
            what = await asyncio.to_thread(teacher.switch, game)
        except MoodscoreError as exc:
            self._reject_log.warning("game refused: %s", exc)
            return CommandResult(False, str(exc))
        self.update(teach=teacher.snapshot())
        return CommandResult(True, f"game profile {what}")

    async def seen_title(self, title: str, *, where: str) -> CommandResult:
        """An OBS scene name or a captured window's title (``where`` says which): with
        ``[game] auto_profile`` (:attr:`auto_profiles`), the profile it names (its
        ``[game.profiles]`` mapping, else a saved profile's name it contains) is switched to."""
        teacher = self.teacher
        if teacher is None or self.auto_profiles is None:
            return CommandResult(False, "auto profile is off ([game] auto_profile)")
        from daemon.analysis.profiles import pick

        known = [p["game"] for p in await asyncio.to_thread(teacher.profiles) if p["usable"]]
        game = pick(title, self.auto_profiles, known)
        if game is None or game == teacher.snapshot().get("game"):
            return CommandResult(True, f"{where} {title[:80]!r}: profile unchanged")
        log.info("auto profile: %s %r picks game profile %s", where, title[:80], game)
        return await self.switch_game(game)

    def _teach_refusal(self, command: TeachCommand | TeachUndoCommand | GameCommand) -> str | None:
        if self.teacher is None:
            return (
                f"{command.name}: only the game scene model can be taught; run with --mode game "
                "(or auto)"
            )
        if isinstance(command, TeachUndoCommand) and not self.teacher.can_undo():
            return "teach_undo: nothing was taught to undo"
        return None

    def submit(self, command: Command) -> None:
        """Queue an already-validated command (drop the oldest when full)."""
        if len(self._queue) >= self._queue_size:
            self._queue.popleft()
            self.dropped += 1
            self._drop_log.warning(
                "control: more than %d commands waiting; dropped the oldest (%d so far)",
                self._queue_size,
                self.dropped,
            )
        self._queue.append(command)
        self._waiting.set()

    def state(self) -> dict[str, Any]:
        """A copy of the state: valence, arousal, scene, bpm, layers, key, mode, source,
        overrides, muted, playing, bar."""
        state = dict(self._state)
        if self.teacher is not None:
            state["teach"] = self.teacher.snapshot()
        state["overrides"] = dict(state["overrides"])
        state["muted"] = list(state["muted"])
        state["delays"] = dict(state["delays"])
        return state

    def add_state_listener(self, fn: StateListener) -> None:
        """Call ``fn(state)`` on the event loop whenever the state changes."""
        self._listeners = [*self._listeners, fn]

    def remove_state_listener(self, fn: StateListener) -> None:
        """Stop calling ``fn``; unknown listeners are ignored."""
        self._listeners = [f for f in self._listeners if f is not fn]

    def health(self) -> dict[str, Any]:
        """The latest health report (:mod:`daemon.control.health`); empty before the first."""
        return dict(self._health)

    def set_health(self, report: dict[str, Any]) -> None:
        """A new health report (the monitor, once a second): listeners hear of every one."""
        self._health = dict(report)
        for fn in self._health_listeners:
            try:
                fn(dict(report))
            except Exception:
                log.exception("health listener %r failed; it keeps being called", fn)

    def add_health_listener(self, fn: StateListener) -> None:
        """Call ``fn(report)`` on the event loop with every health report."""
        self._health_listeners = [*self._health_listeners, fn]

    def remove_health_listener(self, fn: StateListener) -> None:
        """Stop calling ``fn``; unknown listeners are ignored."""
        self._health_listeners = [f for f in self._health_listeners if f is not fn]

    def add_event_listener(self, fn: EventListener) -> None:
        """Call ``fn(name, payload)`` on the event loop for every event (``cue``)."""
        self._event_listeners = [*self._event_listeners, fn]

    def remove_event_listener(self, fn: EventListener) -> None:
        """Stop calling ``fn``; unknown listeners are ignored."""
        self._event_listeners = [f for f in self._event_listeners if f is not fn]

    def cue(self, cue: Cue, audio_time: float, *, seen_in: str = "frames") -> None:
        """A cue was answered at ``audio_time``: it goes in the state (``cue``) and out as an
        event; ``seen_in`` says whether the frames or a mood window raised it."""
        payload: dict[str, Any] = {
            "kind": cue.kind,
            "seen_in": seen_in,
            "strength": round(float(cue.strength), 3),
            "audio_time": round(audio_time, 3),
            "source_time": round(cue.time, 3),
        }
        if cue.scene is not None:
            payload["scene"] = cue.scene
        self.update(cue=payload)
        for fn in self._event_listeners:
            try:
                fn("cue", dict(payload))
            except Exception:
                log.exception("event listener %r failed; it keeps being called", fn)

    # -- the session -----------------------------------------------------------------------

    def set_source_switcher(self, sources: SourceSwitcher | None) -> None:
        """Set (or clear, None) what ``source`` commands and :meth:`use_source` call."""
        self._sources = sources

    async def use_source(self, source: FrameSource) -> str:
        """Hand an opened source (a browser's camera) to the running session; its description.

        Raises
        ------
        MoodscoreError
            No live session is running (``source`` is closed).
        """
        sources = self._sources
        if sources is None:
            await source.close()
            raise MoodscoreError("no live session is running; a camera can only join one")
        async with self._source_lock:
            return await sources.use_source(source)

    @property
    def pending(self) -> int:
        """Commands waiting for the router."""
        return len(self._queue)

    def take_all(self) -> list[Command]:
        """Every waiting command, oldest first, without waiting."""
        taken = list(self._queue)
        self._queue.clear()
        self._waiting.clear()
        return taken

    async def next_command(self) -> Command:
        """Wait for the next command (oldest first)."""
        while not self._queue:
            self._waiting.clear()
            await self._waiting.wait()
        command = self._queue.popleft()
        if not self._queue:
            self._waiting.clear()
        return command

    def update(self, **fields: Any) -> None:
        """Change state fields; listeners hear of it once, and only if something changed."""
        unknown = set(fields) - set(self._state)
        if unknown:
            raise KeyError(f"unknown state field(s): {', '.join(sorted(unknown))}")
        changed = {k: v for k, v in fields.items() if self._state.get(k) != v}
        if not changed:
            return
        self._state.update(changed)
        snapshot = self.state()
        for fn in self._listeners:
            try:
                fn(snapshot)
            except Exception:
                log.exception("state listener %r failed; it keeps being called", fn)

    async def _switch(self, spec: str) -> CommandResult:
        sources = self._sources
        if sources is None:
            return CommandResult(False, "source: this session cannot switch sources (a render)")
        async with self._source_lock:
            try:
                description = await sources.switch_source(spec)
            except MoodscoreError as exc:
                log.warning("source switch to %r refused: %s", spec[:80], exc)
                return CommandResult(False, f"source: {exc}")
            except Exception as exc:  # a driver's own error type: still one line back
                log.exception("source switch to %r failed", spec[:80])
                return CommandResult(False, f"source: could not switch to {spec[:80]!r}: {exc}")
        log.info("source: %s", description)
        return OK
