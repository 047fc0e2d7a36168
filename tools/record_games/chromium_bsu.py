"""Chromium B.S.U.: a vertical space shooter (combat) and its menu.

The recorder starts a game from the menu (``new game``), holds fire and steers the ship left and
right at random: enemies fly in and shoot all the time, so play is ``combat``. Now and then it
pauses with Escape, which shows the game's menu over the paused game (``menu``), browses it
with the arrow keys (up/down only: left/right would change settings) and resumes. When the ship
is lost the game writes "loser" in red over the screen and carries on without a player: the
recorder sees the red text in the grab (:func:`_game_over`), leaves those frames unlabelled,
and starts a new game from the menu.

    apt-get install chromium-bsu
    .venv/bin/python -m tools.record_games chromium_bsu [--clip play_800x600 ...]
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import ClipPlan, Game, Session, default_targets, game_session


def _annotate(
    states: list[str], cues: Mapping[str, np.ndarray]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    arousal, valence = default_targets(GAME, states)
    for i, state in enumerate(states):
        if state == "play":
            arousal[i], valence[i] = 0.5, 0.0
    return states, arousal, valence


GAME = Game(
    name="chromium_bsu",
    genre="scrolling space shooter",
    split="train",
    packages=("chromium-bsu",),
    states={"play": "combat", "menu": "menu", "game_over": None},
    annotate=_annotate,
)

# -v: 1 = 640x480, 2 = 800x600, 3 = 1024x768
PLANS = [
    ClipPlan("play_640x480", 640, 480, 240, 41, options={"vidmode": 1}),
    ClipPlan("play_800x600", 800, 600, 240, 42, options={"vidmode": 2}),
    ClipPlan("play_1024x768", 1024, 768, 210, 43, options={"vidmode": 3}),
]


def _game_over(frame: np.ndarray | None) -> bool:
    """Whether the big red "loser" is across the middle of a 96x72 grab."""
    if frame is None:
        return False
    band = frame[34:50, 18:78].astype(np.int16)
    red = (band[..., 0] > 130) & (band[..., 1] < 80) & (band[..., 2] < 100)
    return int(red.sum()) > 60


def record(plan: ClipPlan, *, work: Path, home: Path, shots: Path | None) -> Session:
    argv = ["/usr/games/chromium-bsu", "-w", "-v", str(plan.options["vidmode"]), "-na"]
    with game_session(
        plan,
        argv=argv,
        window=r"Chromium",
        work=work,
        home=home,
        screen=(plan.width, plan.height),
        settle_s=0.4,
        shots=shots,
    ) as session:
        _play(session)
        return session


def _play(s: Session) -> None:
    x, rng = s.xinput, s.rng
    s.wait(3.0)
    s.state("menu")
    s.capture.resume()
    while not s.done():
        # The menu: browse a little, come back to "new game" (the top entry) and start.
        for _ in range(rng.randint(0, 3)):
            s.wait(rng.uniform(0.8, 2.0))
            x.key("Down")
        s.wait(rng.uniform(1.0, 3.0))
        s.shot("menu", every=2)
        x.key(*["Up"] * 10)
        x.key("Return")
        s.state("play")
        x.key_down("space")
        try:
            _one_game(s)
        finally:
            x.key_up("space")
        x.key("Escape")
        s.state("menu")


def _one_game(s: Session) -> None:
    """Play until the ship is lost, the clip is long enough, or it is time for a pause."""
    x, rng = s.xinput, s.rng
    pause_at = s.recorded_s() + rng.uniform(30, 60)
    while not s.done():
        if _game_over(s.capture.latest()):
            s.state("game_over", settle_s=0.0)
            s.shot("game_over")
            s.wait(2.0)
            return
        if s.recorded_s() >= pause_at:
            x.key("Escape")
            s.state("menu")
            s.shot("pause")
            for _ in range(rng.randint(1, 3)):
                s.wait(rng.uniform(0.8, 2.0))
                x.key(rng.choice(["Down", "Up"]))
            s.wait(rng.uniform(1.0, 2.5))
            x.key(*["Up"] * 10)
            x.key("Escape")  # back to the paused game
            s.state("play")
            pause_at = s.recorded_s() + rng.uniform(30, 60)
        s.shot("play", every=40)
        direction = rng.choice(["Left", "Right", "Up", "Down", ""])
        x.hold([direction] if direction else [], rng.uniform(0.2, 0.9))
