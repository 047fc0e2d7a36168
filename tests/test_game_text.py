"""Game mode reads on-screen text: the detector on real game frames, the fusion, and `analyze`
recording the cue in the timeline.

The frames are full-size grabs kept from the text footage's recordings (``tools/text_footage.py``,
dev clips only): a Wesnoth story page (dialogue) and an OpenArena bot-match fight with its HUD.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from daemon.cli import main
from models.text_cues import TextCues, TextDetector, fuse

FRAMES = Path(__file__).resolve().parent.parent / "models" / "footage" / "text" / "frames"
DIALOGUE = FRAMES / "wesnoth_heir_story_800x600.jpg"
FIGHT = FRAMES / "openarena_dm4_fight_640x480.jpg"
CLASSES = ("combat", "exploration", "dialogue", "menu")


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return np.ascontiguousarray(image[:, :, ::-1], dtype=np.uint8)


@pytest.fixture(scope="module")
def detector() -> TextDetector:
    return TextDetector(threads=1)


def test_text_cue_fires_on_a_story_page_and_not_on_a_fight(detector: TextDetector):
    page, fight = detector.measure(_rgb(DIALOGUE)), detector.measure(_rgb(FIGHT))
    # The story page: several lines of a text block, a large share of the screen.
    assert page.evidence >= 0.9 and page.lines >= 3 and page.block >= 3
    # The fight's HUD numbers and chat line are text too, but short: no prose, nothing spoke.
    assert fight.evidence == 0.0 and fight.area > 0.01
    assert page.prose > 0.05 and fight.prose < 0.01


def test_text_footage_carries_the_cue_and_no_reserved_game():
    clips = sorted(FRAMES.parent.glob("*.json"))
    assert len(clips) >= 8
    for path in clips:
        labels = json.loads(path.read_text())
        assert (path.parent / labels["video"]).is_file()
        assert labels["meta"]["game"] not in ("freedroidrpg", "hedgewars", "teeworlds")
        measured = [v for v in labels["cues"]["text_prose"] if v is not None]
        assert len(measured) == len(labels["text_boxes"]) >= labels["frames"] // 5


def test_text_raises_dialogue_and_menu_only_where_the_picture_leaves_room():
    probs = np.array([0.05, 0.55, 0.25, 0.15])
    text = TextCues(area=0.2, prose=0.15, lines=8.0, block=6.0)
    fused, moved = fuse(CLASSES, probs, text)
    assert set(moved) == {"dialogue", "menu"}
    assert fused[2] > probs[2] and fused[3] > probs[3] and fused[1] < probs[1]
    assert fused[0] < probs[0] and fused.sum() == pytest.approx(1.0)
    # A class the picture gives under 0.1 is never raised; no text changes nothing.
    _, vetoed = fuse(CLASSES, np.array([0.6, 0.35, 0.02, 0.03]), text)
    assert vetoed == {}
    same, none = fuse(CLASSES, probs, TextCues(area=0.06, prose=0.01, lines=4.0, block=2.0))
    assert none == {} and np.array_equal(same, probs)


def test_analyze_records_the_text_cue_in_the_timeline(tmp_path: Path):
    # 3 s of the story page, then 3 s of the fight, at 640x480 and 8 fps.
    clip = tmp_path / "page_then_fight.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for path in (DIALOGUE, FIGHT):
            image = np.asarray(cv2.resize(_rgb(path), (640, 480)), dtype=np.uint8)
            for _ in range(24):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    seen, blind = tmp_path / "seen.json", tmp_path / "blind.json"
    assert main(["analyze", str(clip), "-o", str(seen), "--mode", "game"]) == 0
    assert main(["analyze", str(clip), "-o", str(blind), "--mode", "game", "--no-game-text"]) == 0
    windows = json.loads(seen.read_text())["windows"]
    page = [w for w in windows if w["t_end"] <= 3.0]
    fight = [w for w in windows if w["t_start"] >= 3.5]
    # Every window of the page names the text that spoke; none of the fight's does.
    assert page and all(w["text_cues"]["area"] > 0.04 for w in page)
    assert not any("text_cues" in w or "text_moved" in w for w in fight)
    # Where the text moved a class, that class is at least as probable as without the text.
    without = json.loads(blind.read_text())["windows"]
    assert not any("text_cues" in w for w in without)
    moved = [(w, v) for w, v in zip(windows, without, strict=True) if w.get("text_moved")]
    for w, v in moved:
        for name in w["text_moved"]:
            assert w["scene_probs"][name] >= v["scene_probs"][name] - 1e-6


def test_live_never_waits_for_the_detector_and_a_file_always_does():
    import threading
    import time

    from daemon.analysis.game_text import GameTextCues

    release = threading.Event()
    page = TextCues(area=0.2, prose=0.15, lines=8.0, block=6.0)

    def slow(image: np.ndarray) -> TextCues:
        release.wait(5)
        return page

    probs = np.array([0.1, 0.5, 0.2, 0.2])
    frame = np.zeros((480, 640, 3), dtype=np.uint8)
    live = GameTextCues(measure=slow, in_step=False)
    try:
        assert live.due(0.0)
        live.offer(frame, 0.0)
        started = time.perf_counter()
        assert live.fuse(CLASSES, probs, 0.5)[1] == {}  # not measured yet: nothing spoke
        assert time.perf_counter() - started < 0.5
        assert not live.due(1.0)  # still busy: this frame is skipped, not queued
        release.set()
        time.sleep(0.2)
        _, seen = live.fuse(CLASSES, probs, 1.0)
        assert seen["text_to.dialogue"] == 1.0 and seen["text.prose"] == 0.15
        # A reading older than MAX_AGE_S no longer speaks.
        assert live.fuse(CLASSES, probs, 10.0)[1] == {}
    finally:
        release.set()
        live.close()
    release.clear()
    in_step = GameTextCues(measure=slow, in_step=True)
    try:
        in_step.offer(frame, 0.0)
        threading.Timer(0.2, release.set).start()
        _, seen = in_step.fuse(CLASSES, probs, 0.5)
        assert seen["text_to.menu"] == 1.0
    finally:
        in_step.close()
