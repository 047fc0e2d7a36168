"""Minetest (Minetest Game): walks through generated landscapes (exploration) and its menus.

- **walk** (``exploration``): a new world of a given map generator and seed, no damage, no
  monsters (Minetest Game has none). The recorder holds "forward", jumps now and then (to
  climb steps) and the world mod ``config/minetest/moodscore`` turns the player's gaze slowly
  and at random (seeded); the mod also sets the time of day. Now and then the recorder opens
  the inventory (``i``) or the pause menu (Escape) for a few seconds (``menu``).
- **menus** (``menu``): the main menu's tabs (start game, join game, content, settings, about),
  clicked at positions measured from the window's centre.

Settings: ``config/minetest/minetest.conf`` (sound off, chat and minimap off), plus the screen
size and the mod's seed and time, written into the private ``~/.minetest/``. ``F1`` hides the
HUD in the "nohud" clips; ``F2`` hides the chat lines the server prints at start.

    apt-get install minetest
    .venv/bin/python -m tools.record_games minetest [--clip walk_v7_800x600 ...]
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import CONFIG_DIR, ClipPlan, Game, Session, default_targets, game_session


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "walk":
            arousal[i], valence[i] = -0.6, 0.35
    return states, arousal, valence


GAME = Game(
    name="minetest",
    genre="voxel sandbox",
    split="train",
    packages=("minetest",),
    states={
        "walk": "exploration",
        "inventory": "menu",
        "pause_menu": "menu",
        "main_menu": "menu",
        "loading": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan("menus_1024x600", 1024, 600, 120, 51, options={"kind": "menus"}),
    ClipPlan(
        "walk_v7_800x600",
        800,
        600,
        240,
        52,
        options={"kind": "walk", "mapgen": "v7", "seed": 4242, "time": 0.45},
    ),
    ClipPlan(
        "walk_valleys_1024x576",
        1024,
        576,
        240,
        53,
        options={"kind": "walk", "mapgen": "valleys", "seed": 777, "time": 0.3},
    ),
    ClipPlan(
        "walk_carpathian_640x480_nohud",
        640,
        480,
        210,
        54,
        hud="off",
        options={"kind": "walk", "mapgen": "carpathian", "seed": 31337, "time": 0.55},
    ),
    ClipPlan(
        "walk_v7_dusk_854x480",
        854,
        480,
        180,
        55,
        options={"kind": "walk", "mapgen": "v7", "seed": 99, "time": 0.76},
    ),
]

# Main menu tabs as offsets from the window's centre at 1024x600 (the formspec keeps its size).
_TABS = {
    "start": (-226, -140),
    "join": (-128, -140),
    "content": (-42, -140),
    "settings": (35, -140),
    "about": (105, -140),
}


def _write_world(home: Path, plan: ClipPlan) -> Path:
    root = home / ".minetest"
    world = root / "worlds" / "moodscore"
    (world / "worldmods").mkdir(parents=True, exist_ok=True)
    shutil.copytree(CONFIG_DIR / "minetest" / "moodscore", world / "worldmods" / "moodscore")
    conf = (CONFIG_DIR / "minetest" / "minetest.conf").read_text()
    conf += f"screen_w = {plan.width}\nscreen_h = {plan.height}\n"
    conf += f"moodscore_seed = {plan.seed}\nmoodscore_time = {plan.options.get('time', 0.45)}\n"
    (root / "minetest.conf").write_text(conf)
    (world / "world.mt").write_text(
        "gameid = minetest_game\nbackend = sqlite3\nplayer_backend = sqlite3\n"
        "auth_backend = sqlite3\ncreative_mode = false\nenable_damage = false\n"
        "world_name = moodscore\n"
    )
    (world / "map_meta.txt").write_text(
        f"seed = {plan.options.get('seed', 1)}\nmg_name = {plan.options.get('mapgen', 'v7')}\n"
        "[end_of_params]\n"
    )
    return world


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    world = _write_world(home, plan)
    kind = plan.options["kind"]
    argv = ["/usr/games/minetest", "--config", str(home / ".minetest" / "minetest.conf")]
    if kind == "walk":
        argv += ["--go", "--world", str(world), "--name", "explorer"]
    with game_session(
        plan,
        argv=argv,
        window=r"Minetest",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.5,
        shots=shots,
    ) as session:
        if kind == "walk":
            _walk(session)
        else:
            _menus(session)
        return session


def _walk(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait_log("joins game", timeout_s=120)
    s.wait(8.0)  # the first map blocks are generated and drawn
    x.focus()
    x.key("F2")  # no chat lines
    if s.plan.hud == "off":
        x.key("F1")
    s.wait(1.0)
    s.state("walk")
    s.capture.resume()
    menu_at = s.recorded_s() + rng.uniform(25, 50)
    x.key_down("w")
    try:
        while not s.done():
            s.wait(rng.uniform(0.6, 2.0))
            if rng.random() < 0.6:
                x.key("space")
            s.shot("walk", every=30)
            if s.recorded_s() >= menu_at:
                x.key_up("w")
                which = rng.choice(["inventory", "pause_menu"])
                x.key("i" if which == "inventory" else "Escape")
                s.state(which)
                s.wait(1.0)
                s.shot(which)
                for _ in range(rng.randint(1, 4)):
                    s.wait(rng.uniform(0.8, 2.0))
                    x.move(rng.randint(0, s.plan.width - 1), rng.randint(0, s.plan.height - 1))
                s.wait(rng.uniform(0.5, 2.0))
                x.key("Escape")
                s.state("walk")
                x.key_down("w")
                menu_at = s.recorded_s() + rng.uniform(25, 50)
    finally:
        x.key_up("w")


def _menus(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait(6.0)
    s.state("main_menu")
    s.capture.resume()
    cx, cy = s.plan.width // 2, s.plan.height // 2
    while not s.done():
        tab = rng.choice(list(_TABS))
        dx, dy = _TABS[tab]
        x.move(cx + dx, cy + dy)
        s.wait(rng.uniform(0.4, 1.0))
        x.click()
        s.wait(rng.uniform(1.0, 2.0))
        s.shot(tab)
        for _ in range(rng.randint(1, 4)):
            s.wait(rng.uniform(0.8, 2.5))
            x.move(cx + rng.randint(-250, 250), cy + rng.randint(-150, 150))
