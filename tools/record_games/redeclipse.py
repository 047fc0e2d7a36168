"""Red Eclipse (held out for validation): bot deathmatches seen through SpecTV, and its menus.

The recorder starts the game on its main menu (``showgui main``), looks around it and the
options and help menus (keys bound on the command line to ``showgui ...``; ``menu``), then
runs ``start MAP $modeidxdeathmatch 0`` (also a bound key). Offline, a deathmatch fills up with
bots and the local player spectates with SpecTV, a camera that cuts to where the fighting is;
from the game's "match start, fight!" on, the match is ``combat`` (a match-level label: SpecTV
rarely shows a quiet moment, but the label does not check each frame). Every minute or so a
menu is opened over the match for a few seconds (``menu``). The console line and the loading
screen are not labelled.

The two held-out clips play the match at a fifth of the game's speed (``sv_gamespeed 20``, the
plan option ``gamespeed``) and grab at the matching slower wall rate (8 x 20 % = 1.6 grabs a
second), so each stored frame is still 1/8 s of game time. Mesa's software renderer draws about
1.5 pictures a wall second at 800x600 on an idle two-core box: at full speed 82-86 % of the
match grabs repeated the last picture and play looked like a slideshow, which is what a menu
or a dialogue looks like. Slow motion only helps while the game gets the CPU (a 320x240 trial
at 10 % on the box at load 8-16 still repeated 70 %): record on an otherwise idle machine.
Menus are looked at in wall time (8 grabs a second). The share of repeated grabs per class is
in each clip's ``meta.repeated_share_by_class``.

A menu key's frames are labelled only once the game has drawn two new pictures after it
(``opening``/``closing`` until then, not labelled). Until 12-05 the label changed with the key,
and on the slow renderer the next picture was often seconds away: the clips then committed
labelled whole stretches of match "menu" (their contact sheet showed it).

    apt-get install redeclipse
    .venv/bin/python -m tools.record_games redeclipse [--clip match_bath_800x600 ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from models.scene_data import MODEL_FPS

from .common import ClipPlan, Game, Session, default_targets, game_session


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "match":
            arousal[i], valence[i] = 0.5, -0.1
    return states, arousal, valence


GAME = Game(
    name="redeclipse",
    genre="first-person shooter",
    split="val",
    packages=("redeclipse",),
    states={
        "match": "combat",
        "main_menu": "menu",
        "options": "menu",
        "help": "menu",
        "console": None,
        "loading": None,
        # a key was pressed and the game has not drawn its answer yet (see _press)
        "opening": None,
        "closing": None,
    },
    annotate=_annotate,
)

# The game's own speed, and the ``_slow`` trials' 10 % (see the module docstring).
GAME_SPEED = 100
SLOW_SPEED = 10
# The held-out clips since 12-05: on an idle two-core box Mesa draws about 1.5 pictures a wall
# second at 800x600, so a fifth of the game's speed (1.6 grabs a wall second) shows nearly
# every game-time frame as a new picture.
MOTION_SPEED = 20

PLANS = [
    ClipPlan(
        "match_bath_800x600", 800, 600, 240, 91, options={"map": "bath", "gamespeed": MOTION_SPEED}
    ),
    ClipPlan(
        "match_bloodlust_1024x576",
        1024,
        576,
        240,
        92,
        options={"map": "bloodlust", "gamespeed": MOTION_SPEED},
    ),
    ClipPlan(
        "match_deadsimple_640x480_smallhud",
        640,
        480,
        210,
        93,
        hud="HUD at 60 % size (hudsize)",
        options={"map": "deadsimple", "hudsize": 1200},
    ),
    ClipPlan(
        "match_bath_512x384_slow",
        512,
        384,
        150,
        94,
        options={"map": "bath", "gamespeed": SLOW_SPEED},
    ),
    ClipPlan(
        "match_bloodlust_640x360_slow",
        640,
        360,
        150,
        95,
        options={"map": "bloodlust", "gamespeed": SLOW_SPEED},
    ),
]

# F1 is the game's own help key before a match but not while spectating one, so help has a
# bound key of its own like the others.
_MENUS = {"main_menu": "F6", "help": "F5", "options": "F8"}


def _press(s: Session, key: str, state: str) -> None:
    """Press ``key`` and label the frames ``state`` once the game has drawn what it opened.

    Until 12-05 the label changed with the key, and on the slow renderer the next picture was
    often seconds away: the committed clips labelled whole stretches of match "menu"."""
    s.state("opening")
    s.xinput.key(key)
    s.wait_drawn()
    s.state(state)


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    # Keys bound on the command line, not text typed into the console: on a loaded machine the
    # game drops typed characters ("unknown command: rt").
    speed = int(plan.options.get("gamespeed", GAME_SPEED))
    setup = (
        "name watcher; bind F6 [showgui main]; bind F7 [cleargui]; bind F8 [showgui options]; "
        "bind F5 [showgui help]; "
        f"bind F9 [start {plan.options['map']} $modeidxdeathmatch 0]; "
        f"bind F10 [sv_gamespeed {speed}]"
    )
    if "hudsize" in plan.options:
        setup += f"; hudsize {plan.options['hudsize']}"
    argv = [
        "/usr/games/redeclipse",
        f"-h{home / 'redeclipse'}",
        "-df0",
        f"-dw{plan.width}",
        f"-dh{plan.height}",
        "-g",
        f"-x{setup}; cleargui; showgui main",
    ]
    with game_session(
        plan,
        argv=argv,
        window=r"Red Eclipse",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.5,
        shots=shots,
    ) as session:
        _play(session)
        return session


def _look_at_menu(s: Session, menu: str, *, play_fps: float | None = None) -> None:
    x, rng = s.xinput, s.rng
    s.capture.set_rate(MODEL_FPS)
    _press(s, _MENUS[menu], menu)
    s.wait(1.0)
    s.shot(menu)
    for _ in range(rng.randint(2, 5)):
        s.wait(rng.uniform(0.8, 2.0))
        x.move(rng.randint(s.plan.width // 5, s.plan.width * 4 // 5), rng.randint(100, 400))
    s.wait(rng.uniform(0.5, 1.5))
    s.state("closing")
    x.key("F7")
    if play_fps is not None:
        s.capture.set_rate(play_fps)
    s.wait_drawn()


def _play(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait_log("loading main..", timeout_s=120)
    s.wait(8.0)
    s.state("main_menu")
    s.capture.resume()
    for menu in ["main_menu", rng.choice(["help", "options"]), "main_menu"]:
        _look_at_menu(s, menu)
        _press(s, "F6", "main_menu")
    s.wait(1.0)
    x.key("F7")
    s.state("console")
    x.key("F9")
    s.capture.pause()
    s.wait_log("match start, fight!", timeout_s=300, then_s=2.0)
    speed = int(s.plan.options.get("gamespeed", GAME_SPEED))
    play_fps = MODEL_FPS * speed / 100
    x.key("F10")
    s.wait(2.0)
    s.state("match")
    s.capture.set_rate(play_fps)
    s.capture.resume()
    menu_at = s.recorded_s() + rng.uniform(40, 70)
    while not s.done():
        s.wait(0.5)
        s.shot("match", every=40)
        if s.recorded_s() >= menu_at:
            _look_at_menu(s, rng.choice(list(_MENUS)), play_fps=play_fps)
            s.state("match")
            menu_at = s.recorded_s() + rng.uniform(40, 70)
