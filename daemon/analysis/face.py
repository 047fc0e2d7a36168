"""Analysis mode ``face``: the people in view -> valence and arousal, every frame window.

Per frame (:meth:`FaceModel.prepare`, in a worker thread): mediapipe's FaceLandmarker (Tasks
API, ``face_landmarker.task``, shipped in ``models/weights/``) finds up to ``face.max_faces``
faces with 478 landmarks and 52 blendshape scores each. Each face is cut out of the grey frame
upright (rotated so the eyes are level), square around its landmarks with a small margin, at
64x64: the framing the FER2013 expression network was trained on. Only these crops and the
blendshape scores are kept; the frame itself is not.

Per window (:meth:`FaceModel.infer`): every crop of the window goes through the mini-Xception
(:class:`models.affect.ExpressionClassifier`) in **one batch**; each face's expression
probabilities and blendshape cues are fused into valence, arousal and a confidence
(:func:`models.affect.fuse`); several faces in a frame give the largest face's reading or their
confidence-weighted mean (``face.combine``); the frames' readings are averaged, weighted by
confidence, and the window's confidence is scaled by the share of frames that showed a face.

Over time: a confidence-weighted exponential filter (time constant ``face.smoothing_s``) steadies
the reading, so a blink or one odd frame does not flicker the music. With no face in view the
last reading is held for ``face.hold_s`` (confidence 0: the conductor keeps its course; someone
glanced away) and then drifts back to the neutral mood (0, 0) with time constant
``face.neutral_drift_s``, at confidence :data:`NO_FACE_CONFIDENCE` so the conductor follows.
A frame the detector cannot read counts as a frame without a face; nothing here stops the stream.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from daemon.analysis.base import WindowModel
from daemon.config import FaceConfig
from daemon.errors import ModelError
from daemon.messages import Frame, Mood
from models.affect import (
    EMOTIONS,
    INPUT_SIZE,
    BlendshapeCues,
    ExpressionClassifier,
    FaceAffect,
    blendshape_cues,
    find_face_landmarker,
    fuse,
)

log = logging.getLogger("moodscore.analysis.face")

NO_FACE_CONFIDENCE = 0.5  # confidence of windows drifting to neutral (the conductor follows)
FACE_MARGIN = 0.08  # crop margin on each side, as a share of the landmarks' extent
FULL_PRESENCE_PX = 48.0  # faces this tall (FER2013's own size) or taller count fully
MIN_PRESENCE = 0.25  # the smallest faces mediapipe finds still count this much

# Face-mesh landmark indices (mediapipe's canonical face model): eye corners.
RIGHT_EYE = (33, 133)  # the subject's right eye: left in the picture
LEFT_EYE = (362, 263)


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One face found in one frame.

    box : (x0, y0, x1, y1) in pixels: the landmarks' bounding box.
    crop : np.ndarray [shape=(64, 64), dtype=uint8], the face upright, grey, framed for FER.
    cues : blendshape cues (smile, brows, eyes, jaw, sneer).
    presence : how much the face counts, [0.25, 1]: 1 at 48 px and larger, less when tiny.
    """

    box: tuple[float, float, float, float]
    crop: np.ndarray
    cues: BlendshapeCues
    presence: float

    @property
    def area(self) -> float:
        """The box's area in square pixels (``face.combine = "largest"`` picks by it)."""
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


