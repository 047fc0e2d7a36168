"""OpenArena (ioquake3): bot deathmatches, walks through empty maps, and the menus.

Three kinds of clip, each labelled by what the recorder set up:

- **deathmatch** (``combat``): five skill-3 bots fight on a map with no frag or time limit; the
  recorder joins as a spectator and follows one bot after another (``follow N``), so the view is
  a bot's first-person view with its HUD. Frames from 1.5 s before to 2.5 s after the followed
  bot is hit (``g_debugDamage``), kills or dies are ``combat`` (``dm_fight``); the rest of the
  match (``dm_roam``: running between fights, maybe nobody in sight) is left unlabelled. Every
  minute or so the recorder opens the in-game menu (Escape) for a few seconds (``menu``).
  Cues per frame: damage to the followed bot, its frags and deaths, kills anywhere; arousal
  rises with recent damage and frags, valence falls with damage and deaths.
- **walk** (``exploration``): the same maps with no bot at all; the recorder walks (arrow keys,
  jumps, turns at random), so nothing on screen is an enemy.
- **menus** (``menu``): the main menu and its screens (multiplayer, setup and its pages, demos,
  statistics, mods), entered and left from the keyboard; nothing starts a game.

The screen size is set with ``r_mode -1`` and ``r_customwidth``/``r_customheight``; the HUD is
on, off (``cg_draw2D 0``) or the view shrunk (``cg_viewsize``). Settings are in
``config/openarena/moodscore.cfg`` (copied into the private home, ``exec``'d at start).

    apt-get install openarena
    .venv/bin/python -m tools.record_games openarena [--clip dm_oa_dm2_800x600 ...]
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import CONFIG_DIR, ClipPlan, Game, Session, around, default_targets, game_session

BOTS = ("sarge", "grism", "kyonshi", "major", "tony", "angelyss", "gargoyle", "liz")


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A deathmatch frame is a fight from 1.5 s before to 2.5 s after the followed bot is hit,
    kills or dies; otherwise it is roaming (not labelled: nobody may be in sight)."""
    n = len(states)
    zero = np.zeros(n, dtype=np.float32)
    hurt = np.nan_to_num(cues.get("followed_hurt", zero))
    frags = np.nan_to_num(cues.get("followed_frags", zero))
    deaths = np.nan_to_num(cues.get("followed_deaths", zero))
    engaged = around((hurt > 0) + frags + deaths, before_s=1.5, after_s=2.5) > 0
    # After the followed bot dies the spectator sees the scoreboard until it respawns.
    dead = around(deaths, before_s=0.0, after_s=3.5) > 0
    hurt_recent = around(hurt, before_s=0.0, after_s=3.0)
    deaths_recent = around(deaths, before_s=0.0, after_s=3.0)
    frags_recent = around(frags, before_s=0.0, after_s=3.0)
    out = list(states)
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "deathmatch":
            out[i] = "dm_dead" if dead[i] else "dm_fight" if engaged[i] else "dm_roam"
            pain = min(1.0, float(hurt_recent[i]) / 60.0)
            arousal[i] = min(1.0, 0.3 + 0.5 * pain + 0.2 * min(1.0, float(frags_recent[i])))
            valence[i] = float(
                np.clip(
                    -0.1
                    - 0.4 * pain
                    - 0.3 * min(1.0, float(deaths_recent[i]))
                    + 0.2 * min(1.0, float(frags_recent[i])),
                    -1.0,
                    1.0,
                )
            )
        elif state == "walk":
            arousal[i], valence[i] = -0.6, 0.35
    return out, arousal, valence


