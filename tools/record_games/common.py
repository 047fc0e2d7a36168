"""What every game recorder shares: its description, a clip plan, one run, and writing the clip.

A recorder module defines a :class:`Game` (name, genre, split, Debian packages, the class of each
of its label states) and a list of :class:`ClipPlan` (resolution, HUD, seconds, seed, options),
and a function that records one plan inside :func:`game_session`. :func:`finish_clip` turns the
:class:`~harness.Recording` into committed footage (``models/scene_data.save_footage``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.scene_data import MODEL_FPS, SCENE_CLASSES, Clip, save_footage

from .harness import SETTLE, Capture, GameProcess, Recording, StateFile, XInput, Xvfb, game_env

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(__file__).resolve().parent / "config"

# Targets for the calm classes, as the Doom recorder sets them (models/SCENE_CARD.md): a menu is
# safe and paused, dialogue is calm.
MENU_AFFECT = (-0.8, 0.1)
# The state of a frame with (almost) nothing on it.
BLANK = "blank"
DIALOGUE_AFFECT = (-0.5, 0.1)

# (states, cues) -> (states, arousal, valence): a game's own refinement of the recorder's states
# from the cues it logged (a fight around each hit) and its targets per frame.
Annotate = Callable[[list[str], Mapping[str, np.ndarray]], tuple[list[str], np.ndarray, np.ndarray]]


def default_affect(cls: str | None) -> tuple[float, float]:
    """(arousal, valence) for a class whose targets do not depend on the game; NaN otherwise."""
    if cls == "menu":
        return MENU_AFFECT
    if cls == "dialogue":
        return DIALOGUE_AFFECT
    return (math.nan, math.nan)


def default_targets(game: Game, states: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (arousal, valence): fixed for menus and dialogue, NaN for the rest."""
    # Raw recorder states an annotator is about to refine may be missing from ``game.states``.
    pairs = np.array(
        [default_affect(None if s in (SETTLE, BLANK) else game.states.get(s)) for s in states],
        dtype=np.float32,
    )
    pairs = pairs.reshape(len(states), 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def around(events: np.ndarray, *, before_s: float, after_s: float) -> np.ndarray:
    """Per frame, the sum of ``events`` from ``before_s`` ahead to ``after_s`` back in time.

    A frame is "in" an event that happens up to ``before_s`` later (the enemy is on screen
    before the first hit lands) or happened up to ``after_s`` earlier.
    """
    values = np.nan_to_num(np.asarray(events, dtype=np.float64))
    ahead, back = round(before_s * MODEL_FPS), round(after_s * MODEL_FPS)
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    hi = np.minimum(len(values), index + ahead + 1)
    lo = np.maximum(0, index - back)
    return (total[hi] - total[lo]).astype(np.float32)


@dataclass(frozen=True)
class Game:
    """One game: what it is, where its footage goes, and what its label states mean.

    name : folder name under ``models/footage/<split>/``.
    genre : a few words ("first-person shooter").
    split : ``"train"`` or ``"val"`` (held-out games, never trained on).
    packages : the Debian packages the recorder needs (beyond the harness's).
    states : each label state's scene class, ``None`` when frames in it are not labelled.
    annotate : refines the recorder's states from the game's cues and gives each frame its
        (arousal, valence); the default keeps the states, gives menus and dialogue the fixed
        targets and leaves gameplay without targets (NaN).
    """

    name: str
    genre: str
    split: str
    packages: tuple[str, ...]
    states: Mapping[str, str | None]
    annotate: Annotate | None = None

    def class_of(self, state: str) -> str | None:
        if state in (SETTLE, BLANK):
            return None
        return self.states[state]


@dataclass(frozen=True)
class ClipPlan:
    """One clip to record: its file name, screen size, HUD, length, seed and game options."""

    name: str
    width: int
    height: int
    seconds: float
    seed: int
    hud: str = "on"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Session:
    """A running game: its display, process, input and capture."""

    display: Xvfb
    process: GameProcess
    xinput: XInput
    capture: Capture
    home: Path
    work: Path
    rng: random.Random
    plan: ClipPlan
    shots: Path | None = None
    _shot_count: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.alive()

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.process.log_text()[-2000:]
            raise RuntimeError(f"the game exited early; the end of its log:\n{tail}")

    def state(self, name: str, *, settle_s: float | None = None) -> None:
        self.capture.set_state(name, settle_s=settle_s)

    def wait(self, seconds: float) -> None:
        """Sleep, failing early if the game died."""
        end = time.monotonic() + seconds
        while True:
            self.check_alive()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.5, left))

    def recorded_s(self) -> float:
        return self.capture.seconds()

    def done(self) -> bool:
        return self.recorded_s() >= self.plan.seconds

    def wait_log(self, text: str, *, timeout_s: float = 120, then_s: float = 0.0) -> None:
        """Wait until the game's own output contains ``text`` (then ``then_s`` more)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.process.log_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the game never printed {text!r}")
            self.wait(0.5)
        self.wait(then_s)

    def moved(self, before: np.ndarray | None, threshold: float = 4.0) -> bool:
        """Whether the picture changed since ``before`` (a frame from :meth:`latest`)."""
        now = self.capture.latest()
        if before is None or now is None:
            return True
        diff = np.abs(now.astype(np.int16) - before.astype(np.int16))
        return float(diff.mean()) > threshold

    def wait_change(
        self,
        *,
        threshold: float = 12.0,
        timeout_s: float = 30.0,
        before: np.ndarray | None = None,
    ) -> bool:
        """Wait until the picture differs clearly from now, or from ``before`` when given (a
        loading screen gives way)."""
        if before is None:
            self.wait(0.3)
            before = self.capture.latest()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.wait(0.25)
            if self.moved(before, threshold):
                return True
        return False

    def wait_drawn(self, *, pictures: int = 2, timeout_s: float = 6.0) -> None:
        """Wait until the game has drawn ``pictures`` new pictures since now (or ``timeout_s``):
        what a key changed is on screen only then, and a slow software renderer can take
        seconds to draw its next picture."""
        seen = 0
        before = self.capture.latest()
        deadline = time.monotonic() + timeout_s
        while seen < pictures and time.monotonic() < deadline:
            self.wait(0.05)
            if self.moved(before, threshold=0.3):
                seen += 1
                before = self.capture.latest()

    def shot(self, tag: str, *, every: int = 1) -> None:
        """A full-size screenshot into the shots folder (for checking what is on screen)."""
        if self.shots is None:
            return
        count = self._shot_count.get(tag, 0)
        self._shot_count[tag] = count + 1
        if count % every == 0:
            self.capture.grab_full(self.shots / f"{self.plan.name}_{tag}_{count:03d}.png")


@contextlib.contextmanager
def game_session(
    plan: ClipPlan,
    *,
    argv: Sequence[str],
    window: str,
    work: Path,
    home: Path,
    screen: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    state_log: Path | None = None,
    settle_s: float = 0.5,
    window_timeout_s: float = 120,
    shots: Path | None = None,
    whole_screen: bool = False,
    cue_probe: Callable[[], dict[str, float]] | None = None,
) -> Iterator[Session]:
    """Start Xvfb, the game, and the capture (paused until the recorder resumes it)."""
    width, height = screen or (plan.width, plan.height)
    with Xvfb(width=width, height=height) as display:
        environment = game_env(display.display, home, env)
        with GameProcess(
            list(argv), env=environment, log_path=work / "game.log", cwd=cwd
        ) as process:
            xinput = XInput(display.display)
            xinput.wait_window(window, timeout_s=window_timeout_s, alive=process.alive)
            # Without a window manager nothing gives the game the keyboard focus (Irrlicht
            # games ignore keys without it).
            xinput.focus()
            capture = Capture(
                display=display.display,
                region=None if whole_screen else xinput.geometry,
                probe=StateFile(state_log) if state_log is not None else None,
                cue_probe=cue_probe,
                settle_s=settle_s,
            )
            capture.pause()
            with capture:
                yield Session(
                    display=display,
                    process=process,
                    xinput=xinput,
                    capture=capture,
                    home=home,
                    work=work,
                    rng=random.Random(plan.seed),
                    plan=plan,
                    shots=shots,
                )


def _repeats_by_class(repeated: Sequence[bool], classes: Sequence[str | None]) -> dict[str, float]:
    """Per labelled class, the share of its frames identical to the grab before."""
    shares: dict[str, float] = {}
    if len(repeated) != len(classes):
        return shares
    for cls in SCENE_CLASSES:
        flags = [r for r, c in zip(repeated, classes, strict=True) if c == cls]
        if flags:
            shares[cls] = round(sum(flags) / len(flags), 3)
    return shares


def finish_clip(
    game: Game,
    plan: ClipPlan,
    recording: Recording,
    *,
    out_root: Path,
    command: str,
    extra_meta: Mapping[str, Any] | None = None,
    min_frames: int = 80,
) -> Path | None:
    """Write ``recording`` as ``out_root/<split>/<game>/<plan.name>.mp4`` + ``.json``."""
    n = len(recording)
    if n < min_frames:
        print(f"{game.name}/{plan.name}: only {n} frames, not written")
        return None
    cues = {k: np.asarray(v, dtype=np.float32) for k, v in recording.cues.items()}
    recorded = list(recording.states)
    # A black (or flat) frame - a fade, a window not drawn yet - shows no scene at all.
    for i, frame in enumerate(recording.frames):
        if int(frame.max()) - int(frame.min()) < 12:
            recorded[i] = BLANK
    if game.annotate is not None:
        states, arousal, valence = game.annotate(recorded, cues)
    else:
        states = recorded
        arousal, valence = default_targets(game, states)
    classes = [game.class_of(s) for s in states]
    labels = np.array([-1 if c is None else SCENE_CLASSES.index(c) for c in classes], np.int16)
    # No targets where there is no label.
    arousal = np.where(labels >= 0, arousal, np.nan).astype(np.float32)
    valence = np.where(labels >= 0, valence, np.nan).astype(np.float32)
    monsters = cues.get("enemies", np.full(n, np.nan, dtype=np.float32))
    state_classes: dict[str, str | None] = {s: game.class_of(s) for s in sorted(set(states))}
    meta: dict[str, Any] = {
        "game": game.name,
        "genre": game.genre,
        "split": game.split,
        "resolution": [plan.width, plan.height],
        "hud": plan.hud,
        "seed": plan.seed,
        "options": dict(plan.options),
        "recorder": f"tools/record_games/{game.name}.py",
        "command": command,
        "packages": list(game.packages),
        "recorded": _dt.date.today().isoformat(),
        # Grabs identical to the previous one: the game drew fewer than 8 new frames a second.
        "repeated_frames": recording.repeats,
        "repeated_share_by_class": _repeats_by_class(recording.repeated, classes),
    }
    if extra_meta:
        meta.update(extra_meta)
    clip = Clip(
        frames=np.stack(recording.frames),
        labels=labels,
        monsters=monsters,
        arousal=arousal,
        valence=valence,
        classes=SCENE_CLASSES,
        group=f"games/{game.name}/{plan.name}",
        source=f"games/{game.name}",
        fps=MODEL_FPS,
        meta=meta,
    )
    path = out_root / game.split / game.name / f"{plan.name}.mp4"
    save_footage(clip, path, states=states, state_classes=state_classes, cues=cues)
    counts = {c: int((labels == i).sum()) for i, c in enumerate(SCENE_CLASSES)}
    print(
        f"{game.name}/{plan.name}: {n} frames ({n / MODEL_FPS / 60:.1f} min), "
        f"{counts}, unlabelled {int((labels < 0).sum())}, repeats {recording.repeats}, "
        f"{path.stat().st_size / 1e6:.2f} MB"
    )
    return path
