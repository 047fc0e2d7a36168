"""Reactions: how the music answers a cue, the way a game's own score does.

A cue (:class:`~daemon.messages.Cue`) comes from the frames (the picture jumped: known within a
tenth of a second) or from the conductor (a window's intensity jumped, or a confident new scene:
the plan itself changed). The scene presets' transition rules
(:func:`~daemon.messages.transition_rule`) say how each is answered:

- **exit**: where the new plan starts: ``immediate`` (the next 16th note), ``beat`` (the next
  beat), ``bar`` (the next bar line) or ``bars:N``. Inside a bar the planner writes the bar again
  for the new plan and patches it from that position (:class:`~daemon.messages.BarPatch`: the new
  notes, sounds and layers, the layers fading over ``fade_beats``; the tempo follows at the bar
  line); the bars already written after it are written again, so the change is never held back
  by the look-ahead;
- **bridge**: a stinger (:mod:`daemon.composer.stinger`) played into the change, landing on the
  next beat (the next 8th when the beat is far), its pickup starting at once.

Only a confirmed change of plan (from the conductor) moves the plan; a cue from the frames alone
brings at most its stinger, so a flash or a flicker never changes tempo or layers. Stingers come
no closer together than ``conductor.stinger_interval_s``. Every cue is announced (MQTT
``event/cue``, the web state).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable

from daemon.clock import BarGrid
from daemon.composer.stinger import write_stinger
from daemon.messages import STINGER_KINDS, BarPatch, Cue, ScenePreset, transition_rule
from daemon.planner import BarPlanner

log = logging.getLogger("moodscore.reactions")

# A landing further than this after the cue moves to the next 8th (a slow beat is too long to
# wait for).
FAR_BEAT_S = 0.5
# The shortest pickup worth playing before a landing; with less room the stinger is a hit.
MIN_PICKUP_S = 0.06
STEP = {"immediate": 0.25, "beat": 1.0}  # grid step of an exit inside a bar, in beats


class Reactor:
    """Answers cues for one session (see the module docstring).

    Parameters
    ----------
    planner : writes and patches the bars (the reactor is called with its lock held).
    stingers : play stingers at all.
    stinger_interval_s : at least this long between two stingers.
    patches : whether bars may change inside (False in the library mode, whose tracks change
        on bar lines only).
    announce : hears every cue as it is answered, with the audio time it answers at and where it
        was seen (``seen_in``: ``frames`` or ``window``).
    """

    def __init__(
        self,
        *,
        planner: BarPlanner,
        stingers: bool,
        stinger_interval_s: float,
        patches: bool = True,
        announce: Callable[..., None] | None = None,
    ) -> None:
        self._planner = planner
        self._stingers = stingers
        self._interval = stinger_interval_s
        self._patches = patches
        self._announce = announce
        self._last_stinger = -math.inf
        self._preset: ScenePreset = planner.conductor.preset
        self.stingers_played = 0
        self.patches_made = 0

    async def answer(self, cue: Cue, *, confirmed: bool, now: float | None) -> None:
        """Answer ``cue``: ``confirmed`` when the conductor's plan changed with it; ``now`` is
        the audio time it happened (a render) or None (live: the engine's present)."""
        planner = self._planner
        at = planner.present() if now is None else now
        before, self._preset = self._preset, planner.conductor.preset
        if self._announce is not None:
            self._announce(cue, at, seen_in="window" if confirmed else "frames")
        if cue.kind == "cut":
            return  # the picture changed, not what it means: nothing to answer yet
        if cue.kind == "scene":
            rule = transition_rule(before, self._preset)
        else:
            change = "fall" if cue.kind == "fall" else "rise"  # a flash: at most a hit
            rule = transition_rule(self._preset, self._preset, change=change)
        if rule.bridge is not None:
            await self.stinger(rule.bridge, at=at, strength=cue.strength)
        if confirmed:
            await self._move(rule.exit, rule.fade_beats, at)

    async def play(self, kind: str) -> bool:
        """A stinger asked for by a command (MQTT ``cmd/stinger``, the panel): at once, in
        the key, landing on the next beat."""
        async with self._planner.lock:
            return await self.stinger(kind)

    async def stinger(self, kind: str, *, at: float | None = None, strength: float = 1.0) -> bool:
        """Play a stinger of ``kind`` from ``at`` (the engine's present when None); False when it
        is too soon after the last, stingers are off, or nothing is written to land on."""
        planner = self._planner
        now = planner.present() if at is None else at
        if kind not in STINGER_KINDS or not self._stingers:
            return False
        if now - self._last_stinger < self._interval:
            return False
        here = planner.bar_at(now)
        landing = self._landing(now)
        if here is None or landing is None:
            return False
        bar, beat = landing
        grid, lands_in = planner.grid(here), planner.score(bar)
        if grid is None or lands_in is None or bar not in (here, here + 1):
            return False
        # Placed in the bar it starts in; a landing on the next bar line is that bar's
        # downbeat (the end of this bar's grid), with that bar's chord and key.
        landing_beat = beat + (grid.beats if bar == here + 1 else 0)
        pickup_beat = _beat_at(grid, now)
        if grid.time_at(landing_beat) - now < MIN_PICKUP_S:
            pickup_beat = landing_beat
        key = lands_in.plan
        notes = write_stinger(
            kind,
            tonic=key.tonic,
            mode=key.mode,
            chord=lands_in.chord,
            landing=landing_beat,
            pickup=pickup_beat,
            strength=strength,
        )
        current = planner.score(here)
        if not notes or current is None:
            return False
        start = min(n.offset for n in notes)
        planner.patch(
            BarPatch(bar=here, from_beat=start, plan=current.plan, notes=notes, replace=False)
        )
        self._last_stinger = now
        self.stingers_played += 1
        log.debug("stinger %s at bar %d beat %.2f", kind, bar, beat)
        return True

    def _landing(self, now: float) -> tuple[int, float] | None:
        """The next beat after ``now`` (the next 8th when the beat is far), as (bar, beat)."""
        planner = self._planner
        bar = planner.bar_at(now)
        if bar is None:
            return None
        position = _next_position(planner, bar, now, step=1.0)
        if position is None:
            return None
        grid = planner.grid(position[0])
        assert grid is not None
        if grid.time_at(position[1]) - now > FAR_BEAT_S:
            closer = _next_position(planner, bar, now + MIN_PICKUP_S, step=0.5)
            if closer is not None:
                return closer
        return position

    async def _move(self, exit_: str, fade_beats: float, now: float) -> None:
        """Bring the conductor's new plan in at the rule's exit after ``now``."""
        planner = self._planner
        bar = planner.bar_at(now)
        if bar is None:
            return  # nothing written yet: the next decision takes the new plan
        if exit_ in STEP and self._patches:
            position = _next_position(planner, bar, now, step=STEP[exit_])
            if position is None:
                return
            target, beat = position
            # The tempo follows at the next bar line, ramping over a beat rather than a bar.
            grid = planner.grid(target)
            quick = 1.0 / (grid.beats if grid is not None else 4)
            if beat > 0:
                await self._patch_from(target, beat, fade_beats)
                await planner.rewrite(from_bar=target + 1, now=now, ramp=quick)
                return
            await planner.rewrite(from_bar=target, now=now, ramp=quick)
            return
        bars = 1 if exit_ in STEP else int(exit_.split(":")[1]) if ":" in exit_ else 1
        await planner.rewrite(from_bar=bar + bars, now=now)

    async def _patch_from(self, bar: int, beat: float, fade_beats: float) -> None:
        planner = self._planner
        plan = planner.conductor.plan_for_bar(bar)
        written = await planner.write_plan(plan)
        notes = tuple(n for n in written.notes if n.offset >= beat - 1e-9)
        planner.patch(
            BarPatch(
                bar=bar,
                from_beat=beat,
                plan=dataclasses.replace(plan, bar=bar),
                notes=notes,
                replace=True,
                fade_beats=fade_beats,
            )
        )
        self.patches_made += 1


def _next_position(
    planner: BarPlanner, bar: int, after: float, *, step: float
) -> tuple[int, float] | None:
    """The first grid position of ``step`` beats at or after audio time ``after``, from bar
    ``bar`` on: (bar, beat from its downbeat); a bar line is (next bar, 0)."""
    while True:
        grid = planner.grid(bar)
        if grid is None:
            return None
        beat = 0.0
        while beat < grid.beats - 1e-9:
            if grid.time_at(beat) >= after - 1e-9:
                return bar, beat
            beat += step
        bar += 1


def _beat_at(grid: BarGrid, t: float) -> float:
    """The position (beats from the downbeat, fractional) of audio time ``t`` in ``grid``."""
    low, high = 0.0, float(grid.beats) + 4.0
    for _ in range(40):
        middle = (low + high) / 2
        if grid.time_at(middle) < t:
            low = middle
        else:
            high = middle
    return high
