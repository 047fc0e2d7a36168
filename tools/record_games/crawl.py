"""Dungeon Crawl Stone Soup (tiles): top-down dungeon exploration and the game's menus.

- **explore** clips (mostly ``exploration``): a new character (species, background and dungeon
  seed per clip, given on the command line, so the dungeon is the same on every run) walks the
  dungeon with auto-explore (``o``); when a level is explored it travels to the next one with
  ``G >``. Now and then, while no monster is in view, it opens one of the game's screens for a
  few seconds (``menu``): inventory ``i``, skills ``m``, character overview ``%``, help ``?``.
- **menus** clips (mostly ``menu``): the main menu, the species and background choosers
  browsed with the arrow keys (Escape in the background chooser goes back to the main menu),
  then a game started from them and its screens as above, with short explore walks between.

Labels come from the game: a Lua ``ready()`` hook in the init file (``config/crawl/init.txt``)
writes one line to stderr each time the game waits for a command, saying whether the player
feels safe (no hostile monster in view), the hit points, the depth and the turn count. The
recorder reads these lines from the game's log and acts on them: with a monster in view it
auto-fights (Tab) and those frames are **not labelled** (``fight``): whether a monster is
on screen before the hook has said so cannot be told, so :func:`_annotate` also leaves the
second of walking before each fight unlabelled. No frame is labelled ``combat``. Resting
(``5``) to heal after a fight is unlabelled too, and so is the start of a game (the splash
screen, a weapon chooser, entering explore mode). Games run in explore mode (``+``, "yes"):
a death asks "Die?" and the recorder answers no (those frames are unlabelled), so a run never
ends on the death screens. A screen counts as a menu only if the picture changed clearly when
its key was pressed. (The religion ``^`` and abilities ``A`` screens were dropped: for a
character without a god or abilities they only print a message, and a first recording
labelled that as a menu.)

Options (``config/crawl/init.txt`` plus the window size): a window as big as the screen, no
``--more--`` prompts, autofight down to the last hit point, a visible delay per travel step,
Fighters take a war axe, and a Lua ``choose_stat_gain()`` answers the level-up stat question.

    apt-get install crawl-tiles
    .venv/bin/python -m tools.record_games crawl [--clip explore_minotaur_1024x768 ...]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.scene_data import MODEL_FPS

from .common import CONFIG_DIR, ClipPlan, Game, Session, default_targets, game_session

_WALKS = ("explore", "travel")
# Walking frames this long before a monster is reported are not labelled.
_BEFORE_FIGHT_S = 1.0


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    states = list(states)
    back = round(_BEFORE_FIGHT_S * MODEL_FPS)
    for i, state in enumerate(states):
        if state == "fight":
            for j in range(max(0, i - back), i):
                if states[j] in _WALKS:
                    states[j] = "settle"
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state in _WALKS:
            arousal[i], valence[i] = -0.6, 0.35
    return states, arousal, valence


GAME = Game(
    name="crawl",
    genre="roguelike dungeon crawler",
    split="train",
    packages=("crawl-tiles",),
    states={
        "explore": "exploration",
        "travel": "exploration",
        "main_menu": "menu",
        "species": "menu",
        "background": "menu",
        "inventory": "menu",
        "skills": "menu",
        "overview": "menu",
        "help": "menu",
        "fight": None,
        "rest": None,
        "ending": None,
        "loading": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan(
        "explore_minotaur_1024x768",
        1024,
        768,
        180,
        61,
        options={"kind": "explore", "species": "Minotaur", "background": "Fighter", "seed": 61},
    ),
    ClipPlan(
        "explore_ogre_800x600",
        800,
        600,
        170,
        62,
        options={"kind": "explore", "species": "Ogre", "background": "Berserker", "seed": 62},
    ),
    ClipPlan(
        "explore_troll_1280x720",
        1280,
        720,
        160,
        63,
        options={"kind": "explore", "species": "Troll", "background": "Fighter", "seed": 63},
    ),
    ClipPlan("menus_1024x768", 1024, 768, 160, 64, options={"kind": "menus", "seed": 64}),
]

# In-game screens: state -> key (xdotool key names).
_SCREENS = {
    "inventory": "i",
    "skills": "m",
    "overview": "percent",
    "help": "question",
}
_STATUS = re.compile(r"^MOODSCORE (\d+) (safe|danger) (-?\d+) (\d+) (\d+) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Status:
    """What the game's ``ready()`` hook said the last time it waited for a command."""

    count: int
    safe: bool
    hp: int
    max_hp: int
    depth: int
    turns: int


