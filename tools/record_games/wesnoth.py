"""The Battle for Wesnoth: campaign stories and dialogue, AI-against-AI battles, and its menus.

Labels come from the game's own log: with ``--log-debug=gui/lifetime`` Wesnoth logs every GUI
window it creates (``set id of 0x... to 'story_viewer' ... Widget type: window``) and destroys,
so :class:`_WindowLog` knows which window is on top at each grab; with
``--log-info=ai/actions`` it logs each AI action as it starts (``start of execution of:
attack``).

- **campaign** clips open a campaign's first scenario (``-c ID``): its story pages (an
  illustration and narration, window ``story_viewer``) and the opening conversation (portrait
  and speech, ``wml_message_left``/``_right``) are ``dialogue``; the recorder reads each for
  2-5 s and presses Return. When the map is reached it opens the in-game menu once, and the
  clip ends.
- **battle** clips run a two-player map with the AI on both sides (``--multiplayer --controller
  1:ai --controller 2:ai``): from an attack's start until the next AI action (at most 5 s) the
  screen shows the fight animation and damage numbers (``combat``); moves and recruiting are
  left unlabelled.
- **menus** clips click the title screen's buttons (campaigns, load, preferences, help,
  multiplayer, tips) and close each window with Escape; windows' names are the labels' states.

Any other window (preferences, load, help, recruit list, the in-game drop-down menu...) is a
``menu``: Wesnoth draws all its menus and dialogs as GUI windows; tooltips are looked through.

    apt-get install wesnoth
    .venv/bin/python -m tools.record_games wesnoth [--clip campaign_two_brothers_800x600 ...]
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import (
    BLANK,
    ClipPlan,
    Game,
    Session,
    default_affect,
    default_targets,
    game_session,
)
from .harness import SETTLE

_DIALOGUE_WINDOWS = ("story_viewer", "wml_message_left", "wml_message_right", "wml_message")
# Windows that are not menus although they are GUI windows: credits, loading, errors.
_OTHER_WINDOWS = ("loading_screen", "end_credits", "outro", "wml_error")


class _WindowClasses(dict[str, str | None]):
    """State -> class, where any other GUI window (preferences, load, help, recruit, the
    drop-down game menu...) is a menu: Wesnoth draws all of its menus and dialogs as windows."""

    def __missing__(self, key: str) -> str | None:
        return "menu"


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "battle_attack":
            arousal[i], valence[i] = 0.5, -0.1
        elif state not in (SETTLE, BLANK) and state not in GAME.states:
            arousal[i], valence[i] = default_affect("menu")
    return states, arousal, valence


GAME = Game(
    name="wesnoth",
    genre="turn-based strategy",
    split="train",
    packages=("wesnoth",),
    states=_WindowClasses(
        {
            **dict.fromkeys(_DIALOGUE_WINDOWS, "dialogue"),
            **dict.fromkeys(_OTHER_WINDOWS, None),
            "title_screen": "menu",
            "battle_attack": "combat",
            "battle_other": None,
            "map": None,
        }
    ),
    annotate=_annotate,
)

PLANS = [
    ClipPlan("menus_800x600", 800, 600, 150, 61, options={"kind": "menus"}),
    ClipPlan("menus_1024x768", 1024, 768, 120, 62, options={"kind": "menus"}),
    *[
        ClipPlan(
            f"campaign_{cid.lower()}_{w}x{h}",
            w,
            h,
            300,
            63 + k,
            options={"kind": "campaign", "campaign": cid},
        )
        for k, (cid, w, h) in enumerate(
            [
                ("Heir_To_The_Throne", 800, 600),
                ("Two_Brothers", 1024, 768),
                ("The_South_Guard", 1280, 720),
                ("Liberty", 800, 600),
                ("Eastern_Invasion", 1024, 576),
                ("The_Rise_of_Wesnoth", 800, 600),
                ("Son_of_the_Black-Eye", 1280, 720),
                ("Descent_into_Darkness", 1024, 768),
                ("Under_the_Burning_Suns", 800, 600),
                ("Northern_Rebirth", 1024, 576),
            ]
        )
    ],
    ClipPlan(
        "battle_den_of_onis_800x600",
        800,
        600,
        240,
        81,
        options={"kind": "battle", "scenario": "multiplayer_Den_of_Onis"},
    ),
    ClipPlan(
        "battle_hamlets_1024x768",
        1024,
        768,
        240,
        82,
        options={"kind": "battle", "scenario": "multiplayer_Hamlets"},
    ),
    ClipPlan(
        "battle_freelands_1280x720",
        1280,
        720,
        240,
        83,
        options={"kind": "battle", "scenario": "multiplayer_The_Freelands"},
    ),
]

_WINDOW_SET = re.compile(
    r"set id of (0x[0-9a-f]+) to '([a-z_0-9]+)' \(was ''\)\. Widget type: window"
)
_DESTROY = re.compile(r"widget destroy: (0x[0-9a-f]+) \(id: ([a-z_0-9]*)\)")
_AI_ACTION = re.compile(r"start of execution of: (\w+)")

# Title screen buttons (x, y) at the two menu sizes (the column is laid out per size).
_TITLE = {
    (800, 600): {
        "campaigns": (710, 214),
        "multiplayer": (710, 254),
        "load": (710, 294),
        "preferences": (710, 414),
        "help": (80, 494),
        "next_tip": (566, 494),
    },
    (1024, 768): {
        "campaigns": (895, 343),
        "multiplayer": (895, 383),
        "load": (895, 423),
        "preferences": (895, 543),
        "help": (122, 625),
        "next_tip": (660, 625),
    },
}


class _WindowLog:
    """Which GUI window is on top, and the AI's latest action, from Wesnoth's log."""

    def __init__(self, log: Path, *, battle: bool) -> None:
        self.log = log
        self.battle = battle
        self.stack: list[tuple[str, str]] = []
        self.last_action = ""
        self.last_action_at = 0.0
        self._offset = 0
        # Polled by the capture thread and by the recorder.
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        cut = chunk.rfind(b"\n") + 1
        self._offset += cut
        now = time.monotonic()
        for line in chunk[:cut].decode(errors="replace").splitlines():
            if match := _WINDOW_SET.search(line):
                self.stack.append((match.group(1), match.group(2)))
            elif match := _DESTROY.search(line):
                self.stack = [w for w in self.stack if w[0] != match.group(1)]
            elif match := _AI_ACTION.search(line):
                self.last_action, self.last_action_at = match.group(1), now

    def top(self) -> str | None:
        # A tooltip floats over the window that is really showing.
        shown = [name for _, name in self.stack if not name.startswith("tooltip")]
        return shown[-1] if shown else None

    def __call__(self) -> str:
        self.poll()
        top = self.top()
        if top is not None:
            return top
        if self.battle:
            fighting = self.last_action == "attack" and time.monotonic() - self.last_action_at < 5
            return "battle_attack" if fighting else "battle_other"
        return "map"


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    kind = plan.options["kind"]
    argv = [
        "/usr/games/wesnoth",
        "-w",
        "-r",
        f"{plan.width}x{plan.height}",
        "--nosound",
        "--log-debug=gui/lifetime",
        "--log-info=ai/actions",
    ]
    if kind == "campaign":
        argv += ["-c", str(plan.options["campaign"]), "--campaign-difficulty=1"]
    elif kind == "battle":
        argv += [
            "--multiplayer",
            "--controller",
            "1:ai",
            "--controller",
            "2:ai",
            "--scenario",
            str(plan.options["scenario"]),
            f"--rng-seed={plan.seed}",
        ]
    windows = _WindowLog(work / "game.log", battle=kind == "battle")
    with game_session(
        plan,
        argv=argv,
        window=r"Wesnoth",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.25,
        shots=shots,
    ) as session:
        session.capture.probe = windows
        if kind == "campaign":
            _campaign(session, windows)
        elif kind == "battle":
            _battle(session)
        else:
            _menus(session, windows)
        return session


def _wait_out_loading(s: Session, windows: _WindowLog, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s.wait(0.5)
        windows.poll()
        if windows.top() not in (None, "loading_screen"):
            return
        if windows.top() is None and time.monotonic() > deadline - timeout_s + 30:
            return


def _campaign(s: Session, windows: _WindowLog) -> None:
    x, rng = s.xinput, s.rng
    _wait_out_loading(s, windows)
    s.capture.resume()
    map_since: float | None = None
    menu_done = False
    while not s.done():
        s.wait(0.3)
        top = windows.top()
        s.shot(top or "map", every=4)
        if top in _DIALOGUE_WINDOWS:
            map_since = None
            s.wait(rng.uniform(2.0, 5.0))
            if windows.top() == top:
                x.key("Return")
                s.wait(0.6)
        elif top is None:
            map_since = map_since or time.monotonic()
            if time.monotonic() - map_since > rng.uniform(4.0, 7.0):
                if menu_done:
                    return
                # The in-game "Menu" button, top left.
                x.click(at=(22, 9))
                s.wait(rng.uniform(2.0, 4.0))
                s.shot("ingame_menu")
                x.key("Escape")
                s.wait(1.0)
                menu_done = True
                map_since = time.monotonic()
        elif top == "loading_screen":
            continue
        else:
            # Objectives or another popup: look, then close it.
            s.wait(rng.uniform(2.0, 4.0))
            x.key("Return")
            s.wait(0.6)


def _battle(s: Session) -> None:
    s.wait(5.0)
    s.wait_change(threshold=8.0, timeout_s=120)
    s.capture.resume()
    while not s.done():
        s.wait(0.5)
        s.shot(s.capture.state, every=40)


def _menus(s: Session, windows: _WindowLog) -> None:
    x, rng = s.xinput, s.rng
    _wait_out_loading(s, windows)
    s.capture.resume()
    buttons = _TITLE[(s.plan.width, s.plan.height)]
    while not s.done():
        s.wait(rng.uniform(2.0, 4.0))
        name = rng.choice(list(buttons))
        x.move(*buttons[name])
        s.wait(rng.uniform(0.4, 1.0))
        x.click()
        s.wait(rng.uniform(1.5, 3.0))
        s.shot(windows.top() or "none")
        if name == "next_tip":
            continue
        for _ in range(rng.randint(2, 5)):
            s.wait(rng.uniform(0.8, 2.5))
            x.move(rng.randint(0, s.plan.width - 1), rng.randint(0, s.plan.height - 1))
        # Close whatever opened (twice: a window may have opened a second one).
        for _ in range(3):
            if windows.top() in (None, "title_screen"):
                break
            x.key("Escape")
            s.wait(1.0)
