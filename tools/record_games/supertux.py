"""SuperTux: the top-down world map (exploration), its side-scrolling levels and its menus.

- **world** (``exploration``, ``menu``): Icy Island's world map with every level
  marked solved (the developer cheat menu's "Finish Worldmap", done before the capture starts),
  so Tux can walk every path. The recorder holds an arrow key for a second or three; a key
  with no path that way leaves the picture still, and the recorder tries another. This is the
  top-down overworld walk our training footage lacked (Flare's walks were read as combat).
  Now and then it stands on a level's dot and enters it (``loading`` while the title card
  shows, unlabelled), runs right through the level, jumping at random, for half a minute to a
  minute (``level``: a platformer's ordinary play is exploration here, as a kart race is), then
  leaves by the pause menu's last entry ("Abort Level"). Escape on the map opens its pause menu
  (``pause_menu``), browsed with Up/Down and closed with Escape.
- **menus** (``menu``): the title menu, the world list, options and its sub-pages, browsed with
  the arrow keys; Escape goes back. Nothing is chosen that starts play or quits.

SuperTux reads its controls once per drawn frame and compares them with the frame before, so a
key pressed and released between two frames (software rendering draws 10-20 a second) is never
seen: every key here is held for :data:`PRESS_S`.

    apt-get install supertux
    .venv/bin/python -m tools.record_games supertux [--clip world_icy_island_800x600 ...]
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import ClipPlan, Game, Session, default_targets, game_session

DATA = Path("/usr/share/games/supertux2")
# Long enough to span two frames of the software renderer.
PRESS_S = 0.2
# The developer cheat menu's entries before "Finish Worldmap" (separators are skipped).
_FINISH_WORLDMAP_DOWNS = 9


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    # A scene the game plays by itself (the island's opening, entered from its first dot) is
    # letterboxed: those frames are no level and no walk, whatever the recorder pressed.
    letterbox = np.nan_to_num(cues.get("letterbox", np.zeros(len(states))))
    states = [
        "cut_scene" if box > 0.5 else state for state, box in zip(states, letterbox, strict=True)
    ]
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "map_walk":
            arousal[i], valence[i] = -0.5, 0.4
        elif state == "level":
            arousal[i], valence[i] = 0.1, 0.4
    return states, arousal, valence


GAME = Game(
    name="supertux",
    genre="platformer with a top-down world map",
    split="train",
    packages=("supertux",),
    states={
        "map_walk": "exploration",
        "level": "exploration",
        "pause_menu": "menu",
        "title_menu": "menu",
        "loading": None,
        "cut_scene": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan(
        "world_icy_island_800x600",
        800,
        600,
        240,
        61,
        options={"kind": "world", "map": "levels/world1/worldmap.stwm"},
    ),
    ClipPlan(
        "world_icy_island_1024x768",
        1024,
        768,
        210,
        62,
        options={"kind": "world", "map": "levels/world1/worldmap.stwm"},
    ),
    ClipPlan(
        "world_icy_island_640x480",
        640,
        480,
        180,
        63,
        options={"kind": "world", "map": "levels/world1/worldmap.stwm", "level_share": 0.2},
    ),
    ClipPlan("menus_1024x576", 1024, 576, 120, 64, options={"kind": "menus"}),
]


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    argv = [
        "/usr/games/supertux2",
        "--window",
        "--geometry",
        f"{plan.width}x{plan.height}",
        "--disable-sound",
        "--disable-music",
        "--userdir",
        str(home / "supertux2"),
    ]
    if plan.options["kind"] == "world":
        argv += ["--developer", str(DATA / plan.options["map"])]
    latest: list[Session] = []

    def letterbox_cue() -> dict[str, float]:
        frame = latest[0].capture.latest() if latest else None
        return {"letterbox": float(frame is not None and _letterboxed(frame))}

    with game_session(
        plan,
        argv=argv,
        window=r"SuperTux",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.4,
        shots=shots,
        cue_probe=letterbox_cue,
    ) as session:
        latest.append(session)
        # The pointer over a menu would choose its entries: park it in a corner.
        session.xinput.move(plan.width - 1, plan.height - 1)
        if plan.options["kind"] == "world":
            _world(session)
        else:
            _menus(session)
        return session


def _press(s: Session, key: str, times: int = 1) -> None:
    for _ in range(times):
        s.xinput.hold([key], PRESS_S)
        s.wait(0.15)


def _world(s: Session) -> None:
    rng = s.rng
    _skip_opening_scene(s)
    _press(s, "F1")  # the developer cheat menu
    _press(s, "Down", _FINISH_WORLDMAP_DOWNS)
    _press(s, "Return")
    s.wait(1.0)
    s.state("map_walk")
    s.capture.resume()
    level_share = float(s.plan.options.get("level_share", 0.35))
    menu_at = s.recorded_s() + rng.uniform(25, 45)
    level_at = s.recorded_s() + rng.uniform(30, 60)
    while not s.done():
        if s.recorded_s() >= menu_at:
            _map_menu(s)
            menu_at = s.recorded_s() + rng.uniform(25, 45)
        if s.recorded_s() >= level_at and _enter_level(s):
            _run_level(s, seconds=rng.uniform(30, 60) * level_share / 0.35)
            s.state("map_walk")
            level_at = s.recorded_s() + rng.uniform(30, 60)
        _walk_step(s)


def _letterboxed(frame: np.ndarray | None) -> bool:
    """Whether a grab shows a cut scene: a black band below a lit picture.

    (Only the lower band: developer mode prints its log lines over the upper one.)
    """
    if frame is None:
        return True
    rows = frame.reshape(frame.shape[0], -1).mean(axis=1)
    band = max(1, frame.shape[0] // 14)
    return bool(rows[-band:].mean() < 8 and rows.mean() > 20)


def _skip_opening_scene(s: Session) -> None:
    """Wait for the map; Escape skips the island's opening scene (shown until the map is up).

    The capture is still paused: :meth:`Capture.latest` shows the screen all the same.
    """
    s.wait(4.0)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if not _letterboxed(s.capture.latest()):
            s.wait(2.0)
            if not _letterboxed(s.capture.latest()):
                return
        _press(s, "Escape")
        s.wait(2.0)
    raise RuntimeError("the world map never showed (still a cut scene after 90 s)")


def _walk_step(s: Session) -> None:
    """Hold one arrow for a while; a way with no path leaves the picture still."""
    before = s.capture.latest()
    if _letterboxed(before):  # a dot Tux walked onto plays its scene by itself
        s.state("loading")
        _skip_opening_scene(s)
        s.state("map_walk")
        return
    s.xinput.hold([s.rng.choice(["Up", "Down", "Left", "Right"])], s.rng.uniform(1.0, 3.0))
    if not s.moved(before, threshold=1.0):
        return  # no path that way: the next step tries another
    s.shot("map_walk", every=8)


def _darker(before: np.ndarray | None, after: np.ndarray | None) -> bool:
    """Whether a menu came up: SuperTux dims the picture behind its menus."""
    if before is None or after is None:
        return False
    return float(after.mean()) < 0.85 * float(before.mean())


def _map_menu(s: Session) -> None:
    s.state("loading")
    before = s.capture.latest()
    _press(s, "Escape")
    s.wait(1.0)
    if not _darker(before, s.capture.latest()):
        s.state("map_walk")  # the key went unseen: no menu this time
        return
    s.state("pause_menu")
    s.shot("pause_menu")
    for _ in range(s.rng.randint(1, 3)):
        s.wait(s.rng.uniform(0.8, 2.0))
        _press(s, s.rng.choice(["Up", "Down"]))
    s.wait(s.rng.uniform(0.5, 1.5))
    s.state("loading")
    _press(s, "Escape")
    s.wait(0.5)
    s.state("map_walk")


def _enter_level(s: Session) -> bool:
    """Return on the map: a level's title card (dark) shows when Tux stood on a level's dot.

    The island's first dot is its opening scene, not a level: it is skipped with Escape.
    """
    s.state("loading")
    _press(s, "Return")
    s.wait(1.2)
    frame = s.capture.latest()
    if frame is None or float(frame.mean()) > 40.0:
        s.state("map_walk")
        return False
    s.shot("title_card")
    s.wait(3.0)
    if _letterboxed(s.capture.latest()):
        _skip_opening_scene(s)
        s.state("map_walk")
        return False
    return True


def _run_level(s: Session, *, seconds: float) -> None:
    x, rng = s.xinput, s.rng
    s.state("level")
    end = s.recorded_s() + seconds
    x.key_down("Right")
    try:
        while s.recorded_s() < end and not s.done():
            if rng.random() < 0.15:  # a step back now and then, as a player looks around
                x.key_up("Right")
                x.hold(["Left"], rng.uniform(0.3, 0.8))
                x.key_down("Right")
            x.hold(["space"], rng.uniform(0.2, 0.6))
            s.wait(rng.uniform(0.3, 1.5))
            s.shot("level", every=10)
    finally:
        x.key_up("Right")
    # Leave by the pause menu's last entry ("Abort Level"): Up from the first entry wraps to it.
    s.state("loading")
    _press(s, "Escape")
    s.wait(0.8)
    s.state("pause_menu")
    s.wait(rng.uniform(1.0, 2.0))
    s.shot("level_pause")
    _press(s, "Up")
    s.wait(0.5)
    s.state("loading")
    _press(s, "Return")
    s.wait(2.5)


def _menus(s: Session) -> None:
    rng = s.rng
    s.wait(6.0)
    s.state("title_menu")
    s.capture.resume()
    while not s.done():
        # Title menu: Start Game (the world list), Add-ons, Options, Level Editor, Credits, ...
        _press(s, "Up", 8)  # back to the top entry
        entry = rng.choice([0, 0, 2, 2, 2])  # the world list or options
        _press(s, "Down", entry)
        s.wait(rng.uniform(1.0, 2.0))
        s.shot("title")
        _press(s, "Return")
        s.wait(rng.uniform(1.0, 2.0))
        s.shot(f"entry{entry}")
        for _ in range(rng.randint(2, 6)):
            _press(s, rng.choice(["Up", "Down"]))
            s.wait(rng.uniform(0.6, 1.8))
        _press(s, "Escape")
        s.wait(rng.uniform(1.0, 2.0))