def align_face(grey: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
    """Cut one face out of a grey frame, upright and square, at 64x64.

    Parameters
    ----------
    grey : np.ndarray [shape=(height, width), dtype=uint8]
    points : np.ndarray [shape=(478, 2)], the face's landmarks in pixels (x, y).

    Returns
    -------
    crop, extent : the face [shape=(64, 64), dtype=uint8], and the landmarks' extent in pixels
        (the side of their upright bounding square before the margin).
    """
    right = points[list(RIGHT_EYE)].mean(axis=0)
    left = points[list(LEFT_EYE)].mean(axis=0)
    angle = math.atan2(left[1] - right[1], left[0] - right[0])
    cos, sin = math.cos(angle), math.sin(angle)
    # The landmarks in the upright frame, to find the face's centre and size there.
    upright = points @ np.array([[cos, -sin], [sin, cos]])
    low, high = upright.min(axis=0), upright.max(axis=0)
    extent = float(max(high - low))
    centre_upright = (low + high) / 2
    centre = centre_upright @ np.array([[cos, sin], [-sin, cos]])
    side = max(extent * (1 + 2 * FACE_MARGIN), 1.0)
    # Warp to at most 4x the target, then average down: warpAffine alone would alias a large
    # face (it samples, it does not average), and FER's faces are smooth 48 px images.
    target = INPUT_SIZE * int(np.clip(side // INPUT_SIZE, 1, 4))
    scale = target / side
    matrix = cv2.getRotationMatrix2D(
        (float(centre[0]), float(centre[1])), math.degrees(angle), scale
    )
    matrix[:, 2] += np.array([target / 2, target / 2]) - centre
    warped = cv2.warpAffine(
        grey, matrix, (target, target), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if target != INPUT_SIZE:
        warped = cv2.resize(warped, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return warped, extent


class FaceDetector:
    """mediapipe's FaceLandmarker (Tasks API): faces, landmarks and blendshapes of a frame.

    Parameters
    ----------
    max_faces : most faces reported per frame.
    min_confidence : minimum detection (and presence and tracking) confidence.
    video : track faces from frame to frame (a stream; timestamps must rise) rather than
        detect afresh in every image (photos).
    model_path : the ``.task`` bundle (default: the shipped
        ``models/weights/face_landmarker.task``).

    Raises
    ------
    ModelError
        The model bundle is missing or mediapipe cannot load it.
    """

    def __init__(
        self,
        *,
        max_faces: int = 4,
        min_confidence: float = 0.5,
        video: bool = True,
        model_path: Path | None = None,
    ) -> None:
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import vision
            from mediapipe.tasks.python.core.base_options import BaseOptions
        except ImportError as exc:
            raise ModelError(
                f"face mode needs mediapipe, which is not installed ({exc}); install the "
                "face extra: pip install 'moodscore[face]' (pipx: pipx inject moodscore mediapipe)"
            ) from exc
        # A missing bundle raises WeightsNotFound, a ModelError whose message says what to run.
        path = model_path or find_face_landmarker()
        self._video = video
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
        )
        try:
            with _native_stderr_silenced():
                self._landmarker: Any = vision.FaceLandmarker.create_from_options(options)
                # One blank frame builds the inference graphs now, with their start-up chatter
                # silenced, instead of delaying (and logging on) the first real frame.
                blank = mp.Image(
                    image_format=mp.ImageFormat.SRGB, data=np.zeros((64, 64, 3), np.uint8)
                )
                if video:
                    self._landmarker.detect_for_video(blank, 0)
                else:
                    self._landmarker.detect(blank)
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"mediapipe cannot load {path}: {exc}") from exc
        # Closed on close(), on garbage collection, or at interpreter exit, whichever comes
        # first: mediapipe's own __del__ runs too late at exit (its modules are gone) and
        # prints a traceback.
        self._finalizer = weakref.finalize(self, self._landmarker.close)
        # detect() runs in a worker thread; close() may come from the event loop while a
        # cancelled analysis is still inside detect(): it waits for that call to return.
        self._lock = threading.Lock()
        self._last_ms = 0
        self._failures = 0

    def detect(self, image: np.ndarray, pts: float = 0.0) -> list[DetectedFace]:
        """The faces in one RGB frame, largest first.

        Parameters
        ----------
        image : np.ndarray [shape=(height, width, 3), dtype=uint8], RGB.
        pts : the frame's time in seconds (video mode; kept strictly rising internally).
        """
        import mediapipe as mp

        height, width = image.shape[:2]
        if height < 8 or width < 8:
            return []
        picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        with self._lock:
            if not self._finalizer.alive:
                return []
            try:
                if self._video:
                    # A looped file or a new stream restarts pts; the landmarker needs rising
                    # timestamps.
                    self._last_ms = max(self._last_ms + 1, round(pts * 1000))
                    result = self._landmarker.detect_for_video(picture, self._last_ms)
                else:
                    result = self._landmarker.detect(picture)
            except (RuntimeError, ValueError) as exc:
                self._failures += 1
                if self._failures == 1:
                    log.warning(
                        "face detection failed on a frame (%s); counting it as no face", exc
                    )
                return []
        if not result.face_landmarks:
            return []
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        size = np.array([width, height], dtype=np.float64)
        faces = []
        for index, landmarks in enumerate(result.face_landmarks):
            points = np.array([(p.x, p.y) for p in landmarks], dtype=np.float64) * size
            crop, extent = align_face(grey, points)
            scores = (
                {c.category_name: float(c.score) for c in result.face_blendshapes[index]}
                if index < len(result.face_blendshapes)
                else {}
            )
            low, high = points.min(axis=0), points.max(axis=0)
            faces.append(
                DetectedFace(
                    box=(float(low[0]), float(low[1]), float(high[0]), float(high[1])),
                    crop=crop,
                    cues=blendshape_cues(scores),
                    presence=float(np.clip(extent / FULL_PRESENCE_PX, MIN_PRESENCE, 1.0)),
                )
            )
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces

    def close(self) -> None:
        """Release the landmarker (idempotent); afterwards :meth:`detect` finds nothing."""
        with self._lock:
            self._finalizer()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence file descriptor 2 while mediapipe starts: its C++ logging (absl, TFLite) prints
    a handful of harmless start-up warnings there that no environment variable turns off.
    Only model loading runs inside this, before any pipeline thread exists."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(slots=True)
class _State:
    valence: float
    arousal: float
    time: float  # end of the window it was last updated at
    last_face: float  # end of the last window that showed a face (-inf before any)


class FaceModel(WindowModel[list[DetectedFace]]):
    """Analysis mode ``face`` (see the module docstring).

    Parameters
    ----------
    config : the ``[face]`` section.
    device : where the expression network runs: ``"auto"`` (CUDA when present), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``.
    detector : a ready detector (default: a video-mode :class:`FaceDetector` from ``config``).
    classifier : a ready expression classifier (default: the mini-Xception with the shipped FER2013
        weights on ``device``).

    Raises
    ------
    ModelError
        A model file is missing or does not load, or ``device`` names a GPU torch does not see.
    """

    name = "face"

    def __init__(
        self,
        *,
        config: FaceConfig,
        device: str = "auto",
        detector: FaceDetector | None = None,
        classifier: ExpressionClassifier | None = None,
    ) -> None:
        self._config = config
        if classifier is None:
            try:
                classifier = ExpressionClassifier(device=device)
            except ModelError:
                # Weights not installed, or a device torch does not have: the message already
                # says what to do. (WeightsNotFound is also an OSError, hence this clause first.)
                raise
            except (OSError, ValueError) as exc:
                raise ModelError(f"the expression model does not load: {exc}") from exc
        self.classifier = classifier
        self.detector = detector or FaceDetector(
            max_faces=config.max_faces, min_confidence=config.min_detection_confidence
        )
        self._state: _State | None = None

    def reset(self) -> None:
        self._state = None

    def prepare(self, frame: Frame) -> list[DetectedFace]:
        return self.detector.detect(frame.image, frame.pts)

    def infer(self, prepared: Sequence[list[DetectedFace]], t_start: float, t_end: float) -> Mood:
        faces = [face for frame_faces in prepared for face in frame_faces]
        crops = (
            np.stack([face.crop for face in faces]) if faces else np.zeros((0, 64, 64), np.uint8)
        )
        probs = self.classifier.probabilities(crops)  # the window's one batch
        readings = iter(
            fuse(
                p,
                face.cues,
                presence=face.presence,
                blendshape_weight=self._config.blendshape_weight,
            )
            for p, face in zip(probs, faces, strict=True)
        )
        per_frame: list[FaceAffect] = []
        counts: list[int] = []
        for frame_faces in prepared:
            affects = [next(readings) for _ in frame_faces]
            counts.append(len(affects))
            if affects:
                per_frame.append(self._combine(affects, frame_faces))
        if not per_frame:
            return self._no_face(t_start, t_end, frames=len(prepared))
        return self._with_faces(per_frame, t_start, t_end, frames=len(prepared), faces=max(counts))

    def close(self) -> None:
        self.detector.close()

    # -- helpers ----------------------------------------------------------------------------

    def _combine(self, affects: list[FaceAffect], faces: list[DetectedFace]) -> FaceAffect:
        if self._config.combine == "largest" or len(affects) == 1:
            return affects[int(np.argmax([face.area for face in faces]))]
        return _weighted_mean(affects)

    def _with_faces(
        self, per_frame: list[FaceAffect], t_start: float, t_end: float, *, frames: int, faces: int
    ) -> Mood:
        reading = _weighted_mean(per_frame)
        seen = len(per_frame) / frames
        confidence = reading.confidence * seen
        state = self._state
        tau = self._config.smoothing_s
        if state is None or tau <= 0:
            valence, arousal = reading.valence, reading.arousal
        else:
            dt = max(0.0, t_end - state.time)
            alpha = (1.0 - math.exp(-dt / tau)) * confidence
            valence = state.valence + alpha * (reading.valence - state.valence)
            arousal = state.arousal + alpha * (reading.arousal - state.arousal)
        self._state = _State(valence, arousal, time=t_end, last_face=t_end)
        features = {
            "face_frames": seen,
            "raw_valence": reading.valence,
            "raw_arousal": reading.arousal,
            **{f"cue_{name}": value for name, value in reading.cues.as_dict().items()},
        }
        return Mood(
            t_start=t_start,
            t_end=t_end,
            valence=valence,
            arousal=arousal,
            confidence=confidence,
            features=features,
            faces=faces,
            expression=dict(zip(EMOTIONS, reading.expression, strict=True)),
        )

    def _no_face(self, t_start: float, t_end: float, *, frames: int) -> Mood:
        state = self._state or _State(0.0, 0.0, time=t_start, last_face=-math.inf)
        drift_from = max(state.time, state.last_face + self._config.hold_s)
        if t_end <= state.last_face + self._config.hold_s:
            confidence = 0.0  # glanced away: hold the reading, the conductor keeps its course
        else:
            decay = math.exp(-max(0.0, t_end - drift_from) / self._config.neutral_drift_s)
            state.valence *= decay
            state.arousal *= decay
            confidence = NO_FACE_CONFIDENCE
        state.time = t_end
        self._state = state
        return Mood(
            t_start=t_start,
            t_end=t_end,
            valence=state.valence,
            arousal=state.arousal,
            confidence=confidence,
            features={"face_frames": 0.0},
            faces=0,
        )


def _weighted_mean(affects: Sequence[FaceAffect]) -> FaceAffect:
    """Confidence-weighted mean reading (plain mean when every confidence is 0)."""
    weights = np.array([a.confidence for a in affects], dtype=np.float64)
    if weights.sum() <= 0:
        weights = np.ones(len(affects))
    weights /= weights.sum()
    cue_names = list(affects[0].cues.as_dict())
    cues = np.array([list(a.cues.as_dict().values()) for a in affects]) * weights[:, None]
    return FaceAffect(
        valence=float(weights @ [a.valence for a in affects]),
        arousal=float(weights @ [a.arousal for a in affects]),
        confidence=float(np.mean([a.confidence for a in affects])),
        expression=tuple(float(x) for x in weights @ np.array([a.expression for a in affects])),
        cues=BlendshapeCues(**dict(zip(cue_names, (float(x) for x in cues.sum(0)), strict=True))),
    )
