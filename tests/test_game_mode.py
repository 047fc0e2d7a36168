"""The game analysis mode on real ViZDoom footage of a held-out map (freedoom1, never trained on).

The clip is recorded here by the project's own recorder (``tools/record_vizdoom.py``): a scripted
player on freedoom1 E1M5 that walks for about ten seconds and then meets monsters, with the
game's own count of visible monsters per frame as ground truth.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.cli import main
from daemon.config import GameConfig
from daemon.messages import Frame
from daemon.sources.demo import write_frames_clip
from models.scene_data import MODEL_FPS, SCENE_CLASSES

TOOLS = Path(__file__).resolve().parent.parent / "tools"
# Committed footage of a game the shipped model meets in play: combat, then a pause menu.
FOOTAGE_CLIP = TOOLS.parent / "models" / "footage" / "train" / "chromium_bsu" / "play_640x480.mp4"

SECONDS = 40.0
VIDEO_FPS = 24  # each game frame written three times: a capture runs faster than the model
COMBAT, EXPLORATION = SCENE_CLASSES.index("combat"), SCENE_CLASSES.index("exploration")


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, np.ndarray]:
    """(320x240 frames, per-frame game labels) at 8 fps of 40 s of freedoom1 E1M5."""
    # The `train` extra (vizdoom) is installed by tools/setup.sh: without it this fails.
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    from record_vizdoom import record_map

    full: list[np.ndarray] = []
    clip = record_map(
        "freedoom1", "E1M5", seconds=SECONDS, seed=1, overlays=False, full_frames=full
    )
    return np.stack(full), clip.labels


@pytest.fixture(scope="module")
def held_out_clip(
    recording: tuple[np.ndarray, np.ndarray], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, np.ndarray]:
    """(video path, per-frame game labels at 8 fps) of the recording."""
    frames, labels = recording
    path = tmp_path_factory.mktemp("game") / "e1m5.mp4"
    write_frames_clip(path, frames, fps=MODEL_FPS, repeat=VIDEO_FPS // int(MODEL_FPS))
    return path, labels


def _truth(window: dict[str, Any], labels: np.ndarray) -> int | None:
    """The game's own class for a timeline window: the majority of its frames, if clear."""
    frames = labels[int(window["t_start"] * MODEL_FPS) : int(window["t_end"] * MODEL_FPS)]
    if len(frames) == 0 or not np.all(frames == frames[0]):
        return None
    return int(frames[0])


