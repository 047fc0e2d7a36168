"""Ableton Link: moodscore's tempo and bar phase shared with DJ software, DAWs, VJ tools, phones
and other moodscore daemons on the local network (``[link]``, ``run --link [lead|follow]``).

Link keeps one timeline per session: a tempo and a beat for every moment, with bar lines on
multiples of the *quantum* (here the bar's beats). This output joins the session through
``aalink`` and keeps it and the engine on the same bar lines, in one of two ways:

- **lead** (the default): moodscore's plan decides. A fixed moment before each bar line
  (:func:`announce_lead`: 0.2 s, less at fast tempi so no beat falls in between) it writes the
  coming bar's tempo into the session, anchored so that the session's bar line falls exactly on
  its own downbeat: peers and followers get the new tempo *before* the bar starts, as a follower
  must lay out its bar (``engine.live_ahead_s`` of 0.1 s ahead) before it sounds. A tempo change
  therefore lands on the bar line everywhere. Until that moment the session runs on the old
  timeline, so between then and the bar line the session's phase is off by the new tempo's
  difference (no beat lies there). Tempo or phase changes made by another peer are overwritten
  at the next bar.
- **follow** (``link.follow``): the session decides. As the engine starts each bar it asks the
  session where the downbeat falls and plays the bar at the session's tempo, bent so that it ends
  on the session's bar line (:func:`~daemon.clock.follow_tempo`; a far-off phase moves by at most
  :data:`MAX_SHIFT_BEATS` a bar, so joining a session half a bar off catches up over a few bars
  rather than lurching). The conductor's tempo then only matters while the session has no other
  peer.

Either way the engine's bars jump to their tempo on the downbeat (no ramp): a ramp would move
beats off the session's straight timeline. With ``link.start_stop``, a leader's transport starts
and stops the session at the bar line it changes on, and a follower's transport follows the
session's play/stop from the next bar line.

Times. The engine's clock turns audio time into ``time.perf_counter()`` (:meth:`wall_time`);
Link keeps its own clock. Every exchange reads both "now"s back to back (microseconds apart), so
no offset between the two clocks is ever estimated.

A missing or failing ``aalink`` is one logged line, and the music plays on without Link. Link
finds peers by multicast on every network interface: run it on the installation's own network,
never on a network whose other users should not see it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from daemon.clock import BarGrid, MusicClock, follow_tempo
from daemon.config import LinkConfig
from daemon.logs import RateLimitedLog
from daemon.messages import Plan
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.link")

# A follower far off the session's phase moves its bar line by at most this many beats a bar
# (a 4-beat bar then plays at most 12% faster or slower while it catches up).
MAX_SHIFT_BEATS = 0.5
# A leader writes the coming bar into the session this long before its bar line...
ANNOUNCE_S = 0.2
# ...but no earlier than this fraction of a beat before it, so no beat line moves meanwhile.
ANNOUNCE_BEATS = 0.5
# A leader corrects the session's phase when it is further off its own than this.
PHASE_TOLERANCE_S = 0.0002


def announce_lead(bpm: float) -> float:
    """Seconds before a bar line at which a leader writes the coming bar into the session."""
    return min(ANNOUNCE_S, ANNOUNCE_BEATS * 60.0 / bpm)


class LinkEngine(Protocol):
    """What the Link output asks of the engine: each bar's tempo, and the transport."""

    @property
    def playing(self) -> bool: ...

    def set_playing(self, playing: bool) -> None: ...

    def set_bar_tempo(self, fn: Callable[[int, float, Plan], float]) -> None: ...


