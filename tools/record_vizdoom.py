#!/usr/bin/env python3
"""Record labelled ViZDoom footage for the scene model: exploration, combat, menus, dialogue.

A scripted agent plays (it walks forward, turns when stuck, opens doors, and when a monster is
visible turns to it and fires), headless at 320x240. Every frame is shrunk to 96x72 and stored
at the model's 8 frames per second with, per frame:

- **visible monsters**: live monsters in ViZDoom's labels buffer (``object_category ==
  "Monster"``), i.e. the monsters actually drawn on screen this frame;
- **class**: ``combat`` while a monster has been visible within the last second, or the player
  was hurt within the last second with a monster seen in the last three (health lost to a
  damaging floor is not a fight), else ``exploration``; ``menu`` while a real Doom menu
  (``menu_main``, ``menu_options``, ``menu_quit``, ``menu_save``, ``menu_load``) or a
  composited menu is up;
  ``dialogue`` while a composited dialogue box is up (see ``tools/scene_overlays.py``);
- **arousal** (intensity) = -0.6 + 1.5 (1 - exp(-m / 1.5)) + 0.3 hurt, clipped to [-1, 1], from the
  visible monsters m and whether the player lost health within the last second; menus -0.8,
  dialogue -0.5;
- **valence** = 0.35 - 0.5 (1 - health / 100) - 0.35 min(1, m / 3) - 0.3 hurt, clipped; menus
  and dialogue +0.1 (see the model card for why).

Maps: ``--maps scenarios`` (the ViZDoom scenarios), ``freedoom2:MAP01-MAP12`` (a range of one
campaign) or names separated by commas. freedoom1 is the independent evaluation set: record it
with ``--out .cache/scene/eval`` and never train or tune on it.

    .venv/bin/python tools/record_vizdoom.py --maps scenarios --seconds 75 --out .cache/scene/train
    .venv/bin/python tools/record_vizdoom.py --maps freedoom2:MAP01-MAP12 --seconds 150 \\
        --out .cache/scene/train
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

TIC_RATE = 35  # Doom's game tics per second
COMBAT, EXPLORATION, DIALOGUE, MENU = (SCENE_CLASSES.index(n) for n in SCENE_CLASSES)
SCENARIOS = (
    "defend_the_center",
    "defend_the_line",
    "deadly_corridor",
    "deathmatch",
    "health_gathering",
    "health_gathering_supreme",
    "my_way_home",
    "take_cover",
    "predict_position",
    "basic",
)
DOOM_MENUS = ("menu_main", "menu_options", "menu_quit", "menu_save", "menu_load")
HURT_MEMORY_S = 1.0  # a hit keeps a window "combat" this long
SIGHT_MEMORY_S = 1.0  # so does a monster that was just seen
ATTACKER_MEMORY_S = 3.0  # a hit counts as combat when a monster was seen this recently


def arousal_target(monsters: float, hurt: bool) -> float:
    """Intensity of a gameplay frame from what threatens the player (see the module docstring)."""
    value = -0.6 + 1.5 * (1.0 - math.exp(-monsters / 1.5)) + (0.3 if hurt else 0.0)
    return max(-1.0, min(1.0, value))


def valence_target(monsters: float, hurt: bool, health: float) -> float:
    """Pleasantness of a gameplay frame (see the module docstring and the model card)."""
    value = 0.35 - 0.5 * (1.0 - max(0.0, min(100.0, health)) / 100.0)
    value -= 0.35 * min(1.0, monsters / 3.0) + (0.3 if hurt else 0.0)
    return max(-1.0, min(1.0, value))


def parse_maps(spec: str) -> list[tuple[str, str]]:
    """``scenarios`` | ``freedoom2:MAP01-MAP12`` | ``freedoom1:E1M1-E1M4`` | comma list.

    Returns (config, map) pairs; config is a scenario or campaign name, map empty for scenarios.
    """
    maps: list[tuple[str, str]] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "scenarios":
            maps += [(name, "") for name in SCENARIOS]
        elif ":" in part:
            campaign, names = part.split(":", 1)
            if "-" in names:
                first, last = names.split("-", 1)
                prefix = first.rstrip("0123456789")
                if prefix.startswith("E") and "M" in first:  # E1M1-E1M4
                    episode, first_map = first[1:].split("M")
                    last_map = int(last.split("M")[1])
                    maps += [
                        (campaign, f"E{episode}M{k}") for k in range(int(first_map), last_map + 1)
                    ]
                else:
                    low, high = int(first[len(prefix) :]), int(last[len(prefix) :])
                    maps += [(campaign, f"{prefix}{k:02d}") for k in range(low, high + 1)]
            else:
                maps.append((campaign, names))
        elif part:
            maps.append((part, ""))
    return maps


@dataclass
class Agent:
    """A scripted player: explores, opens doors, faces and shoots visible monsters."""

    rng: np.random.Generator
    buttons: list[Any]
    turn_left: int = 0
    turn_steps: int = 0
    stuck: int = 0
    last_xy: tuple[float, float] = (0.0, 0.0)
    wander: int = 0
    history: list[int] = field(default_factory=list)

    def act(self, monsters: list[Any], x: float, y: float, width: int) -> list[float]:
        import vizdoom as vzd

        action = [0.0] * len(self.buttons)

        def press(button: Any) -> None:
            if button in self.buttons:
                action[self.buttons.index(button)] = 1.0

        moved = math.hypot(x - self.last_xy[0], y - self.last_xy[1])
        self.last_xy = (x, y)
        self.stuck = self.stuck + 1 if moved < 2.0 else 0
        if monsters:
            target = max(monsters, key=lambda m: m.width * m.height)
            dx = target.x + target.width / 2 - width / 2
            if dx < -12:
                press(vzd.Button.TURN_LEFT)
            elif dx > 12:
                press(vzd.Button.TURN_RIGHT)
            if abs(dx) < 30 or self.rng.random() < 0.2:
                press(vzd.Button.ATTACK)
            if self.rng.random() < 0.3:
                press(vzd.Button.MOVE_LEFT if self.rng.random() < 0.5 else vzd.Button.MOVE_RIGHT)
            return action
        if self.turn_steps > 0:
            self.turn_steps -= 1
            press(vzd.Button.TURN_LEFT if self.turn_left else vzd.Button.TURN_RIGHT)
            if self.rng.random() < 0.5:
                press(vzd.Button.MOVE_FORWARD)
            return action
        if self.stuck >= 4 or self.rng.random() < 0.04:
            self.turn_left = int(self.rng.integers(2))
            self.turn_steps = int(self.rng.integers(3, 14))
            self.stuck = 0
            press(vzd.Button.USE)
            return action
        press(vzd.Button.MOVE_FORWARD)
        if self.rng.random() < 0.3:
            press(vzd.Button.SPEED)
        if self.rng.random() < 0.1:
            press(vzd.Button.USE)
        if self.rng.random() < 0.15:
            press(vzd.Button.TURN_LEFT if self.rng.random() < 0.5 else vzd.Button.TURN_RIGHT)
        return action


def _new_game(config: str, doom_map: str, seed: int) -> Any:
    import vizdoom as vzd

    root = Path(os.path.dirname(vzd.__file__))
    game = vzd.DoomGame()
    game.load_config(str(root / "scenarios" / f"{config}.cfg"))
    if doom_map:
        game.set_doom_map(doom_map)
    game.set_window_visible(False)
    game.set_screen_resolution(vzd.ScreenResolution.RES_320X240)
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_labels_buffer_enabled(True)
    game.set_audio_buffer_enabled(False)  # the audio buffer crashes headless
    game.set_depth_buffer_enabled(False)
    game.set_automap_buffer_enabled(False)
    game.set_render_hud(True)
    game.set_mode(vzd.Mode.PLAYER)
    game.set_episode_timeout(0)
    game.set_seed(seed)
    game.set_doom_skill(2)
    game.set_available_buttons(
        [
            vzd.Button.ATTACK,
            vzd.Button.USE,
            vzd.Button.SPEED,
            vzd.Button.MOVE_FORWARD,
            vzd.Button.MOVE_BACKWARD,
            vzd.Button.MOVE_LEFT,
            vzd.Button.MOVE_RIGHT,
            vzd.Button.TURN_LEFT,
            vzd.Button.TURN_RIGHT,
        ]
    )
    game.set_available_game_variables(
        [vzd.GameVariable.HEALTH, vzd.GameVariable.POSITION_X, vzd.GameVariable.POSITION_Y]
    )
    game.init()
    return game


def _shrink(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (STORE_WIDTH, STORE_HEIGHT), interpolation=cv2.INTER_AREA)


def record_map(
    config: str,
    doom_map: str,
    *,
    seconds: float,
    seed: int,
    overlays: bool = True,
    full_frames: list[np.ndarray] | None = None,
) -> Clip:
    """Play one map (or scenario) for ``seconds`` of game time and return the labelled clip.

    overlays : insert real Doom menus and composited menus and dialogues now and then.
    full_frames : when given, also receives every frame at the game's 320x240 (for writing a
        real-resolution video of the clip).
    """
    import vizdoom as vzd

    rng = np.random.default_rng(seed)
    game = _new_game(config, doom_map, seed)
    agent = Agent(rng=rng, buttons=list(game.get_available_buttons()))
    frames: list[np.ndarray] = []
    labels: list[int] = []
    monsters_seen: list[float] = []
    arousal: list[float] = []
    valence: list[float] = []
    total = int(seconds * MODEL_FPS)
    last_hurt = -1e9
    last_sight = -1e9
    previous_health = 100.0
    next_segment = rng.uniform(8, 25)
    segment: tuple[str, float, float, Any, np.ndarray] | None = None
    try:
        for k in range(total):
            now = k / MODEL_FPS
            tics = round((k + 1) * TIC_RATE / MODEL_FPS) - round(k * TIC_RATE / MODEL_FPS)
            if game.is_episode_finished() or game.is_player_dead():
                game.new_episode()
                previous_health = 100.0
            state = game.get_state()
            if state is None:
                game.new_episode()
                state = game.get_state()
            if overlays and segment is None and now >= next_segment:
                kind = str(rng.choice(["doom_menu", "menu", "dialogue"], p=[0.3, 0.3, 0.4]))
                length = float(rng.uniform(3.0, 7.0))
                height, width = state.screen_buffer.shape[:2]
                background = state.screen_buffer.copy()
                if kind == "doom_menu":
                    game.send_game_command(str(rng.choice(DOOM_MENUS)))
                    painter: Any = None
                elif kind == "menu":
                    painter = MenuOverlay(rng=rng, width=width, height=height)
                else:
                    painter = DialogueOverlay(rng=rng, width=width, height=height)
                segment = (kind, now, now + length, painter, background)
            if segment is not None:
                kind, began, until, painter, background = segment
                if kind == "doom_menu":
                    game.make_action([0.0] * len(agent.buttons), tics)
                    shown = game.get_state()
                    image = shown.screen_buffer if shown is not None else background
                else:
                    image = painter.draw(background, now - began)
                frames.append(_shrink(image))
                if full_frames is not None:
                    full_frames.append(np.array(image))
                is_menu = kind != "dialogue"
                labels.append(MENU if is_menu else DIALOGUE)
                monsters_seen.append(np.nan)
                arousal.append(-0.8 if is_menu else -0.5)
                valence.append(0.1)
                if now + 1.0 / MODEL_FPS >= until:
                    if kind == "doom_menu":
                        game.send_game_command("closemenu")
                    segment = None
                    next_segment = now + rng.uniform(15, 40)
                continue
            visible = [lab for lab in state.labels if lab.object_category == "Monster"]
            health, x, y = (float(v) for v in state.game_variables)
            if health < previous_health - 0.5:
                last_hurt = now
            previous_health = health
            if visible:
                last_sight = now
            # Health lost with no monster seen lately is the floor or a trap, not a fight.
            hurt = now - last_hurt <= HURT_MEMORY_S and now - last_sight <= ATTACKER_MEMORY_S
            combat = hurt or now - last_sight <= SIGHT_MEMORY_S
            frames.append(_shrink(state.screen_buffer))
            if full_frames is not None:
                full_frames.append(state.screen_buffer.copy())
            labels.append(COMBAT if combat else EXPLORATION)
            monsters_seen.append(float(len(visible)))
            arousal.append(arousal_target(len(visible), hurt))
            valence.append(valence_target(len(visible), hurt, health))
            action = agent.act(visible, x, y, state.screen_buffer.shape[1])
            game.make_action(action, tics)
    finally:
        game.close()
    group = f"vizdoom/{config}/{doom_map}" if doom_map else f"vizdoom/{config}"
    return Clip(
        frames=np.stack(frames),
        labels=np.array(labels, dtype=np.int16),
        monsters=np.array(monsters_seen, dtype=np.float32),
        arousal=np.array(arousal, dtype=np.float32),
        valence=np.array(valence, dtype=np.float32),
        classes=SCENE_CLASSES,
        group=group,
        source="vizdoom",
        meta={"seed": seed, "seconds": seconds, "vizdoom": vzd.__version__},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--maps", required=True, help="scenarios | freedoom2:MAP01-MAP12 | ...")
    parser.add_argument("--seconds", type=float, default=120.0, help="game time per map")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz clips")
    parser.add_argument("--no-overlays", action="store_true", help="gameplay only")
    args = parser.parse_args(argv)
    for index, (config, doom_map) in enumerate(parse_maps(args.maps)):
        clip = record_map(
            config,
            doom_map,
            seconds=args.seconds,
            seed=args.seed + index,
            overlays=not args.no_overlays,
        )
        name = clip.group.replace("/", "_")
        save_clip(clip, args.out / f"{name}.npz")
        counts = np.bincount(clip.labels[clip.labels >= 0], minlength=len(SCENE_CLASSES))
        shares = ", ".join(
            f"{c} {n / len(clip):.0%}" for c, n in zip(SCENE_CLASSES, counts, strict=False)
        )
        print(f"{clip.group}: {len(clip)} frames ({shares}), monsters mean "
              f"{np.nanmean(clip.monsters):.2f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