def _write_options(home: Path, plan: ClipPlan) -> Path:
    rc = home / "init.txt"
    text = (CONFIG_DIR / "crawl" / "init.txt").read_text()
    text += f"tile_window_width = {plan.width}\ntile_window_height = {plan.height}\n"
    rc.write_text(text)
    return rc


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    rc = _write_options(home, plan)
    argv = ["/usr/games/crawl-tiles", "-rc", str(rc), "-dir", str(home / "crawl")]
    # Explore mode: the character cannot die (fights are part of the walk, not its end).
    argv += ["-explore", "-seed", str(plan.options["seed"])]
    if plan.options["kind"] == "explore":
        argv += ["-name", "Explorer", "-species", plan.options["species"]]
        argv += ["-background", plan.options["background"]]
    with game_session(
        plan,
        argv=argv,
        window=r"Dungeon Crawl",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.4,
        shots=shots,
    ) as session:
        if plan.options["kind"] == "explore":
            _explore_clip(session)
        else:
            _menus_clip(session)
        return session


# ------------------------------------------------------------------------------------------
# The game's own report


def _status(s: Session) -> Status | None:
    found = _STATUS.findall(s.process.log_text())
    if not found:
        return None
    count, safe, hp, max_hp, depth, turns = found[-1]
    return Status(int(count), safe == "safe", int(hp), int(max_hp), int(depth), int(turns))


def _wait_status(s: Session, after: int, timeout_s: float) -> Status | None:
    """The first report numbered above ``after``, or None if none came within ``timeout_s``."""
    waited = 0.0
    while waited < timeout_s:
        status = _status(s)
        if status is not None and status.count > after:
            return status
        s.wait(0.1)
        waited += 0.1
    return None


def _act(s: Session, *keys: str, timeout_s: float = 60.0) -> Status | None:
    """Press ``keys`` and wait until the game asks for the next command."""
    before = _status(s)
    s.xinput.key(*keys)
    return _wait_status(s, before.count if before else 0, timeout_s)


def _start_game(s: Session) -> Status:
    """From the splash screen (and the weapon chooser some backgrounds show) to the first
    command, then into explore mode; not labelled (the splash is no menu)."""
    s.state("loading")
    for _ in range(20):
        s.shot("splash")
        status = _act(s, "Return", timeout_s=3.0)
        if status is not None:
            return _explore_mode(s)
    raise RuntimeError("crawl never started a game (no report from its ready() hook)")


def _explore_mode(s: Session) -> Status:
    """Enter explore mode (``+``, confirmed with "yes"): death asks first, and is refused."""
    s.state("loading", settle_s=0.0)
    s.xinput.key("plus")
    s.wait(1.0)
    s.xinput.type_text("yes")
    status = _act(s, "Return", timeout_s=10.0)
    if status is None:
        raise RuntimeError("crawl did not take explore mode")
    s.wait(0.5)
    return status


class _Stuck(Exception):
    """The game waits for an answer the recorder does not know: the clip ends there."""


def _refuse_death(s: Session) -> Status:
    """Past "You die... --more--" and "Die?" (answered no); the new level's question which
    stat to raise is answered by the init file's ``choose_stat_gain()``."""
    s.state("ending", settle_s=0.0)
    s.shot("ending")
    for attempt in range(12):
        status = _act(s, "n" if attempt % 2 == 0 else "Escape", timeout_s=2.0)
        if status is not None:
            return status
    raise _Stuck("crawl waits for something after a fight; see the ending shots")


# ------------------------------------------------------------------------------------------
# Playing


def _screen(s: Session, name: str) -> None:
    """Open one of the game's screens, look about it a little, and close it."""
    x, rng = s.xinput, s.rng
    before = s.capture.latest()
    s.state("loading", settle_s=0.0)
    x.key(_SCREENS[name])
    # (Crawl draws only when something changes: waiting for two new pictures would time out.)
    s.wait(0.8)
    # A screen darkens the whole map behind it (a mean change of 8-9 in the 96x72 grab); a
    # message line alone changes about half as much.
    if s.moved(before, threshold=6.5):
        s.state(name, settle_s=0.0)
        s.wait(rng.uniform(1.5, 3.0))
        s.shot(name)
        for _ in range(rng.randint(0, 3)):
            # Up and down move the selection only (letters would toggle skills or open items).
            x.key(rng.choice(["Down", "Down", "Up"]))
            s.wait(rng.uniform(0.8, 2.0))
        s.shot(name)
    _close(s)


def _close(s: Session) -> None:
    """Escape until the game asks for a command again (help may be a page deep)."""
    s.state("loading", settle_s=0.0)
    for _ in range(4):
        if _act(s, "Escape", timeout_s=1.5) is not None:
            break
    s.wait(0.3)


def _fight(s: Session, status: Status) -> Status:
    """Auto-fight (not labelled) while a monster is in view; rest afterwards if hurt."""
    tries = 0
    while not status.safe and not s.done():
        s.state("fight", settle_s=0.0)
        s.shot("fight", every=10)
        tries += 1
        # Tab does nothing when no monster can be reached (one across water): wait a turn.
        nxt = _act(s, "Tab" if tries % 6 else "s", timeout_s=6.0)
        if nxt is None:
            return _refuse_death(s)
        status = nxt
        s.wait(0.2)
    if status.safe and status.hp * 10 < status.max_hp * 7:
        s.state("rest", settle_s=0.0)
        nxt = _act(s, "5", timeout_s=60.0)
        status = nxt if nxt is not None else _refuse_death(s)
    return status


