#!/usr/bin/env python3
"""Record labelled Atari footage (ale-py; the ROMs ship in the wheel) for the scene model.

A random agent with sticky actions plays each game; frames are stored at 96x72 and 8 frames per
second (the model's rate). The Atari games carry no per-frame danger signal we can trust, so
each game is labelled by its genre, as a whole: shooters and fighting games are ``combat``,
maze, platform and adventure games ``exploration`` (:data:`GAMES`); arousal and valence are
left unlabelled (NaN: the trainer masks them). Composited menus and dialogue boxes (see
``tools/scene_overlays.py``) are drawn over frozen frames now and then, at twice the Atari's
resolution so their text is as legible as a real game's before shrinking.

Held-out games (:data:`HELD_OUT`) are recorded into a separate folder and never trained on.

    .venv/bin/python tools/record_atari.py --games train --seconds 60 --out .cache/scene/train
    .venv/bin/python tools/record_atari.py --games held-out --seconds 60 --out .cache/scene/val
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
for folder in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from scene_overlays import DialogueOverlay, MenuOverlay  # noqa: E402 - after sys.path fix

from models.scene_data import (  # noqa: E402
    MODEL_FPS,
    SCENE_CLASSES,
    STORE_HEIGHT,
    STORE_WIDTH,
    Clip,
    save_clip,
)

ATARI_HZ = 60
GAMES: dict[str, str] = {
    # shooters, fighting: the screen is about attacking and being attacked
    **dict.fromkeys(
        [
            "space_invaders",
            "demon_attack",
            "phoenix",
            "assault",
            "atlantis",
            "beam_rider",
            "chopper_command",
            "star_gunner",
            "time_pilot",
            "robotank",
            "berzerk",
            "carnival",
            "asteroids",
            "air_raid",
            "yars_revenge",
            "battle_zone",
            "galaxian",
            "defender",
            "zaxxon",
            "gravitar",
        ],
        "combat",
    ),
    # mazes, platforms, adventures: the screen is about going places
    **dict.fromkeys(
        [
            "pitfall",
            "montezuma_revenge",
            "adventure",
            "hero",
            "private_eye",
            "venture",
            "frostbite",
            "keystone_kapers",
            "amidar",
            "bank_heist",
            "journey_escape",
            "crazy_climber",
            "kangaroo",
            "mr_do",
            "pitfall2",
            "haunted_house",
            "et",
            "frogger",
        ],
        "exploration",
    ),
}
# Never trained on: whole games held out for the model card's Atari figures.
HELD_OUT = (
    "galaxian",
    "defender",
    "zaxxon",
    "gravitar",
    "pitfall2",
    "haunted_house",
    "et",
    "frogger",
)


def record_game(name: str, *, seconds: float, seed: int, overlays: bool = True) -> Clip:
    """Play ``name`` with a sticky random agent for ``seconds`` and return the labelled clip."""
    from ale_py import ALEInterface, roms

    rng = np.random.default_rng(seed)
    ale = ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    rom = roms.get_rom_path(name)
    if rom is None:
        raise SystemExit(f"ale-py ships no ROM called {name!r}")
    ale.loadROM(rom)
    actions = ale.getMinimalActionSet()
    label = SCENE_CLASSES.index(GAMES[name])
    frames: list[np.ndarray] = []
    labels: list[int] = []
    action = actions[0]
    next_segment = rng.uniform(8, 25)
    segment: tuple[int, float, float, DialogueOverlay | MenuOverlay, np.ndarray] | None = None
    for k in range(int(seconds * MODEL_FPS)):
        now = k / MODEL_FPS
        steps = round((k + 1) * ATARI_HZ / MODEL_FPS) - round(k * ATARI_HZ / MODEL_FPS)
        screen = ale.getScreenRGB()
        if overlays and segment is None and now >= next_segment:
            # Twice the Atari's resolution, square pixels: text drawn there is as legible as a
            # real game's before the frame is shrunk.
            big = cv2.resize(screen, (320, 420), interpolation=cv2.INTER_NEAREST)
            dialogue = rng.random() < 0.55
            painter: DialogueOverlay | MenuOverlay = (
                DialogueOverlay(rng=rng, width=320, height=420)
                if dialogue
                else MenuOverlay(rng=rng, width=320, height=420)
            )
            kind = SCENE_CLASSES.index("dialogue" if dialogue else "menu")
            segment = (kind, now, now + float(rng.uniform(3.0, 7.0)), painter, big)
        if segment is not None:
            kind, began, until, painter, big = segment
            image = painter.draw(big, now - began)
            labels.append(kind)
            if now + 1.0 / MODEL_FPS >= until:
                segment = None
                next_segment = now + rng.uniform(15, 40)
        else:
            image = screen
            labels.append(label)
            if rng.random() < 0.25:  # sticky: keep an action for a few steps, as a player does
                action = actions[int(rng.integers(len(actions)))]
            for _ in range(steps):
                ale.act(action)
                if ale.game_over():
                    ale.reset_game()
        frames.append(cv2.resize(image, (STORE_WIDTH, STORE_HEIGHT), interpolation=cv2.INTER_AREA))
    n = len(frames)
    nan = np.full(n, np.nan, dtype=np.float32)
    return Clip(
        frames=np.stack(frames),
        labels=np.array(labels, dtype=np.int16),
        monsters=nan.copy(),
        arousal=nan.copy(),
        valence=nan.copy(),
        classes=SCENE_CLASSES,
        group=f"atari/{name}",
        source="atari",
        meta={"seed": seed, "seconds": seconds, "genre": GAMES[name]},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--games", default="train", help="train | held-out | comma list")
    parser.add_argument("--seconds", type=float, default=60.0, help="play time per game")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz clips")
    args = parser.parse_args(argv)
    if args.games == "train":
        names = [g for g in GAMES if g not in HELD_OUT]
    elif args.games == "held-out":
        names = list(HELD_OUT)
    else:
        names = [g.strip() for g in args.games.split(",") if g.strip()]
    for index, name in enumerate(names):
        clip = record_game(name, seconds=args.seconds, seed=args.seed + index)
        save_clip(clip, args.out / f"atari_{name}.npz")
        counts = np.bincount(clip.labels, minlength=len(SCENE_CLASSES))
        shares = ", ".join(
            f"{c} {n / len(clip):.0%}" for c, n in zip(SCENE_CLASSES, counts, strict=False)
        )
        print(f"{clip.group}: {len(clip)} frames ({shares})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
