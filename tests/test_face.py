"""Face mode on real photos (scikit-image's) and on real video files made from them."""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from daemon.analysis import AnalysisStage, make_window_model
from daemon.analysis.face import DetectedFace, FaceDetector, FaceModel, align_face
from daemon.cli import main
from daemon.config import Config, FaceConfig, load_config
from daemon.errors import ConfigError, ModelError
from daemon.messages import Frame, Mood
from daemon.outputs.timeline import build_timeline
from daemon.sources import VideoFileSource
from models import affect
from models.affect import EMOTIONS, BlendshapeCues, ExpressionClassifier, fuse
from models.errors import WeightsNotFound

FPS = 30
WINDOW = 15  # frames in a 0.5 s window at 30 fps


# -- pictures ---------------------------------------------------------------------------------


def on_canvas(image: np.ndarray, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """``image`` scaled to fit a black frame of ``size`` (width, height), centred."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    fitted = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
    canvas = np.zeros((height, width, 3), np.uint8)
    y, x = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
    canvas[y : y + fitted.shape[0], x : x + fitted.shape[1]] = fitted
    return canvas


def lfw_picture(face: np.ndarray) -> np.ndarray:
    """One 25x25 LFW thumbnail as a camera would show it: enlarged, with room around it."""
    grey = cv2.resize((face * 255).astype(np.uint8), (200, 200), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((320, 320), 128, np.uint8)
    canvas[60:260, 60:260] = grey
    return np.dstack([canvas] * 3)


def write_clip(path: Path, segments: Sequence[tuple[np.ndarray, float]]) -> Path:
    """An H.264 MP4 at 30 fps showing each (picture, seconds) in turn."""
    height, width = segments[0][0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        index = 0
        for picture, seconds in segments:
            for _ in range(round(seconds * FPS)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = index, fractions.Fraction(1, FPS)
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return on_canvas(skimage.data.astronaut())


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return on_canvas(skimage.data.coffee())


@pytest.fixture(scope="module")
def photo_detector() -> Iterator[FaceDetector]:
    detector = FaceDetector(video=False)
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def classifier() -> ExpressionClassifier:
    return ExpressionClassifier(device="cpu")


@pytest.fixture(scope="module")
def smiling_face(photo_detector: FaceDetector, astronaut: np.ndarray) -> DetectedFace:
    (face,) = photo_detector.detect(astronaut)
    return face


@pytest.fixture(scope="module")
def face_clip(
    tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray, coffee: np.ndarray
) -> Path:
    """3 s smiling face, 3 s of coffee (no face), 3 s smiling face again; 640x480."""
    path = tmp_path_factory.mktemp("face") / "face-gap-face.mp4"
    return write_clip(path, [(astronaut, 3.0), (coffee, 3.0), (astronaut, 3.0)])


def face_model(classifier: ExpressionClassifier, **changes: object) -> FaceModel:
    return FaceModel(config=dataclasses.replace(FaceConfig(), **changes), classifier=classifier)  # type: ignore[arg-type]


# -- photos -----------------------------------------------------------------------------------


def test_the_smiling_astronaut_reads_pleasant(
    smiling_face: DetectedFace, classifier: ExpressionClassifier
) -> None:
    (probs,) = classifier.probabilities(smiling_face.crop[None])
    assert EMOTIONS[int(probs.argmax())] == "happy"
    assert smiling_face.cues.smile > 0.5
    reading = fuse(probs, smiling_face.cues, presence=smiling_face.presence)
    assert reading.valence > 0.3
    assert reading.confidence > 0.7


def test_a_window_of_the_smiling_astronaut_has_valence_above_0_3(
    classifier: ExpressionClassifier, astronaut: np.ndarray
) -> None:
    model = face_model(classifier)
    try:
        prepared = [
            model.prepare(Frame(pts=i / FPS, image=astronaut, index=i)) for i in range(WINDOW)
        ]
        mood = model.infer(prepared, 0.0, 0.5)
    finally:
        model.close()
    assert mood.valence > 0.3
    assert mood.faces == 1
    assert max(mood.expression, key=lambda name: mood.expression[name]) == "happy"
    assert sum(mood.expression.values()) == pytest.approx(1.0)


def test_lfw_faces_are_found_and_lfw_non_faces_mostly_are_not(photo_detector: FaceDetector) -> None:
    pictures = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces
    found = [len(photo_detector.detect(lfw_picture(p))) > 0 for p in pictures]
    assert sum(found[:100]) >= 95
    assert sum(found[100:]) <= 5


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_pictures_without_a_face_give_no_face_and_a_neutral_mood(
    name: str, photo_detector: FaceDetector, classifier: ExpressionClassifier
) -> None:
    picture = on_canvas(getattr(skimage.data, name)())
    assert photo_detector.detect(picture) == []
    model = face_model(classifier)
    try:
        mood = model.infer([model.prepare(Frame(pts=0.0, image=picture, index=0))], 0.0, 0.5)
    finally:
        model.close()
    assert mood.faces == 0
    assert mood.expression == {}
    assert (mood.valence, mood.arousal) == (0.0, 0.0)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 3), np.uint8),
        np.zeros((1, 900, 3), np.uint8),
        np.full((480, 640, 3), 255, np.uint8),
        np.random.default_rng(440).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    ],
    ids=["tiny", "one-row", "white", "noise"],
)
def test_odd_frames_are_frames_without_a_face(
    photo_detector: FaceDetector, image: np.ndarray
) -> None:
    assert photo_detector.detect(image) == []


def test_the_crop_is_upright_whatever_the_head_roll(
    photo_detector: FaceDetector, astronaut: np.ndarray, smiling_face: DetectedFace
) -> None:
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((320, 240), 25, 1.0), (640, 480))
    (face,) = photo_detector.detect(turned)
    # Same face, same framing: the crops match far better than the face matches its roll.
    rolled_crop = cv2.warpAffine(
        smiling_face.crop, cv2.getRotationMatrix2D((32, 32), 25, 1.0), (64, 64)
    )
    straight = np.abs(face.crop.astype(int) - smiling_face.crop).mean()
    assert straight < 12
    assert straight < np.abs(rolled_crop.astype(int) - smiling_face.crop).mean() / 2


def test_align_face_frames_the_landmarks_with_a_small_margin() -> None:
    grey = np.zeros((200, 200), np.uint8)
    grey[50:150, 50:150] = 255  # a bright "face" square
    corners = np.array([(50, 50), (150, 50), (150, 150), (50, 150)], dtype=np.float64)
    points = np.zeros((478, 2))
    points[:] = corners[np.arange(478) % 4]
    points[[33, 133]] = (70, 80)  # eyes level: no rotation
    points[[362, 263]] = (130, 80)
    crop, extent = align_face(grey, points)
    assert extent == pytest.approx(100)
    assert crop.shape == (64, 64)
    assert crop[32, 32] == 255 and crop[1, 1] == 0  # face inside, margin outside
    assert (crop > 127).mean() == pytest.approx(1 / 1.16**2, abs=0.02)  # 8 % margin each side


# -- the window model over time ---------------------------------------------------------------


def frowning(face: DetectedFace, scale: float = 1.0) -> DetectedFace:
    """The same crop, with cues of a scowl, and a box scaled about its centre."""
    x0, y0, x1, y1 = face.box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * scale / 2, (y1 - y0) * scale / 2
    return dataclasses.replace(
        face,
        box=(cx - hw, cy - hh, cx + hw, cy + hh),
        cues=BlendshapeCues(frown=0.95, brow_lower=0.95, sneer=0.6),
    )


def windows(
    model: FaceModel, pattern: Sequence[list[DetectedFace]], start: float, count: int
) -> list[Mood]:
    return [
        model.infer(list(pattern), start + k * 0.5, start + (k + 1) * 0.5) for k in range(count)
    ]


def test_no_face_holds_then_drifts_back_to_neutral(
    classifier: ExpressionClassifier, smiling_face: DetectedFace
) -> None:
    model = face_model(classifier, hold_s=1.0, neutral_drift_s=1.0)
    (smiling,) = windows(model, [[smiling_face]] * WINDOW, 0.0, 1)
    held = windows(model, [[]] * WINDOW, 0.5, 2)  # ends at 1.0, 1.5 s: within the hold
    drifting = windows(model, [[]] * WINDOW, 1.5, 6)
    assert held[0].valence == smiling.valence and held[0].confidence == 0.0
    assert held[1].valence == smiling.valence
    values = [m.valence for m in drifting]
    assert all(later < earlier for earlier, later in itertools.pairwise(values))
    assert all(m.confidence == pytest.approx(0.5) and m.faces == 0 for m in drifting)
    assert abs(values[-1]) < 0.05 * smiling.valence + 1e-9  # 3 time constants: e^-3 = 0.05


def test_smoothing_weighs_each_window_by_its_confidence(
    classifier: ExpressionClassifier, smiling_face: DetectedFace
) -> None:
    def after_neutral(pattern: list[list[DetectedFace]], smoothing_s: float) -> float:
        model = face_model(classifier, smoothing_s=smoothing_s, hold_s=0.0)
        windows(model, [[]] * WINDOW, 0.0, 1)  # neutral state
        return windows(model, pattern, 0.5, 1)[0].valence

    full = after_neutral([[smiling_face]] * WINDOW, 0.5)
    glimpse = after_neutral([[smiling_face]] + [[]] * (WINDOW - 1), 0.5)
    unsmoothed = after_neutral([[smiling_face]] * WINDOW, 0.0)
    assert 0.0 < glimpse < full / 5  # seen in 1 frame of 15: a small step
    assert 0.3 < full < unsmoothed  # seen throughout: most of the way, not all


def test_several_faces_largest_or_mean(
    classifier: ExpressionClassifier, smiling_face: DetectedFace
) -> None:
    small_scowl = frowning(smiling_face, scale=0.5)
    frame = [smiling_face, small_scowl]
    largest = windows(face_model(classifier, combine="largest"), [frame] * WINDOW, 0.0, 1)[0]
    mean = windows(face_model(classifier, combine="mean"), [frame] * WINDOW, 0.0, 1)[0]
    alone = windows(face_model(classifier), [[smiling_face]] * WINDOW, 0.0, 1)[0]
    assert largest.faces == mean.faces == 2
    assert largest.valence == pytest.approx(alone.valence)
    assert mean.valence < largest.valence - 0.1


def test_the_window_is_one_batch(
    classifier: ExpressionClassifier, smiling_face: DetectedFace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = classifier.probabilities

    def counting(faces: np.ndarray) -> np.ndarray:
        calls.append(len(faces))
        return real(faces)

    model = face_model(classifier)
    monkeypatch.setattr(classifier, "probabilities", counting)
    windows(model, [[smiling_face, frowning(smiling_face, 0.5)]] * WINDOW, 0.0, 1)
    assert calls == [2 * WINDOW]


# -- the stage over a real video --------------------------------------------------------------


async def analyse(
    path: Path, config: Config, *, lossless: bool, paced: bool
) -> tuple[list[Mood], AnalysisStage]:
    model = make_window_model(config)
    stage = AnalysisStage(config=config.analysis, model=model)
    moods: list[Mood] = []
    source = VideoFileSource(path, paced=paced)
    try:
        async with source:
            await asyncio.wait_for(stage.run(source, moods.append, lossless=lossless), 60)
    finally:
        model.close()
    return moods, stage


def face_config() -> Config:
    return Config().replace("analysis", mode="face")


def mean_valence(moods: Sequence[Mood], start: float, end: float) -> float:
    return float(np.mean([m.valence for m in moods if start <= m.t_start and m.t_end <= end]))


async def test_face_gap_face_video_returns_to_neutral_in_the_gap(face_clip: Path) -> None:
    moods, stage = await analyse(face_clip, face_config(), lossless=True, paced=False)
    assert stage.frames == 270
    assert [(m.t_start, m.t_end) for m in moods] == [(k * 0.5, (k + 1) * 0.5) for k in range(18)]
    faces = [m.faces for m in moods]
    assert faces == [1] * 6 + [0] * 6 + [1] * 6
    assert mean_valence(moods, 0.0, 3.0) > 0.3
    gap_end = moods[11]
    assert abs(gap_end.valence) < 0.15 and abs(gap_end.arousal) < 0.15
    assert gap_end.confidence > 0  # the conductor follows it back to neutral
    assert moods[-1].valence > 0.3  # the smile is back
    assert all("happy" in m.expression for m in moods if m.faces)


@pytest.mark.slow
async def test_live_face_gap_face_never_stalls(
    tmp_path: Path, astronaut: np.ndarray, coffee: np.ndarray
) -> None:
    clip = write_clip(tmp_path / "short.mp4", [(astronaut, 1.0), (coffee, 2.5), (astronaut, 1.0)])
    moods, stage = await analyse(clip, face_config(), lossless=False, paced=True)
    assert moods[-1].t_end == pytest.approx(4.5)
    for earlier, later in itertools.pairwise(moods):
        assert later.t_start == pytest.approx(earlier.t_end)
    assert stage.frames + stage.dropped == 135
    assert moods[0].valence > 0.3
    assert abs(moods[6].valence) < moods[0].valence / 2  # 3.0-3.5 s: back towards neutral


# -- config and command line ------------------------------------------------------------------


def test_face_mode_and_its_keys_come_from_the_config() -> None:
    config = load_config(
        environ={"MOODSCORE_ANALYSIS_MODE": "face", "MOODSCORE_FACE_COMBINE": "mean"},
        use_user_file=False,
    )
    assert config.analysis.mode == "face" and config.face.combine == "mean"
    with pytest.raises(ConfigError, match="frame, face"):
        load_config(environ={"MOODSCORE_ANALYSIS_MODE": "faces"}, use_user_file=False)


def test_missing_weights_are_a_model_error_that_says_what_to_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing() -> Path:
        raise WeightsNotFound("models/weights/fer_mini_xception.pt is missing; reinstall moodscore")

    monkeypatch.setattr(affect, "find_fer_weights", missing)
    with pytest.raises(ModelError, match=r"reinstall moodscore"):
        make_window_model(face_config())


def test_analyze_mode_face_writes_faces_expression_and_a_plot(
    face_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "timeline.json"
    assert main(["analyze", str(face_clip), "--mode", "face", "-o", str(out), "-q"]) == 0
    document = json.loads(out.read_text())
    assert document["mode"] == "face"
    rows = document["windows"]
    assert len(rows) == 18
    assert all("faces" in row for row in rows)
    with_face = [row for row in rows if row["faces"]]
    assert len(with_face) == 12
    assert all(set(row["expression"]) == set(EMOTIONS) for row in with_face)
    assert all("expression" not in row for row in rows if not row["faces"])
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().err == ""  # mediapipe's start-up chatter is silenced


def test_frame_mode_timeline_is_unchanged_by_face_fields() -> None:
    document = build_timeline(
        [Mood(t_start=0.0, t_end=0.5, valence=0.1, arousal=0.2)],
        source="x",
        window_s=0.5,
        duration=0.5,
    )
    assert set(document["windows"][0]) == {
        "t_start",
        "t_end",
        "valence",
        "arousal",
        "confidence",
        "scene",
    }


def test_an_unknown_mode_flag_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "demo", "--mode", "game-ish", "-o", "/tmp/never.json"])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_render_mode_face_scores_a_face_video(face_clip: Path, tmp_path: Path) -> None:
    out, timeline = tmp_path / "scored.wav", tmp_path / "scored.json"
    assert (
        main(
            [
                "render",
                str(face_clip),
                "--mode",
                "face",
                "-o",
                str(out),
                "--timeline",
                str(timeline),
                "-q",
            ]
        )
        == 0
    )
    import soundfile

    audio, rate = soundfile.read(out)
    assert len(audio) / rate == pytest.approx(9.0, abs=0.6)
    assert np.abs(audio).max() > 0.01  # music, not silence
    document = json.loads(timeline.read_text())
    assert document["mode"] == "face"
    rows = document["windows"]
    assert [row["faces"] for row in rows] == [1] * 6 + [0] * 6 + [1] * 6
    assert all("bpm" in row for row in rows)
