"""Teaching the game mode one game: the adaptation on a held-out game, undo, custom scenes,
profiles.

The accuracy figure uses Red Eclipse (``models/footage/val/redeclipse``), a game the general
scene model never saw. The footage is read by :func:`models.scene.clip_windows` (the same
numbers as the live reader, in one batch, so the test takes seconds), and taught through the
:class:`~daemon.analysis.teach.Teacher` exactly as ``teach`` commands drive it: one
``teach(scene, seconds)`` per stretch of a scene, then the windows as the game mode offers them.
(The file source plays only in real time, so the live path is tested with a few seconds in
``tests/test_teach_live.py``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.analysis import profiles
from daemon.analysis.teach import Teacher, TeachError
from models.scene import DEFAULT_WEIGHTS, LoadedScene, clip_windows, load_checkpoint
from models.scene_adapt import adapt, balanced_accuracy, split_by_time
from models.scene_data import load_footage

FOOTAGE = Path(__file__).resolve().parent.parent / "models" / "footage" / "val" / "redeclipse"
CLIPS = ("match_bath_800x600", "match_bloodlust_1024x576")
WINDOW_S = 0.5
TAUGHT_WINDOWS = 60  # per class and clip: 30 s each, 60 s per class in all


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


@pytest.fixture(scope="module")
def general() -> LoadedScene:
    return load_checkpoint(DEFAULT_WEIGHTS)


@pytest.fixture(scope="module")
def red_eclipse(general: LoadedScene) -> list[list[tuple[np.ndarray, str | None, str]]]:
    """Per clip, every 0.5 s window: (features, the game's label or None, general reading)."""
    clips = []
    for name in CLIPS:
        clip = load_footage(FOOTAGE / f"{name}.mp4")
        rows = []
        for k, (reading, features) in enumerate(clip_windows(general, clip.frames)):
            first, last = 4 * k, min(4 * k + 3, len(clip) - 1)
            label = int(clip.labels[last])
            name_ = clip.classes[label] if label >= 0 and clip.labels[first] == label else None
            rows.append((features, name_, reading.scene))
        clips.append(rows)
    return clips


def test_a_minute_per_scene_teaches_red_eclipse_better_than_the_general_model(
    red_eclipse: list[list[tuple[np.ndarray, str | None, str]]],
) -> None:
    teacher = Teacher(model_hash="test", worker="thread")
    evaluation: list[tuple[np.ndarray, str, str]] = []
    taught = {"combat": 0.0, "menu": 0.0}
    for rows in red_eclipse:
        counts = {"combat": 0, "menu": 0}
        last_taught = 0
        k = 0
        while k < len(rows):
            label = rows[k][1]
            if label is None or counts[label] >= TAUGHT_WINDOWS:
                k += 1
                continue
            # The user holds the button for this stretch of the scene (as long as it lasts).
            run = 0
            while k + run < len(rows) and rows[k + run][1] == label:
                run += 1
            run = min(run, TAUGHT_WINDOWS - counts[label])
            teacher.teach(label, run * WINDOW_S)
            for features, _, reading in rows[k : k + run]:
                teacher.observe(features, reading, WINDOW_S)
            counts[label] += run
            taught[label] += run * WINDOW_S
            k += run
            last_taught = k
        evaluation += [(f, n, g) for f, n, g in rows[last_taught:] if n is not None]
    assert taught == {"combat": 60.0, "menu": 60.0}
    assert teacher.wait_idle(60)
    assert teacher.promote()
    state = teacher.snapshot()
    assert state["adapted"] and state["seconds"] == {"combat": 60.0, "menu": 60.0}
    truth = np.array([n for _, n, _ in evaluation])
    adapted = np.array(
        [
            max(p, key=p.__getitem__)
            for p in (teacher.head_probs(f) for f, _, _ in evaluation)
            if p is not None
        ]
    )
    general = np.array([g for _, _, g in evaluation])
    adapted_acc = float(np.mean(adapted == truth))
    general_acc = float(np.mean(general == truth))
    print(
        f"\nRed Eclipse, {len(truth)} windows of other minutes ({np.sum(truth == 'menu')} menu): "
        f"adapted {adapted_acc:.3f} (balanced {balanced_accuracy(truth, adapted):.3f}), general "
        f"{general_acc:.3f} (balanced {balanced_accuracy(truth, general):.3f}); trained in "
        f"{state['train_seconds']:.2f} s"
    )
    # Measured 0.84 (menu recall 0.71) against 0.08: short of the 0.9 (see README).
    assert adapted_acc >= 0.8 and balanced_accuracy(truth, adapted) >= 0.7
    assert general_acc < adapted_acc - 0.3
    assert state["train_seconds"] < 10.0


def test_held_back_examples_are_the_latest_taught_of_each_class() -> None:
    labels = ["combat"] * 8 + ["menu"] * 4 + ["combat"] * 4
    held = split_by_time(labels)
    assert list(np.flatnonzero(held)) == [11, 13, 14, 15]  # menu's last, combat's last 3


def test_the_head_takes_over_only_when_it_beats_the_general_model(
    rng: np.random.Generator,
) -> None:
    x = np.concatenate([rng.normal(0, 1, (40, 6)), rng.normal(3, 1, (40, 6))]).astype(np.float32)
    labels = ["combat"] * 40 + ["boss"] * 40
    better = adapt(x, labels, ["combat"] * 80)
    assert better.takes_over and better.adapted_accuracy == 1.0 and better.general_accuracy == 0.5
    perfect = adapt(x, labels, labels)
    assert not perfect.takes_over  # a tie keeps the general model
    one = adapt(x[:40], labels[:40], labels[:40])
    assert one.head is None and not one.takes_over


def test_undo_drops_the_last_batch_and_a_custom_scene_is_read(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    teacher = Teacher(model_hash="abc", game="Test Game", folder=tmp_path, worker="thread")
    with pytest.raises(TeachError):
        teacher.undo()
    for scene, mean in (("exploration", 0.0), ("boss", 4.0), ("menu", -4.0)):
        teacher.teach(scene, 10.0)
        for _ in range(20):
            teacher.observe(rng.normal(mean, 1.0, 8).astype(np.float32), "exploration", 0.5)
    assert teacher.wait_idle(30) and teacher.promote()
    assert teacher.snapshot()["seconds"] == {"exploration": 10.0, "boss": 10.0, "menu": 10.0}
    probs = teacher.head_probs(np.full(8, 4.0, np.float32))
    assert probs is not None and max(probs, key=probs.__getitem__) == "boss"
    assert teacher.undo() == "10.0 s of menu"
    assert teacher.wait_idle(30) and teacher.promote()
    probs = teacher.head_probs(np.full(8, -4.0, np.float32))
    assert probs is not None and set(probs) == {"exploration", "boss"}
    teacher.undo()
    assert teacher.wait_idle(30) and teacher.promote()
    assert teacher.head_probs(np.zeros(8, np.float32)) is None  # one scene: the general model
    assert teacher.snapshot()["adapted"] is False

    # The profile was saved at each change; a teacher of the same game reads it back.
    again = Teacher(model_hash="abc", game="Test Game", folder=tmp_path, worker="thread")
    assert again.snapshot()["seconds"] == {"exploration": 10.0}
    [summary] = profiles.list_profiles(tmp_path)
    assert summary.game == "Test Game" and summary.seconds == {"exploration": 10.0}
    with pytest.raises(profiles.ProfileError, match="taught on scene model abc, but this run uses"):
        Teacher(model_hash="other", game="Test Game", folder=tmp_path, worker="thread")
