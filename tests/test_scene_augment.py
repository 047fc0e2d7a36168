"""Stuttered training copies (models/scene_augment.py): a slow renderer's picture, same labels;
held pictures; stage-1 frames shown with no motion and sources drawn equally
(models/scene_training.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.scene import SceneNetConfig
from models.scene_augment import HELD_SHARE, has_play, stutter_copies, stutter_indices, stuttered
from models.scene_data import SCENE_CLASSES, Clip
from models.scene_training import _by_source, frame_batch


def _clip(label: int, n: int = 400) -> Clip:
    # Every frame different (a counter in the pixels), so repeats are the augmentation's only.
    frames = np.zeros((n, 72, 96, 3), dtype=np.uint8)
    frames[:, 0, 0, 0] = np.arange(n) % 256
    frames[:, 0, 1, 0] = np.arange(n) // 256
    return Clip.empty_targets(frames, label, classes=SCENE_CLASSES, group="g", source="s")


def test_stutter_holds_the_newest_drawn_frame_at_the_asked_rate() -> None:
    rng = np.random.default_rng(3)
    index = stutter_indices(20_000, rng, 0.25)
    assert index[0] == 0
    assert np.all(np.diff(index) >= 0) and np.all(index <= np.arange(20_000))
    fresh = np.mean(np.diff(index) > 0)
    assert fresh == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError):
        stutter_indices(10, rng, 0.0)


def test_a_stuttered_copy_keeps_labels_and_repeats_frames() -> None:
    clip = _clip(SCENE_CLASSES.index("combat"))
    copy = stuttered(clip, np.random.default_rng(5), new_share=(0.3, 0.3))
    assert copy.group.endswith("#stutter") and copy.meta["stutter_new_share"] == 0.3
    np.testing.assert_array_equal(copy.labels, clip.labels)
    same = np.all(copy.frames[1:] == copy.frames[:-1], axis=(1, 2, 3))
    assert 0.6 < same.mean() < 0.8
    assert clip.frames is not copy.frames and not np.all(clip.frames[1:] == clip.frames[:-1])


def test_only_clips_with_play_are_copied() -> None:
    play = [_clip(SCENE_CLASSES.index(c), 40) for c in ("combat", "exploration")]
    still = [_clip(SCENE_CLASSES.index(c), 40) for c in ("menu", "dialogue")]
    assert [has_play(c) for c in play + still] == [True, True, False, False]
    copies = stutter_copies(play + still, share=1.0, seed=0)
    assert len(copies) == 2
    assert stutter_copies(play + still, share=0.0, seed=0) == []


def test_a_held_copy_shows_each_picture_for_seconds() -> None:
    clip = _clip(SCENE_CLASSES.index("exploration"), 4000)
    (copy,) = stutter_copies([clip], share=1.0, seed=2, new_share=HELD_SHARE)
    new = np.flatnonzero(np.any(copy.frames[1:] != copy.frames[:-1], axis=(1, 2, 3)))
    held_s = np.diff(new).mean() / 8.0  # grabs at the model's 8 fps
    assert 1.5 <= held_s <= 4.0
    # Most one-second windows (8 grabs) show a single picture.
    windows = [copy.frames[k - 8 : k] for k in range(8, len(copy), 4)]
    assert np.mean([np.all(w == w[0]) for w in windows]) > 0.6


def test_frames_shown_with_no_motion_have_an_empty_motion_channel() -> None:
    moving = np.random.default_rng(0).integers(0, 256, (40, 72, 96, 3), dtype=np.uint8)
    clip = Clip.empty_targets(moving, 0, classes=SCENE_CLASSES, group="g", source="s")
    picks = [(0, i) for i in range(1, 40)]
    config = SceneNetConfig()
    rng = np.random.default_rng(1)
    motion = frame_batch([clip], picks, config, rng)[:, 3]
    still = frame_batch([clip], picks, config, rng, still_reference=1.0)[:, 3]
    half = frame_batch([clip], picks, config, rng, still_reference=0.5)[:, 3]
    assert motion.abs().amax(dim=(1, 2)).min() > 0.1
    assert still.abs().max() == 0
    assert 0.2 < (half.abs().amax(dim=(1, 2)) == 0).float().mean() < 0.8


def test_balanced_sources_split_each_class_by_where_it_came_from() -> None:
    big = Clip.empty_targets(
        np.zeros((100, 72, 96, 3), np.uint8), 0, classes=SCENE_CLASSES, group="a", source="vizdoom"
    )
    small = Clip.empty_targets(
        np.zeros((10, 72, 96, 3), np.uint8), 0, classes=SCENE_CLASSES, group="b", source="games/x"
    )
    pool = {0: [(0, i) for i in range(100)] + [(1, i) for i in range(10)], 1: []}
    whole = _by_source(pool, [big, small], balance=False)
    assert [len(group) for group in whole[0]] == [110]
    split = _by_source(pool, [big, small], balance=True)
    assert sorted(len(group) for group in split[0]) == [10, 100] and split[1] == []
