"""Flare, Empyrean campaign (held out for validation): an action RPG's menus, story, dialogue
and walks.

Flare is played from the keyboard (``config/flare/settings.txt``: keyboard movement, keyboard
menus). Each clip starts a new game through the real menus (title, "new game", class and
portrait; ``menu``); a small mod (``moodscore``, written into the private data folder and loaded
after the campaign with ``--mods``) replaces the campaign's ``maps/spawn.txt``, which decides
where a new hero arrives:

- **story** clips arrive as the campaign does: the backstory cutscene (pictures and captions;
  every new game shows it) and the tutorial's talking skeleton are ``dialogue`` (Return
  advances them, one caption or line at a time, as many as the files have); then the hero
  walks about the peaceful first map (``exploration``) and opens the inventory, character,
  powers and log panels and the pause menu (``menu``).
- **town** clips arrive in a town (Perdition Harbor, Lochport): walks and panels as above.

The mod also closes the walking map's exits (a copy of the map without its ``intermap``
events): the first town recording's hero walked out onto the River Trail and was killed by a
zombie, so a minute of "Game Over" box was labelled as a walk. The recorder checks the log
that no other map was loaded during the walks.

Fights were tried (monsters spawned around the hero by an added event, a new wave on each
``on_clear``) and dropped: a keyboard-only hero has no attack key by default, and with one
bound (``main1``) the level-1 hero still died within half a minute, so the footage would have
been mostly the "Game Over" box. Flare's validation footage therefore has no combat; Red
Eclipse's has.

Flare's own log says when a map or cutscene loads (``Loading map``, ``Loading cutscene``); the
rest of the labels are the recorder's own actions.

    apt-get install flare-game
    .venv/bin/python -m tools.record_games flare [--clip story_800x600 ...]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import CONFIG_DIR, ClipPlan, Game, Session, default_targets, game_session

CAMPAIGN = Path("/usr/share/games/flare/mods/empyrean_campaign")


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "walk":
            arousal[i], valence[i] = -0.6, 0.35
    return states, arousal, valence


GAME = Game(
    name="flare",
    genre="action role-playing game",
    split="val",
    packages=("flare-game",),
    states={
        "title": "menu",
        "game_slots": "menu",
        "new_game": "menu",
        "inventory": "menu",
        "character": "menu",
        "powers": "menu",
        "log": "menu",
        "pause_menu": "menu",
        "cutscene": "dialogue",
        "npc_dialogue": "dialogue",
        "walk": "exploration",
        "loading": None,
    },
    annotate=_annotate,
)

PLANS = [
    ClipPlan("story_800x600", 800, 600, 200, 101, options={"kind": "story"}),
    ClipPlan("story_1280x720", 1280, 720, 180, 102, options={"kind": "story"}),
    ClipPlan(
        "town_harbor_1024x576",
        1024,
        576,
        180,
        103,
        options={"kind": "town", "map": "perdition_harbor", "at": "2,24"},
    ),
    ClipPlan(
        "town_harbor_640x480",
        640,
        480,
        150,
        104,
        options={"kind": "town", "map": "perdition_harbor", "at": "2,24"},
    ),
    ClipPlan(
        "town_lochport_1280x720",
        1280,
        720,
        150,
        105,
        options={"kind": "town", "map": "lochport", "at": "43,1"},
    ),
]

_PANELS = {"inventory": "i", "character": "c", "powers": "p", "log": "l"}
_CAPTION = re.compile(r"^caption=", re.MULTILINE)
_LINE = re.compile(r"^(him|her|you)=", re.MULTILINE)
_MAP_LOADED = re.compile(r"Loading map 'maps/([^']+)\.txt'")


def _walking_map(plan: ClipPlan) -> str:
    return "arrival" if plan.options["kind"] == "story" else str(plan.options["map"])


def _without_exits(text: str) -> str:
    """A Flare map file without the events that take the hero to another map."""
    blocks = re.split(r"(?m)^(?=\[)", text)
    return "".join(b for b in blocks if not (b.startswith("[event]") and "intermap=" in b))


def _write_mod(home: Path, plan: ClipPlan) -> None:
    maps = home / ".local" / "share" / "flare" / "mods" / "moodscore" / "maps"
    maps.mkdir(parents=True, exist_ok=True)
    kind = plan.options["kind"]
    walking = f"{_walking_map(plan)}.txt"
    (maps / walking).write_text(_without_exits((CAMPAIGN / "maps" / walking).read_text()))
    spawn = "[header]\nwidth=1\nheight=1\nhero_pos=0,0\n\n[event]\ntype=event\n"
    spawn += "location=0,0,1,1\nactivate=on_load\n"
    if kind == "story":
        spawn += "intermap=maps/arrival.txt,20,20\n"
    else:
        spawn += f"intermap=maps/{plan.options['map']}.txt,{plan.options['at']}\n"
    (maps / "spawn.txt").write_text(spawn)
    # Without its requirements Flare would load this mod alone, without the campaign.
    (maps.parent / "settings.txt").write_text(
        "description=moodscore recording set-up\nrequires=fantasycore:1.14,empyrean_campaign:1.14\n"
        "game=flare-game\nversion=1.14\nengine_version_min=1.13.12\n"
    )
    config = home / ".config" / "flare"
    config.mkdir(parents=True, exist_ok=True)
    settings = (CONFIG_DIR / "flare" / "settings.txt").read_text()
    settings += f"resolution_w={plan.width}\nresolution_h={plan.height}\n"
    (config / "settings.txt").write_text(settings)


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    _write_mod(home, plan)
    argv = ["/usr/games/flare", "--no-audio", "--mods=fantasycore,empyrean_campaign,moodscore"]
    with game_session(
        plan,
        argv=argv,
        window=r"Flare",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.5,
        shots=shots,
    ) as session:
        _play(session)
        return session


def _new_game(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait(6.0)
    # Flare may open its window again once its settings are read: find it, give it the keys.
    x.wait_window(r"Flare", timeout_s=30)
    x.focus()
    s.state("title")
    s.capture.resume()
    s.wait(rng.uniform(3, 6))
    s.shot("title")
    _press_until_change(s, "Return")  # Play Game
    s.state("game_slots")
    s.wait(rng.uniform(1, 3))
    _press_until_change(s, "Return")  # New Game
    s.state("new_game")
    # (Arrow keys here would move the focus out of the order Tab follows.)
    s.wait(rng.uniform(3, 6))
    s.shot("new_game")
    for _ in range(5):  # focus moves to "Create" (Flare takes one key per frame)
        x.key("Tab")
        s.wait(0.4)
    x.key("Return")
    s.state("loading")


def _press_until_change(s: Session, key: str, tries: int = 4) -> None:
    """Press ``key`` until the screen changes (a busy machine can drop a key during a fade);
    what shows meanwhile is not labelled."""
    s.state("loading", settle_s=0.0)
    for _ in range(tries):
        before = s.capture.latest()
        s.xinput.key(key)
        for _ in range(16):
            s.wait(0.25)
            if s.moved(before, threshold=1.0):
                s.wait(0.5)
                return
    raise RuntimeError(f"{key} changed nothing on screen")


def _panels(s: Session) -> None:
    """Open and close some panels; a panel counts only if the picture changed when it opened."""
    x, rng = s.xinput, s.rng
    for name in rng.sample([*_PANELS, "pause_menu"], rng.randint(2, 4)):
        key = "Escape" if name == "pause_menu" else _PANELS[name]
        before = s.capture.latest()
        x.key(key)
        s.state("loading", settle_s=0.0)
        s.wait(0.8)
        if not s.moved(before, threshold=3.0):
            s.wait(1.0)
            s.state("walk")
            continue
        s.state(name, settle_s=0.0)
        s.wait(rng.uniform(2.5, 5.0))
        s.shot(name)
        x.key(key)
        s.state("loading", settle_s=0.0)
        s.wait(0.8)
        s.state("walk")
        s.wait(rng.uniform(1.0, 2.0))


def _walk(s: Session, seconds: float) -> None:
    x, rng = s.xinput, s.rng
    s.state("walk")
    end = s.recorded_s() + seconds
    while s.recorded_s() < end and not s.done():
        keys = rng.choice([["w"], ["a"], ["s"], ["d"], ["w", "d"], ["w", "a"], ["s", "d"]])
        x.hold(keys, rng.uniform(0.8, 2.5))
        s.shot("walk", every=15)


def _talk(s: Session, state: str, lines: int) -> None:
    """Read ``lines`` captions or dialogue lines, 2-5 s each, advancing with Return."""
    x, rng = s.xinput, s.rng
    s.state(state)
    for _ in range(lines):
        s.wait(rng.uniform(2.0, 5.0))
        s.shot(state, every=3)
        x.key("Return")


def _play(s: Session) -> None:
    kind = s.plan.options["kind"]
    _new_game(s)
    if kind == "story":
        # The first map shows the campaign's backstory, then the talking skeleton.
        s.wait_log("Loading cutscene 'cutscenes/backstory.txt'", timeout_s=120, then_s=1.0)
        captions = len(_CAPTION.findall((CAMPAIGN / "cutscenes" / "backstory.txt").read_text()))
        _talk(s, "cutscene", captions)
        s.state("loading")
        s.wait(3.0)
        # One Return per line closes the conversation (one more would start it again).
        lines = len(_LINE.findall((CAMPAIGN / "npcs" / "tutorial.txt").read_text()))
        _talk(s, "npc_dialogue", lines)
        _until_free(s)
    else:
        town = s.plan.options["map"]
        s.wait_log(f"Loading map 'maps/{town}.txt'", timeout_s=120, then_s=2.0)
        # A town may greet the hero with a sign or message that holds him: clear it first.
        _until_free(s)
    s.state("loading")
    s.wait(1.5)
    while not s.done():
        _walk(s, s.rng.uniform(20, 40))
        _panels(s)
    loaded = set(_MAP_LOADED.findall(s.process.log_text()))
    if loaded - {"spawn", _walking_map(s.plan)}:
        raise RuntimeError(f"the hero left the walking map: {sorted(loaded)} were loaded")


def _until_free(s: Session) -> None:
    """Close whatever still holds the hero (the conversation, or the pause menu an Escape too
    many opened): Escape until a step moves the picture; these frames are not labelled."""
    s.state("loading")
    for _ in range(4):
        before = s.capture.latest()
        s.xinput.hold(["w"], 1.0)
        s.wait(0.3)
        if s.moved(before, threshold=2.0):
            return
        s.xinput.key("Escape")
        s.wait(1.0)