GAME = Game(
    name="openarena",
    genre="first-person shooter",
    split="train",
    packages=("openarena",),
    states={
        "dm_fight": "combat",
        "dm_roam": None,
        # The followed bot's death: the scoreboard until it respawns.
        "dm_dead": None,
        "walk": "exploration",
        "main_menu": "menu",
        "submenu": "menu",
        "ingame_menu": "menu",
        "dead": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan("menus_800x600", 800, 600, 150, seed=21, options={"kind": "menus"}),
    ClipPlan("menus_1280x720", 1280, 720, 120, seed=22, options={"kind": "menus"}),
    ClipPlan("dm_oa_dm2_800x600", 800, 600, 270, 23, options={"kind": "dm", "map": "oa_dm2"}),
    ClipPlan("dm_oa_dm4_640x480", 640, 480, 270, 24, options={"kind": "dm", "map": "oa_dm4"}),
    ClipPlan(
        "dm_q3dm6ish_854x480_nohud",
        854,
        480,
        240,
        25,
        hud="off",
        options={"kind": "dm", "map": "q3dm6ish"},
    ),
    ClipPlan(
        "dm_aggressor_800x600_small",
        800,
        600,
        210,
        26,
        hud="view shrunk (cg_viewsize 80)",
        options={"kind": "dm", "map": "aggressor", "viewsize": 80},
    ),
    ClipPlan("walk_oa_dm7_800x600", 800, 600, 180, 27, options={"kind": "walk", "map": "oa_dm7"}),
    ClipPlan(
        "walk_oasago2_640x480_nohud",
        640,
        480,
        150,
        28,
        hud="off",
        options={"kind": "walk", "map": "oasago2"},
    ),
    ClipPlan("walk_kaos2_854x480", 854, 480, 150, 29, options={"kind": "walk", "map": "kaos2"}),
]

_KILL = re.compile(r"Kill: (\d+) (\d+) \d+:")
_DAMAGE = re.compile(r"client:(\d+) health:-?\d+ damage:(\d+)")


class _Tail:
    """New whole lines of a growing file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def __call__(self) -> str:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return ""
        cut = chunk.rfind(b"\n") + 1
        self._offset += cut
        return chunk[:cut].decode(errors="replace")


class _ServerLog:
    """Per frame, what happened since the last grab: kills (``games.log``) and damage (the
    ``g_debugDamage`` lines on the game's output), for the followed client and anyone."""

    def __init__(self, kills_log: Path, console_log: Path) -> None:
        self.followed = -1
        # Deaths of the followed client (the player himself on a walk) since the start.
        self.deaths = 0
        self._kills = _Tail(kills_log)
        self._console = _Tail(console_log)

    def __call__(self) -> dict[str, float]:
        f = self.followed
        cues = {"followed_hurt": 0.0, "followed_frags": 0.0, "followed_deaths": 0.0}
        cues["kills_any"] = 0.0
        for match in _KILL.finditer(self._kills()):
            killer, victim = int(match.group(1)), int(match.group(2))
            cues["kills_any"] += 1
            cues["followed_frags"] += killer == f and victim != f
            cues["followed_deaths"] += victim == f
            self.deaths += victim == f
        for match in _DAMAGE.finditer(self._console()):
            if int(match.group(1)) == f:
                cues["followed_hurt"] += float(match.group(2))
        cues["followed"] = float(f)
        return cues


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    base = home / ".openarena" / "baseoa"
    base.mkdir(parents=True, exist_ok=True)
    shutil.copy(CONFIG_DIR / "openarena" / "moodscore.cfg", base / "moodscore.cfg")
    kind = plan.options["kind"]
    argv = [
        "/usr/games/openarena",
        "+exec",
        "moodscore.cfg",
        "+set",
        "r_customwidth",
        str(plan.width),
        "+set",
        "r_customheight",
        str(plan.height),
        "+set",
        "cg_draw2D",
        "0" if plan.hud == "off" else "1",
        "+set",
        "cg_viewsize",
        str(plan.options.get("viewsize", 100)),
    ]
    if kind != "menus":
        argv += ["+set", "g_gametype", "0", "+map", str(plan.options["map"])]
        if kind == "dm":
            bots = list(BOTS)
            # Bot order (and so the client numbers followed) depends on the seed only.
            random.Random(plan.seed).shuffle(bots)
            for bot in bots[:5]:
                argv += ["+addbot", bot, "3"]
    kills = _ServerLog(base / "games.log", work / "game.log")
    with game_session(
        plan,
        argv=argv,
        window=r"ioquake3|OpenArena",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.5,
        shots=shots,
        cue_probe=kills if kind != "menus" else None,
    ) as session:
        session.xinput.focus()
        if kind == "menus":
            _menus(session)
        else:
            _wait_for_map(session)
            if kind == "dm":
                _deathmatch(session, kills)
            else:
                kills.followed = 0
                _walk(session, kills)
        return session


def _wait_for_map(s: Session) -> None:
    # The client prints this once its first frame of the map is up (bots print theirs earlier).
    s.wait_log("UnnamedPlayer^7 entered the game", timeout_s=120)
    # The loading screen stays up a little longer while llvmpipe compiles the first frame.
    s.wait_change(threshold=10.0, timeout_s=30.0)
    s.wait(1.0)


def _menus(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait(8.0)  # the engine starts, the menu music would start
    s.state("main_menu")
    s.capture.resume()
    # Main menu entries, top to bottom; 0 (single player) would start games, 7 (exit) quits.
    safe = [1, 2, 3, 4, 6]
    focus = 0
    while not s.done():
        s.wait(rng.uniform(2.0, 5.0))
        target = rng.choice(safe)
        step = "Down" if target > focus else "Up"
        for _ in range(abs(target - focus)):
            x.key(step)
            s.wait(rng.uniform(0.2, 0.6))
        focus = target
        s.wait(rng.uniform(0.5, 1.5))
        x.key("Return")
        s.state("submenu")
        s.shot("submenu", every=2)
        # Look around the screen (focus moves only: left/right would change settings).
        for _ in range(rng.randint(2, 6)):
            s.wait(rng.uniform(0.8, 2.5))
            x.key(rng.choice(["Down", "Up", "Down"]))
        s.wait(rng.uniform(1.0, 3.0))
        x.key("Escape")
        s.state("main_menu")
        s.shot("main_menu", every=3)


def _follow(s: Session, kills: _ServerLog, client: int) -> None:
    # F6..F10 are bound to "follow 1".."follow 5" in moodscore.cfg.
    s.xinput.key(f"F{5 + client}")
    kills.followed = client


def _deathmatch(s: Session, kills: _ServerLog) -> None:
    x, rng = s.xinput, s.rng
    x.key("F5")  # team spectator
    s.wait(1.5)
    _follow(s, kills, rng.randint(1, 5))
    s.wait(1.0)
    s.state("deathmatch")
    s.capture.resume()
    next_switch = s.recorded_s() + rng.uniform(15, 35)
    next_menu = s.recorded_s() + rng.uniform(40, 80)
    while not s.done():
        s.wait(0.5)
        s.shot("deathmatch", every=40)
        if s.recorded_s() >= next_switch:
            _follow(s, kills, rng.randint(1, 5))
            next_switch = s.recorded_s() + rng.uniform(15, 35)
        if s.recorded_s() >= next_menu:
            x.key("Escape")
            s.state("ingame_menu")
            s.wait(1.0)
            s.shot("ingame_menu")
            for _ in range(rng.randint(1, 4)):
                s.wait(rng.uniform(0.8, 2.0))
                x.key(rng.choice(["Down", "Up"]))
            s.wait(rng.uniform(1.0, 3.0))
            x.key("Escape")
            s.state("deathmatch")
            next_menu = s.recorded_s() + rng.uniform(40, 80)


def _walk(s: Session, kills: _ServerLog) -> None:
    x, rng = s.xinput, s.rng
    s.state("walk")
    s.capture.resume()
    s.wait(1.0)
    deaths = 0
    while not s.done():
        s.shot("walk", every=25)
        if kills.deaths > deaths:
            # Lava, a fall, drowning: the death view is not exploration; respawn (attack key).
            deaths = kills.deaths
            s.state("dead")
            s.wait(2.0)
            x.key("ctrl")
            s.wait(0.5)
            s.state("walk")
        before = s.capture.latest()
        action = rng.random()
        if action < 0.6:
            keys = ["Up"] + (["space"] if rng.random() < 0.2 else [])
            x.hold(keys, rng.uniform(1.0, 3.0))
            if not s.moved(before):
                # Against a wall: turn most of the way round (yaw speed is 140 degrees/s).
                x.hold([rng.choice(["Left", "Right"])], rng.uniform(0.9, 1.4))
        elif action < 0.9:
            x.hold(["Up", rng.choice(["Left", "Right"])], rng.uniform(0.3, 1.0))
        else:
            x.hold([rng.choice(["Left", "Right"])], rng.uniform(0.4, 1.2))
        s.check_alive()
