"""SuperTuxKart: AI-driven races and lone laps (exploration) and the menus.

- **race** (``exploration``): ``--profile-laps`` makes the game drive every kart, the player's
  included, and follow it with the normal race camera and HUD; 4-6 karts race a track. A kart
  race is gameplay without fighting (items are thrown, but nobody is hunted), so it is
  exploration; its arousal target is higher than a lone lap's.
- **lap** (``exploration``): the same with one kart alone on the track.
- **menus** (``menu``): the main menu, kart and track selection, options, help, the achievements
  and "about" screens, opened by clicks (positions are fractions of the window, checked on
  screenshots at each size) and left with Escape; nothing starts a race.

A race or lap starts after the loading screen gives way (the picture changes) and ends when the
game quits by itself at the end of the profiled laps. Settings (no sound, no texture
compression and simpler lighting for llvmpipe, no internet question, one local player) are in
``config/supertuxkart/`` and copied into the private home.

    apt-get install supertuxkart
    .venv/bin/python -m tools.record_games supertuxkart [--clip race_cocoa_temple_800x600 ...]
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import CONFIG_DIR, ClipPlan, Game, Session, default_targets, game_session


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "race":
            arousal[i], valence[i] = 0.3, 0.3
        elif state == "lap":
            arousal[i], valence[i] = -0.2, 0.3
    return states, arousal, valence


GAME = Game(
    name="supertuxkart",
    genre="kart racing",
    split="train",
    packages=("supertuxkart",),
    states={
        "race": "exploration",
        "lap": "exploration",
        "main_menu": "menu",
        "dialog": "menu",
        "kart_select": "menu",
        "track_select": "menu",
        "options": "menu",
        "help": "menu",
        "about": "menu",
        "achievements": "menu",
        "loading": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan("menus_800x600", 800, 600, 150, 31, options={"kind": "menus"}),
    ClipPlan("menus_1024x576", 1024, 576, 120, 32, options={"kind": "menus"}),
    ClipPlan(
        "race_cocoa_temple_800x600",
        800,
        600,
        240,
        33,
        options={"kind": "race", "track": "cocoa_temple", "karts": 5, "laps": 2},
    ),
    ClipPlan(
        "race_lighthouse_640x480",
        640,
        480,
        240,
        34,
        options={"kind": "race", "track": "lighthouse", "karts": 6, "laps": 3},
    ),
    ClipPlan(
        "race_zengarden_854x480",
        854,
        480,
        240,
        35,
        options={"kind": "race", "track": "zengarden", "karts": 4, "laps": 3},
    ),
    ClipPlan(
        "lap_sandtrack_800x600",
        800,
        600,
        180,
        36,
        options={"kind": "lap", "track": "sandtrack", "karts": 1, "laps": 2},
    ),
    ClipPlan(
        "lap_snowmountain_640x480",
        640,
        480,
        180,
        37,
        options={"kind": "lap", "track": "snowmountain", "karts": 1, "laps": 2},
    ),
]

# Clicks on the main menu, as fractions of the window (STK lays its menu out proportionally).
_MAIN = {
    "kart_select": (0.317, 0.656),  # Singleplayer
    "options": (0.608, 0.933),  # the wrench
    "help": (0.658, 0.933),  # "?"
    "achievements": (0.742, 0.933),  # the crown
    "about": (0.92, 0.933),  # "i"
}
_TUTORIAL_NO = (0.6, 0.678)


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    config = home / ".config" / "supertuxkart" / "config-0.10"
    config.mkdir(parents=True, exist_ok=True)
    for name in ("config.xml", "players.xml"):
        shutil.copy(CONFIG_DIR / "supertuxkart" / name, config / name)
    kind = plan.options["kind"]
    argv = ["/usr/games/supertuxkart", f"--screensize={plan.width}x{plan.height}", "--windowed"]
    if kind != "menus":
        argv += [
            f"--track={plan.options['track']}",
            f"--numkarts={plan.options['karts']}",
            f"--profile-laps={plan.options['laps']}",
        ]
    with game_session(
        plan,
        argv=argv,
        window=r"SuperTuxKart",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.5,
        shots=shots,
        window_timeout_s=180,
    ) as session:
        if kind == "menus":
            _menus(session)
        else:
            _race(session, "race" if kind == "race" else "lap")
        return session


def _click(s: Session, where: tuple[float, float]) -> None:
    s.xinput.click(at=(int(where[0] * s.plan.width), int(where[1] * s.plan.height)))


def _menus(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait(25.0)  # the first start compiles shaders behind a loading screen
    s.wait_change(threshold=3.0, timeout_s=60)
    s.wait(3.0)
    s.state("dialog")
    s.capture.resume()
    s.wait(2.0)
    _click(s, _TUTORIAL_NO)  # "play the tutorial?" - no
    s.state("main_menu")
    while not s.done():
        s.wait(rng.uniform(2.0, 5.0))
        s.shot("main_menu", every=3)
        target = rng.choice(list(_MAIN))
        x.move(int(_MAIN[target][0] * s.plan.width), int(_MAIN[target][1] * s.plan.height))
        s.wait(rng.uniform(0.5, 1.5))
        _click(s, _MAIN[target])
        s.state(target)
        s.wait(rng.uniform(2.0, 4.0))
        s.shot(target, every=2)
        for _ in range(rng.randint(2, 6)):
            s.wait(rng.uniform(0.8, 2.5))
            if target == "kart_select":
                x.key(rng.choice(["Left", "Right", "Right"]))
            else:
                x.move(rng.randint(0, s.plan.width - 1), rng.randint(0, s.plan.height - 1))
        if target == "kart_select" and rng.random() < 0.5:
            x.key("Return")  # on to the track list
            s.state("track_select")
            s.wait(1.5)
            s.shot("track_select")
            for _ in range(rng.randint(2, 5)):
                s.wait(rng.uniform(0.8, 2.0))
                x.key(rng.choice(["Left", "Right", "Down"]))
            s.wait(1.0)
            x.key("Escape")
            s.state("kart_select")
            s.wait(rng.uniform(1.0, 2.0))
        x.key("Escape")
        s.state("main_menu")


def _race(s: Session, state: str) -> None:
    # The race begins when the loading screen gives way; the game quits after its laps.
    s.wait(10.0)
    if not s.wait_change(threshold=10.0, timeout_s=240):
        raise RuntimeError("the race never appeared")
    s.wait(0.5)
    s.state(state, settle_s=0.0)
    s.capture.resume()
    end = time.monotonic() + s.plan.seconds * 3
    while s.alive() and not s.done() and time.monotonic() < end:
        time.sleep(0.5)
        s.shot(state, every=30)
    # The last frames may show the game closing its window.
    s.capture.pause()
