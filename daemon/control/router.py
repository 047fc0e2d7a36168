"""The control router: every command, from every front end, applied on the musical grid.

MQTT, the web API and panel (and OSC, a Stream Deck, tests) send typed commands to the
:class:`~daemon.control.hub.ControlHub`; the :class:`Router` takes them off its queue and calls
the conductor and the engine through narrow interfaces:

- ``mood``, ``scene``, ``tempo``, ``layers``, ``key`` -> the :class:`~daemon.conductor.Conductor`'s
  overrides, then one re-plan of the bars already composed ahead (so the change lands on the
  next bar line, not after the look-ahead);
- ``follow_tempo`` (internal: an outside clock, MIDI clock in) -> the conductor's followed
  tempo, over its own;
- ``mute`` -> the :class:`Transport` (a one-beat fade from the next beat);
- ``transport`` -> the :class:`Transport` (stop or play at the next bar line; the clock runs on);
- ``delay`` -> the :class:`~daemon.outputs.delays.Delays` (an output's delay, at once);
- ``stinger`` -> a stinger at once, landing on the next beat;
- ``teach``, ``teach_undo`` -> the game mode's :class:`~daemon.analysis.teach.Teacher` (a head it
  trains takes over as a bar starts: :meth:`Router.show_bar`).

A burst of commands costs one re-composition. The router also keeps the hub's state current:
the overrides after each command, and the plan of each bar as it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from daemon.analysis.teach import Teacher
from daemon.conductor import Conductor
from daemon.control.commands import (
    Command,
    DelayCommand,
    FollowTempoCommand,
    KeyCommand,
    LayersCommand,
    MoodCommand,
    MuteCommand,
    SceneCommand,
    StingerCommand,
    TeachCommand,
    TeachUndoCommand,
    TempoCommand,
    TransportCommand,
    layer_names,
)
from daemon.control.hub import ControlHub
from daemon.messages import KEY_NAMES, BarStarted, Layer
from daemon.outputs.delays import Delays

log = logging.getLogger("moodscore.control")


class Transport(Protocol):
    """What the router asks of the engine: its clock, mutes and transport (any thread)."""

    @property
    def audio_time(self) -> float: ...

    @property
    def muted(self) -> frozenset[Layer]: ...

    @property
    def playing(self) -> bool: ...

    def set_muted(self, layer: Layer, muted: bool) -> None: ...

    def set_playing(self, playing: bool) -> None: ...


class Router:
    """Applies the hub's commands to the conductor and the engine.

    Parameters
    ----------
    hub : where the commands come from and the state goes.
    conductor : takes the mood, scene, tempo, layer and key overrides.
    transport : the engine's mutes and transport.
    replan : re-plans the bars composed but not started yet (the planner's); awaited once per
        burst of commands that change the plan.
    stinger : plays a stinger of a kind now (the reactor's); None refuses none, plays none.
    delays : the live outputs' delays (``delay`` commands set them); None: none to set.
    teacher : the game mode's teacher (``teach`` commands); None: no game mode.
    """

    def __init__(
        self,
        *,
        hub: ControlHub,
        conductor: Conductor,
        transport: Transport,
        replan: Callable[[], Awaitable[None]],
        stinger: Callable[[str], Awaitable[bool]] | None = None,
        delays: Delays | None = None,
        teacher: Teacher | None = None,
    ) -> None:
        self.hub = hub
        self._conductor = conductor
        self._transport = transport
        self._replan = replan
        self._stinger = stinger
        self._delays = delays
        self._stingers: list[str] = []  # asked for in the burst being applied
        self._teacher = teacher
        hub.teacher = teacher

    async def run(self) -> None:
        """Take commands as they come, forever (a task of the session)."""
        while True:
            first = await self.hub.next_command()
            # Apply what has gathered in one go, then re-plan once: a burst of commands costs
            # one re-composition, not one each.
            replan = False
            for command in [first, *self.hub.take_all()]:
                try:
                    replan |= self.apply(command)
                except Exception:
                    log.exception("control: applying %r failed; the music goes on", command)
            if replan:
                await self._replan()
            stingers, self._stingers = self._stingers, []
            for kind in stingers:
                if self._stinger is not None:
                    await self._stinger(kind)

    def apply(self, command: Command) -> bool:
        """Apply one command; True when the plan of the coming bars changes."""
        conductor = self._conductor
        replan = True
        if isinstance(command, MoodCommand):
            if command.hold_s > 0:
                until = self._transport.audio_time + command.hold_s
                conductor.hold_mood(command.valence, command.arousal, until=until)
            else:
                conductor.release_mood()
                conductor.nudge_mood(command.valence, command.arousal)
        elif isinstance(command, SceneCommand):
            scene = None if command.scene is None else conductor.presets.get(command.scene)
            conductor.force_scene(scene)
        elif isinstance(command, TempoCommand):
            conductor.fix_tempo(command.bpm)
        elif isinstance(command, FollowTempoCommand):
            conductor.follow_tempo(command.bpm)
        elif isinstance(command, LayersCommand):
            conductor.fix_layers(command.layers)
        elif isinstance(command, KeyCommand):
            conductor.fix_key(command.tonic_mode)
        elif isinstance(command, MuteCommand):
            self._transport.set_muted(command.layer, command.muted)
            self.hub.update(muted=layer_names(self._transport.muted))
            replan = False
        elif isinstance(command, TransportCommand):
            self._transport.set_playing(command.action == "play")
            replan = False
        elif isinstance(command, DelayCommand):
            self._set_delay(command.output, command.ms)
            replan = False
        elif isinstance(command, StingerCommand):
            self._stingers.append(command.kind)
            replan = False
        elif isinstance(command, TeachCommand | TeachUndoCommand):
            replan = False
            if self._teacher is not None:
                if isinstance(command, TeachCommand):
                    self._teacher.teach(command.scene, command.seconds)
                elif self._teacher.can_undo():
                    self._teacher.undo()
                self.hub.update(teach=self._teacher.snapshot())
        self.show_overrides()
        return replan

    def _set_delay(self, output: str, ms: float) -> None:
        if self._delays is None:
            log.warning("control: delay refused: this session has no live outputs to delay")
            return
        try:
            self._delays.set(output, ms)
        except ValueError as exc:
            log.warning("control: delay refused: %s", exc)
            return
        log.info("control: %s delay %g ms", output, ms)
        self.hub.update(delays=self._delays.as_dict())

    def show_overrides(self) -> None:
        """Publish the conductor's overrides in the hub's state (keys spelt as people write
        them)."""
        overrides = self._conductor.overrides
        key = overrides.get("key")
        if key is not None:
            overrides["key"] = f"{KEY_NAMES[key['tonic']]} {key['mode']}"
        self.hub.update(overrides=overrides)

    def show_bar(self, event: BarStarted) -> None:
        """Publish the plan of the bar that just started (and the overrides, which a mood hold
        running out changes at a bar)."""
        plan = event.plan
        if self._teacher is not None:
            self._teacher.promote()
        self.hub.update(
            valence=round(plan.valence, 3),
            arousal=round(plan.arousal, 3),
            scene=plan.scene,
            bpm=plan.bpm,
            layers=plan.layers,
            key=KEY_NAMES[plan.tonic],
            mode=plan.mode,
            playing=self._transport.playing,
            muted=layer_names(self._transport.muted),
            bar=event.bar,
            teach=None if self._teacher is None else self._teacher.snapshot(),
        )
        self.show_overrides()