@pytest.mark.slow
def test_combat_gets_faster_fuller_music_than_exploration(
    held_out_clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    video, labels = held_out_clip
    assert (labels == COMBAT).mean() > 0.3 and (labels == EXPLORATION).mean() > 0.2
    timeline = tmp_path / "scored.json"
    wav = tmp_path / "scored.wav"
    code = main(
        ["render", str(video), "-o", str(wav), "--mode", "game", "--timeline", str(timeline)]
    )
    assert code == 0 and wav.stat().st_size > 0
    document = json.loads(timeline.read_text())
    assert document["mode"] == "game"
    windows = document["windows"]
    combat = [w for w in windows if _truth(w, labels) == COMBAT]
    exploration = [w for w in windows if _truth(w, labels) == EXPLORATION]
    assert len(combat) >= 10 and len(exploration) >= 10
    assert np.mean([w["bpm"] for w in combat]) > np.mean([w["bpm"] for w in exploration]) + 10
    assert np.mean([w["layers"] for w in combat]) > np.mean([w["layers"] for w in exploration])
    # The model itself, before any music: it names combat in the fight far more than outside it.
    said_combat = [w["scene"] == "combat" for w in combat]
    said_combat_outside = [w["scene"] == "combat" for w in exploration]
    assert np.mean(said_combat) > np.mean(said_combat_outside) + 0.3


def test_analyze_game_mode_fills_scene_and_probabilities(
    held_out_clip: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    video, _ = held_out_clip
    out = tmp_path / "timeline.json"
    assert main(["analyze", str(video), "--mode", "game", "-o", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["mode"] == "game"
    windows = document["windows"]
    assert len(windows) == int(SECONDS / 0.5)
    for window in windows:
        probs = window["scene_probs"]
        assert set(probs) == set(SCENE_CLASSES)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert window["scene"] in (*SCENE_CLASSES, None)
        assert -1.0 <= window["arousal"] <= 1.0
    # Gameplay never reads as a menu or a dialogue for long.
    named = [w["scene"] for w in windows if w["scene"] is not None]
    assert sum(s in ("combat", "exploration") for s in named) / len(named) > 0.8
    assert out.with_suffix(".png").stat().st_size > 0


def test_model_rate_does_not_depend_on_the_capture_rate() -> None:
    from daemon.analysis.game import GameModel

    model = GameModel(config=GameConfig(), device="cpu")
    image = np.zeros((720, 1280, 3), dtype=np.uint8)
    for fps in (24, 30, 60):
        model.reset()
        kept = [model.prepare(Frame(pts=i / fps, image=image, index=i)) for i in range(fps * 4)]
        taken = [p for p in kept if p is not None]
        assert len(taken) == pytest.approx(4 * MODEL_FPS, abs=1)
        assert taken[0].shape == (72, 96, 3)
    model.close()


def test_missing_scene_model_is_one_line_and_exit_2(
    held_out_clip: tuple[Path, np.ndarray],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video, _ = held_out_clip
    monkeypatch.setenv("MOODSCORE_GAME_MODEL", str(tmp_path / "nope.pt"))
    code = main(["analyze", str(video), "--mode", "game", "-o", str(tmp_path / "t.json")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.pt" in err[0] and "train-scene" in err[0]


def test_auto_mode_follows_faces_when_there_are_faces_else_the_game(
    held_out_clip: tuple[Path, np.ndarray],
) -> None:
    import av
    import cv2
    import skimage.data as skimage_data

    from daemon.analysis.modes import make_window_model
    from daemon.config import Config

    config = Config().replace("analysis", mode="auto").replace("models", device="cpu")
    model = make_window_model(config)
    try:
        # A person filling most of a 640x480 webcam frame.
        canvas = np.zeros((480, 640, 3), dtype=np.uint8)
        canvas[:, 80:560] = cv2.resize(skimage_data.astronaut(), (480, 480))
        frames = [Frame(pts=i / 30, image=canvas, index=i) for i in range(15)]
        with_face = model.infer([model.prepare(f) for f in frames], 0.0, 0.5)
        assert with_face.faces and with_face.scene is None

        video, _ = held_out_clip
        with av.open(str(video)) as container:
            images = [
                f.to_ndarray(format="rgb24")
                for _, f in zip(range(24), container.decode(video=0), strict=False)
            ]
        game_frames = [
            Frame(pts=0.5 + i / 24, image=im, index=15 + i) for i, im in enumerate(images)
        ]
        game = model.infer([model.prepare(f) for f in game_frames], 0.5, 1.5)
        assert not game.faces and game.scene_probs
    finally:
        model.close()


@pytest.mark.slow
def test_a_fight_is_answered_within_a_beat(
    recording: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """Exploration cut to a fight at 110 bpm (the reaction bench's game step): the music is heard
    to change within one beat + 0.3 s (the combat preset's riser starts at once) and is half-way
    within a bar + 0.5 s, measured against the same clip rendered with the scene held."""
    from daemon.bench.reaction import measure_game_step
    from daemon.config import load_config

    frames, labels = recording
    bpm = 110.0
    reaction = measure_game_step(
        load_config(), (frames, labels, MODEL_FPS), rise=True, bpm=bpm, scratch=tmp_path
    )
    beat = 60.0 / bpm
    assert reaction.first_change_s is not None and reaction.half_done_s is not None
    assert 0.0 <= reaction.first_change_s <= beat + 0.3
    assert reaction.half_done_s <= 4 * beat + 0.5


def test_a_cut_restarts_the_scene_reading(recording: tuple[np.ndarray, np.ndarray]) -> None:
    """After a cut found in the frames, the window reads the new picture on its own: the same as
    a model that never saw what came before (without the cut it would still carry the calm)."""
    from daemon.analysis.game import GameModel

    frames, labels = recording
    walk = frames[np.flatnonzero(labels == EXPLORATION)[:8]]
    fight = frames[np.flatnonzero(labels == COMBAT)[:4]]
    config = GameConfig(smoothing_s=0.0)

    def read(
        model: GameModel, images: np.ndarray, start: float, *, cut: bool
    ) -> Mapping[str, float]:
        prepared = [
            model.prepare(Frame(pts=start + k / MODEL_FPS, image=image, index=k))
            for k, image in enumerate(images)
        ]
        if cut:
            model.cut(start)
        return model.infer(prepared, start, start + len(images) / MODEL_FPS).scene_probs

    fresh = GameModel(config=config, device="cpu")
    alone = read(fresh, fight, 1.0, cut=False)
    for cut in (True, False):
        model = GameModel(config=config, device="cpu")
        read(model, walk, 0.0, cut=False)
        after = read(model, fight, 1.0, cut=cut)
        same = all(abs(after[name] - alone[name]) < 1e-5 for name in alone)
        assert same is cut


def test_unsure_means_steady_the_scene_holds_while_intensity_moves_the_music() -> None:
    from daemon.analysis.game import GameModel
    from daemon.conductor import Conductor
    from daemon.config import ConductorConfig
    from daemon.messages import Mood
    from daemon.outputs.timeline import build_timeline
    from daemon.scenes import load_scene
    from models.scene_data import load_footage

    # The shipped model on committed footage: a window names a scene exactly when its
    # confidence reaches the floor, and the timeline records the confidence and the cues.
    floor = 0.6
    clip = load_footage(FOOTAGE_CLIP)
    model = GameModel(config=GameConfig(min_scene_prob=floor), device="cpu")
    moods = []
    step = int(MODEL_FPS / 2)
    for start in range(0, 30 * int(MODEL_FPS), step):
        frames = [
            Frame(pts=(start + i) / MODEL_FPS, image=clip.frames[start + i], index=start + i)
            for i in range(step)
        ]
        prepared = [model.prepare(f) for f in frames]
        moods.append(model.infer(prepared, start / MODEL_FPS, (start + step) / MODEL_FPS))
    model.close()
    confidences = [m.features["scene_confidence"] for m in moods]
    assert all((m.scene is None) == (c < floor) for m, c in zip(moods, confidences, strict=True))
    pairs = list(zip(moods, confidences, strict=True))
    assert all(c == pytest.approx(max(m.scene_probs.values())) for m, c in pairs)
    rows = build_timeline(moods, source="clip", mode="game", window_s=0.5, duration=30.0)["windows"]
    assert [r["scene_confidence"] for r in rows] == [round(c, 4) for c in confidences]
    spoke = {name for r in rows for name in r["cues"]}
    assert spoke and all(0.5 <= v <= 1.0 for r in rows for v in r["cues"].values())

    # The conductor: ten seconds of unsure windows leaning to combat while the intensity climbs
    # hold the exploration preset, and the tempo follows the intensity alone.
    conductor = Conductor(config=ConductorConfig(), preset=load_scene("exploration"))
    unsure = {"combat": 0.45, "exploration": 0.25, "dialogue": 0.15, "menu": 0.15}
    bpms = []
    for i in range(20):
        t = i * 0.5
        arousal = -0.8 + 1.6 * i / 19
        conductor.observe(Mood(t, t + 0.5, 0.0, arousal, scene=None, scene_probs=unsure))
        bpms.append(conductor.plan_for_bar(i).bpm)
    assert conductor.preset.name == "exploration"
    assert bpms[-1] > bpms[0] + 10
    # Sure windows of the same scene do switch (the hold is the only difference).
    sure = {"combat": 0.85, "exploration": 0.05, "dialogue": 0.05, "menu": 0.05}
    for i in range(20, 30):
        t = i * 0.5
        conductor.observe(Mood(t, t + 0.5, 0.0, 0.8, scene="combat", scene_probs=sure))
    assert conductor.preset.name == "combat"