class LinkOutput(Output):
    """Joins the Link session and keeps the engine's bar lines on it (see the module docstring).

    Parameters
    ----------
    config : the ``[link]`` section (``follow``, ``start_stop``).
    engine : the engine: this output sets its bars' tempo (:meth:`Engine.set_bar_tempo`,
        installed here, before the engine starts) and, following, its transport.
    plan_of : the plan written for a bar, if any (the planner's): what a leader announces.
    """

    stage = Stage.PEERS
    name = "Link"

    def __init__(
        self,
        *,
        config: LinkConfig,
        engine: LinkEngine,
        plan_of: Callable[[int], Plan | None],
    ) -> None:
        self.config = config
        self.follow = config.follow
        self._engine = engine
        self._plan_of = plan_of
        self._link: Any = None
        self._announced: dict[int, float] = {}  # bar -> the tempo a leader wrote for it
        self._playing: bool | None = None  # what a leader last told the session
        self._trouble = RateLimitedLog(log)
        self.peers = 0
        self.corrections = 0  # times a leader moved the session's phase onto its own
        engine.set_bar_tempo(self._bar_tempo)

    # -- life cycle ----------------------------------------------------------------------

    def _attach(self, clock: MusicClock) -> None:
        clock.add_grid_listener(self._on_grid)

    async def start(self) -> None:
        """Join the session (a failure is logged; the music plays on without Link)."""
        try:
            import aalink

            link = aalink.Link(120.0)
            link.quantum = 4
            link.start_stop_sync_enabled = self.config.start_stop
            link.set_num_peers_callback(self._on_peers)
            if self.follow and self.config.start_stop:
                link.set_start_stop_callback(self._on_session_playing)
            link.enabled = True
        except Exception as exc:
            log.error("Link: could not join a session (%s); the music plays on without Link", exc)
            return
        self._link = link
        log.info(
            "Link: joined the session on the local network, %s",
            "following its tempo and bar lines" if self.follow else "leading its tempo and phase",
        )

    async def _aclose(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                link.enabled = False
            except Exception as exc:
                log.warning("Link: leaving the session failed (%s)", exc)

    # -- callbacks from aalink (on the event loop) -------------------------------------------

    def _on_peers(self, peers: int) -> None:
        alone, self.peers = self.peers == 0, int(peers)
        log.info("Link: %d other peer(s) in the session", self.peers)
        if alone and self.peers:
            # A play state set alone is lost when sessions meet: a leader tells it again at the
            # next bar line, now that it has company.
            self._playing = None

    def _on_session_playing(self, playing: bool) -> None:
        log.debug("Link: the session says playing=%s", playing)
        if self._link is None or self.peers == 0 or playing == self._engine.playing:
            return
        log.info(
            "Link: the session %s; the music %s at the next bar line",
            "plays" if playing else "stopped",
            "comes in" if playing else "stops",
        )
        self._engine.set_playing(bool(playing))

    # -- the engine's bars (audio thread) --------------------------------------------------

    def _bar_tempo(self, bar: int, audio_time: float, plan: Plan) -> float:
        """The tempo of ``bar``, asked as the engine starts it: the session's, bent onto its bar
        line, when following a session with peers or when leading and this bar was announced;
        else the plan's."""
        link = self._link
        if link is None or self._clock is None:
            return plan.bpm
        announced = self._announced.pop(bar, None)
        for old in [b for b in list(self._announced) if b < bar]:
            self._announced.pop(old, None)
        if self.follow:
            if link.quantum != plan.beats_per_bar:
                link.quantum = plan.beats_per_bar
            if self.peers == 0:
                return plan.bpm
        elif announced is None:
            return plan.bpm
        wall = self.clock.wall_time(audio_time)
        if wall is None:
            return plan.bpm
        now = time.perf_counter()
        beat, tempo = link.beat, link.tempo
        at_downbeat = beat + (wall - now) * tempo / 60.0
        return follow_tempo(
            beat_at_start=at_downbeat,
            beats=plan.beats_per_bar,
            tempo=tempo,
            quantum=plan.beats_per_bar,
            max_shift=MAX_SHIFT_BEATS,
        )

    def _on_grid(self, grid: BarGrid) -> None:
        if self._link is None or grid.patched_from is not None:
            return
        clock = self.clock
        if not self.follow:
            # The next bar's tempo and phase go into the session shortly before its bar line.
            lead = announce_lead(grid.bpm)
            clock.call_at(grid.end / grid.sample_rate - lead, lambda: self._announce(grid))
        if self.config.start_stop and not self.follow:
            playing = clock.playing
            clock.call_at(grid.start / grid.sample_rate, lambda: self._tell_playing(playing))

    # -- leading (the clock's thread) ------------------------------------------------------

    def _announce(self, grid: BarGrid) -> None:
        """Write the bar after ``grid`` into the session: its plan's tempo, with the session's
        bar line exactly on its downbeat."""
        link = self._link
        if link is None:
            return
        try:
            bar = grid.bar + 1
            plan = self._plan_of(bar)
            bpm = grid.bpm if plan is None else plan.bpm
            beats = grid.beats if plan is None else plan.beats_per_bar
            downbeat = self.clock.wall_time(grid.end / grid.sample_rate)
            if downbeat is None:
                return
            if link.quantum != beats:
                link.quantum = beats
            if abs(link.tempo - bpm) > 1e-9:
                link.tempo = bpm  # rebased at this moment: only the phase can be off now
            now = time.perf_counter()
            ahead = link.beat + (downbeat - now) * bpm / 60.0  # the session's beat there
            target = round(ahead / beats) * beats
            if abs(ahead - target) * 60.0 / bpm > PHASE_TOLERANCE_S:
                now = time.perf_counter()
                link.force_beat(target - (downbeat - now) * bpm / 60.0)
                self.corrections += 1
            self._announced[bar] = bpm
            log.debug("Link: bar %d announced at %.1f bpm, %.3f s ahead", bar, bpm, downbeat - now)
        except Exception as exc:
            self._trouble.warning("Link: writing bar %d into the session failed (%s)", bar, exc)

    def _tell_playing(self, playing: bool) -> None:
        link = self._link
        if link is None or playing == self._playing or self.peers == 0:
            return
        try:
            link.playing = playing
            self._playing = playing
        except Exception as exc:
            self._trouble.warning("Link: telling the session play/stop failed (%s)", exc)