def _explore(s: Session, status: Status, seconds: float) -> Status:
    """Auto-explore (and travel down when a level is done) for about ``seconds``."""
    end = s.recorded_s() + seconds
    stuck = 0
    while s.recorded_s() < end and not s.done():
        if not status.safe:
            status = _fight(s, status)
            continue
        s.state("explore")
        nxt = _act(s, "o")
        if nxt is None:
            status = _refuse_death(s)
            continue
        s.shot("explore", every=6)
        if nxt.safe and nxt.turns == status.turns:
            # Explored: travel to the next level down (through the stairs).
            s.state("travel")
            s.xinput.key("G")
            s.wait(0.5)
            after = _act(s, "greater")
            s.shot("travel", every=2)
            if after is None:
                status = _refuse_death(s)
                continue
            stuck = stuck + 1 if after.turns == nxt.turns else 0
            if stuck >= 3:
                raise RuntimeError("crawl neither explores nor travels down; the clip stops here")
            nxt = after
        status = nxt
    return status


def _explore_clip(s: Session) -> None:
    rng = s.rng
    s.wait(2.0)
    s.capture.resume()
    status = _start_game(s)
    s.wait(1.0)
    try:
        while not s.done():
            status = _explore(s, status, rng.uniform(20, 40))
            if status.safe and not s.done():
                _screen(s, rng.choice(list(_SCREENS)))
                status = _status(s) or status
    except _Stuck as exc:
        print(f"crawl/{s.plan.name}: {exc}; the clip ends here")


def _menus_clip(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.state("loading")
    s.capture.resume()
    # "Loading maps...", then "Loading complete, press any key" on the same splash (not
    # labelled): Return until the main menu replaces the splash.
    s.wait(3.0)
    splash = s.capture.latest()
    # (One Return at a time, given time to take effect: a second one would start a game.)
    for _ in range(20):
        s.xinput.key("Return")
        if s.wait_change(before=splash, threshold=8.0, timeout_s=6.0):
            break
    else:
        raise RuntimeError("crawl's main menu never came up")
    s.wait(0.5)
    s.state("main_menu")
    # Browse the choosers a few times: Escape in the background chooser goes back to the main
    # menu (with the name field emptied).
    for _ in range(2):
        _name(s)
        _press(s, "Return", "species")
        _browse(s, "species")
        _press(s, "Return", "background")
        _browse(s, "background")
        _press(s, "Escape", "main_menu")
    _name(s)
    _press(s, "Return", "species")
    _browse(s, "species")
    _press(s, "Return", "background")
    _browse(s, "background")
    x.key("Return")
    s.state("loading")
    # Some backgrounds ask for a weapon first (_start_game takes the first one).
    status = _explore_mode(s) if _wait_status(s, 0, 10.0) else _start_game(s)
    names = list(_SCREENS)
    rng.shuffle(names)
    try:
        while not s.done():
            for name in names:
                if s.done():
                    break
                status = _status(s) or status
                if not status.safe:
                    status = _fight(s, status)
                    continue
                _screen(s, name)
                status = _explore(s, _status(s) or status, rng.uniform(6, 12))
    except _Stuck as exc:
        print(f"crawl/{s.plan.name}: {exc}; the clip ends here")


def _name(s: Session) -> None:
    """On the main menu: look about its choices, type the name, back to "Dungeon Crawl"."""
    x, rng = s.xinput, s.rng
    s.wait(rng.uniform(1.5, 3.0))
    for _ in range(rng.randint(1, 3)):
        x.key(rng.choice(["Down", "Up"]))
        s.wait(rng.uniform(0.8, 1.6))
    s.shot("main_menu")
    x.key(*["BackSpace"] * 10)
    x.type_text("Chooser")
    x.key("Home")
    s.wait(rng.uniform(0.8, 1.5))


def _press(s: Session, key: str, state: str) -> None:
    """Press ``key``, which leads to ``state``: labelled once the picture has changed."""
    before = s.capture.latest()
    s.state("loading", settle_s=0.0)
    s.xinput.key(key)
    s.wait(0.8)
    if not s.moved(before, threshold=3.0) and not s.wait_change(threshold=3.0, timeout_s=5.0):
        raise RuntimeError(f"{key} did not lead to the {state} screen")
    s.state(state)


def _browse(s: Session, name: str) -> None:
    x, rng = s.xinput, s.rng
    s.wait(rng.uniform(1.5, 2.5))
    for _ in range(rng.randint(3, 7)):
        x.key(rng.choice(["Down", "Down", "Right", "Up", "Left"]))
        s.wait(rng.uniform(0.7, 1.6))
    s.shot(name)
