"""Committed game footage (models/footage): the H.264 + labels format and the clips themselves."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from models.scene_data import (
    FOOTAGE_FORMAT,
    MODEL_FPS,
    SCENE_CLASSES,
    STORE_HEIGHT,
    STORE_WIDTH,
    Clip,
    load_footage,
    load_footage_folder,
    save_footage,
)

FOOTAGE = Path(__file__).resolve().parent.parent / "models" / "footage"
# A small committed clip: Chromium B.S.U. at 640x480 (combat and menu frames).
COMMITTED = FOOTAGE / "train" / "chromium_bsu" / "play_640x480.mp4"
# Games kept for an independent evaluation: never recorded here.
RESERVED = ("freedroidrpg", "hedgewars", "teeworlds")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


def _labels_files() -> list[Path]:
    return [
        p
        for p in sorted(FOOTAGE.glob("*/*/*.json"))
        if json.loads(p.read_text()).get("format") == FOOTAGE_FORMAT
    ]


def test_footage_round_trips_through_h264(tmp_path: Path, rng: np.random.Generator) -> None:
    n = 40
    # Smooth pictures (H.264 is lossy on noise): a moving gradient per frame.
    ys, xs = np.mgrid[0:STORE_HEIGHT, 0:STORE_WIDTH]
    frames = np.stack(
        [
            np.stack([(xs * 2 + k * 3) % 256, (ys * 3) % 256, np.full_like(xs, 40 + k)], -1)
            for k in range(n)
        ]
    ).astype(np.uint8)
    states = ["main_menu"] * 10 + ["settle"] * 3 + ["fight"] * 27
    state_classes: dict[str, str | None] = {"main_menu": "menu", "settle": None, "fight": "combat"}
    index = {
        name: -1 if cls is None else SCENE_CLASSES.index(cls) for name, cls in state_classes.items()
    }
    labels = np.array([index[s] for s in states], np.int16)
    arousal = np.where(labels >= 0, 0.5, np.nan).astype(np.float32)
    clip = Clip(
        frames=frames,
        labels=labels,
        monsters=np.full(n, np.nan, np.float32),
        arousal=arousal,
        valence=np.full(n, np.nan, np.float32),
        classes=SCENE_CLASSES,
        group="games/test/clip",
        source="games/test",
        meta={"resolution": [640, 480]},
    )
    hits = rng.integers(0, 3, n).astype(np.float32)
    save_footage(
        clip, tmp_path / "clip.mp4", states=states, state_classes=state_classes, cues={"hits": hits}
    )
    again = load_footage(tmp_path / "clip.json")
    assert again.frames.shape == (n, STORE_HEIGHT, STORE_WIDTH, 3)
    assert np.abs(again.frames.astype(int) - frames.astype(int)).mean() < 6
    assert np.array_equal(again.labels, labels)
    assert np.array_equal(np.isnan(again.arousal), np.isnan(arousal))
    assert np.isnan(again.valence).all()
    assert again.meta["states"] == states
    assert again.meta["cues"]["hits"] == hits.tolist()
    assert again.group == "games/test/clip" and again.fps == MODEL_FPS


def test_labels_must_agree_with_states(tmp_path: Path) -> None:
    frames = np.zeros((3, STORE_HEIGHT, STORE_WIDTH, 3), np.uint8)
    clip = Clip.empty_targets(frames, 0, classes=SCENE_CLASSES, group="g", source="s")
    with pytest.raises(ValueError, match="disagree"):
        save_footage(clip, tmp_path / "c.mp4", states=["menu"] * 3, state_classes={"menu": "menu"})


def test_a_committed_clip_loads_with_its_labels() -> None:
    labels = json.loads(COMMITTED.with_suffix(".json").read_text())
    clip = load_footage(COMMITTED)
    n = labels["frames"]
    assert len(clip) == n > 8 * 60
    assert clip.frames.shape == (n, STORE_HEIGHT, STORE_WIDTH, 3)
    assert clip.frames.dtype == np.uint8
    assert clip.fps == MODEL_FPS and clip.classes == SCENE_CLASSES
    assert clip.group == "games/chromium_bsu/play_640x480"
    # The labels are the segments' classes, frame by frame.
    for start, stop, state, cls in labels["segments"]:
        expected = -1 if cls is None else SCENE_CLASSES.index(cls)
        assert (clip.labels[start:stop] == expected).all()
        assert set(clip.meta["states"][start:stop]) == {state}
    present = {SCENE_CLASSES[i] for i in np.unique(clip.labels) if i >= 0}
    assert {"combat", "menu"} <= present
    # Real pictures, not blank ones, and arousal wherever there is a label.
    assert float(clip.frames.std()) > 10
    labelled = clip.labels >= 0
    assert np.isfinite(clip.arousal[labelled]).all()
    assert np.isnan(clip.arousal[~labelled]).all()


def test_committed_footage_is_consistent_and_split_by_game() -> None:
    files = _labels_files()
    assert len(files) >= 8
    games: dict[str, set[str]] = {}
    seen_classes: set[str] = set()
    for path in files:
        labels = json.loads(path.read_text())
        assert (path.parent / labels["video"]).is_file()
        segments = labels["segments"]
        assert segments[0][0] == 0 and segments[-1][1] == labels["frames"]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(segments))
        for _, _, state, cls in segments:
            assert cls is None or cls in SCENE_CLASSES
            assert labels["state_classes"][state] == cls
            seen_classes.add(cls or "")
        split, game = path.parent.parent.name, path.parent.name
        assert labels["meta"]["split"] == split and labels["meta"]["game"] == game
        games.setdefault(split, set()).add(game)
    assert set(games) == {"train", "val"}
    assert not games["train"] & games["val"], "a held-out game has training footage"
    assert len(games["val"]) == 2 and len(games["train"] | games["val"]) >= 8
    assert not any(r in g for r in RESERVED for g in games["train"] | games["val"])
    assert set(SCENE_CLASSES) <= seen_classes


@pytest.mark.slow
def test_every_committed_clip_decodes() -> None:
    # The picture model's footage; models/footage/audio (the same pictures with the games'
    # sound, for the audio cues) is checked by tests/test_game_audio.py.
    clips = load_footage_folder(FOOTAGE / "train") + load_footage_folder(FOOTAGE / "val")
    assert sum(len(c) for c in clips) >= 90 * 60 * MODEL_FPS
