"""Ren'Py visual novels: "The Question" and the Ren'Py tutorial game (dialogue and menus).

Each run copies the game's folder (read-only under ``/usr/share/games/renpy``) to a work folder
and adds ``config/renpy/zz_moodscore_probe.rpy``, which makes Ren'Py write the screen it shows
(``main_menu``, ``preferences``, ``say``, ``choice``...) to a state log on every change; each
frame's label is that state (:data:`GAME` maps states to classes). The game is played from the
keyboard as a reader would: a dialogue line stays 1.5-4.5 s, choices are picked at random, the
main menu's and the game menu's screens (preferences, load, save, history, about, help) are
visited now and then. The window is sized through ``_preferences.physical_size`` (Ren'Py keeps
the game's 16:9 shape). Debian's Ren'Py 8.0.3 needs ``config/renpy/renpy_py311_shim.py`` to
run on Python 3.11.

    apt-get install renpy renpy-thequestion renpy-demo
    .venv/bin/python -m tools.record_games renpy [--clip question_1280x720 ...]
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .common import CONFIG_DIR, ClipPlan, Game, Session, game_session

GAME = Game(
    name="renpy",
    genre="visual novel",
    split="train",
    packages=("renpy", "renpy-thequestion", "renpy-demo"),
    states={
        "main_menu": "menu",
        "preferences": "menu",
        "save": "menu",
        "load": "menu",
        "history": "menu",
        "about": "menu",
        "help": "menu",
        "confirm": "menu",
        # The tutorial game's list of lessons (a scrolling menu of buttons).
        "tutorials": "menu",
        # A line of dialogue or narration in the text box.
        "say": "dialogue",
        # An in-story choice ("Sure" / "Not now"): part of the conversation, not a game menu.
        "choice": "dialogue",
        # A background or transition with no text on screen: not labelled.
        "scene": None,
    },
)

TITLES = {
    "question": Path("/usr/share/games/renpy/the_question"),
    "tutorial": Path("/usr/share/games/renpy/demo"),
}

PLANS = [
    ClipPlan("question_1280x720", 1280, 720, 330, seed=11, options={"title": "question"}),
    ClipPlan("question_800x450", 800, 450, 330, seed=12, options={"title": "question"}),
    ClipPlan("question_640x360", 640, 360, 240, seed=13, options={"title": "question"}),
    ClipPlan("tutorial_1280x720", 1280, 720, 300, seed=14, options={"title": "tutorial"}),
    ClipPlan("tutorial_960x540", 960, 540, 300, seed=15, options={"title": "tutorial"}),
]

_MENU_SCREENS = {"preferences", "save", "load", "history", "about", "help"}


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    """Record one clip; returns the finished session (its capture holds the frames)."""
    base = work / "game"
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree(TITLES[plan.options["title"]], base, symlinks=True)
    shutil.copy(CONFIG_DIR / "renpy" / "zz_moodscore_probe.rpy", base / "game")
    state_log = work / "state.log"
    state_log.unlink(missing_ok=True)
    argv = [
        "/usr/bin/python3",
        str(CONFIG_DIR / "renpy" / "renpy_py311_shim.py"),
        "/usr/games/renpy",
        str(base),
    ]
    env = {
        "MOODSCORE_STATE_LOG": str(state_log),
        "MOODSCORE_WINDOW": f"{plan.width}x{plan.height}",
    }
    with game_session(
        plan,
        argv=argv,
        window=r"The Question|Tutorial",
        work=work,
        home=home,
        screen=(plan.width + 64, plan.height + 64),
        env=env,
        state_log=state_log,
        settle_s=0.25,
        shots=shots,
    ) as session:
        _play(session)
        return session


def _play(s: Session) -> None:
    x, rng = s.xinput, s.rng
    # Wait for the main menu before the first frame is kept.
    deadline = time.monotonic() + 60
    s.capture.resume()
    while s.capture.state != "main_menu" and time.monotonic() < deadline:
        s.wait(0.5)
    x.focus()
    x.move(5, 5)
    menu_visits = 0
    since_game_menu = 0.0
    scene_since: float | None = None
    while not s.done():
        state = s.capture.state
        s.shot(state, every=6)
        if state == "main_menu":
            s.wait(rng.uniform(2, 5))
            if menu_visits < rng.choice([1, 2, 3]):
                menu_visits += 1
                # Start, Load, Preferences, About, Help, (Quit: never): Down k times.
                x.key(*["Down"] * rng.randint(2, 5))
                s.wait(0.4)
                x.key("Return")
                s.wait(1.0)
            else:
                menu_visits = 0
                x.key("Down")
                s.wait(0.4)
                x.key("Return")
                s.wait(1.5)
        elif state in _MENU_SCREENS:
            # Look around the screen a while: focus moves, pages of save slots.
            for _ in range(rng.randint(2, 6)):
                s.wait(rng.uniform(0.8, 2.5))
                x.key(rng.choice(["Down", "Up", "Right", "Left"]))
            s.wait(rng.uniform(1, 3))
            x.key("Escape")
            s.wait(1.0)
        elif state == "confirm":
            s.wait(rng.uniform(1, 2.5))
            x.key("Escape")
            s.wait(1.0)
        elif state == "tutorials":
            s.wait(rng.uniform(3, 7))
            x.key(*["Down"] * rng.randint(1, 14))
            s.wait(0.6)
            x.key("Return")
            s.wait(1.0)
        elif state == "choice":
            s.wait(rng.uniform(1.5, 3.5))
            x.key(*["Down"] * rng.randint(1, 3))
            s.wait(0.5)
            x.key("Return")
            s.wait(0.8)
        elif state == "say":
            scene_since = None
            s.wait(rng.uniform(1.5, 4.5))
            if s.recorded_s() - since_game_menu > 40 and rng.random() < 0.06:
                since_game_menu = s.recorded_s()
                x.key("Escape")  # the game menu (its save screen)
                s.wait(1.2)
            else:
                x.key(rng.choice(["Return", "space", "Return"]))
        else:
            # A bare scene or a transition: it passes by itself or after a key.
            now = time.monotonic()
            scene_since = scene_since or now
            s.wait(0.5)
            if now - scene_since > 4:
                x.key("Return")
                scene_since = None
