"""Picture features -> valence and arousal: the first, model-free analysis.

Per frame, after shrinking it to ``analysis.analysis_width`` pixels wide (INTER_AREA, so noise
averages out and the cost does not depend on the input size):

- **motion**: mean absolute difference of consecutive grey frames (0..1), expressed per 1/30 s
  so that a 60 fps camera, a 24 fps film and a live run that skipped frames read alike;
- **brightness**: mean luma (Rec. 601), 0..1;
- **saturation**: mean chroma, (max - min of R, G, B) / 255, 0..1: HSV saturation weighted by
  value, so near-black pixels (whose hue and HSV saturation are noise) do not count as vivid;
- **warmth**: colour temperature proxy, (mean R - mean B) / (mean R + mean B), -1 (blue) .. 1 (red);
- **contrast**: twice the standard deviation of luma, 0..1.

Per window, each feature mean becomes a term in [-1, 1] around a typical value, and the terms are
mixed with the configured weights:

====================  ============================================  ===========================
term                  formula                                       -1 ... +1
====================  ============================================  ===========================
motion                2 * min(1, motion / motion_full_scale) - 1      still ... full motion
saturation            (saturation - 0.25) / 0.25                      grey ... vivid
contrast              (contrast - 0.35) / 0.30                        flat ... contrasty
brightness            (brightness - 0.45) / 0.30                      dark ... bright
warmth                warmth / 0.40                                   blue ... red/orange
====================  ============================================  ===========================

    arousal = (wm * motion + ws * saturation + wc * contrast) / (wm + ws + wc)   # arousal_weights
    valence = (wb * brightness + ws * saturation + ww * warmth) / (wb + ws + ww) # valence_weights

(each term clipped to [-1, 1]). Why these: in studies of colour and emotion, brighter and more
saturated colours are rated more pleasant and saturated ones more exciting (Valdez & Mehrabian
1994, "Effects of color on emotions"); warm hues read as more arousing and, in film and game art
direction, as friendlier than cold blue-greens; and in video affect work, motion activity and
shot pace are the strongest single cue of arousal (Hanjalic & Xu 2005, "Affective video content
representation and modeling"). Motion therefore carries most of the arousal weight by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from daemon.analysis.base import WindowModel
from daemon.config import AnalysisConfig
from daemon.messages import Frame, Mood

REFERENCE_FRAME_S = 1.0 / 30.0  # motion is expressed per this much time
MIN_FRAME_GAP_S = 1.0 / 240.0  # guards the per-time scaling against duplicate timestamps

# Typical values (centre) and half-ranges of the per-window terms; see the module docstring.
SATURATION_CENTRE, SATURATION_SPAN = 0.25, 0.25
CONTRAST_CENTRE, CONTRAST_SPAN = 0.35, 0.30
BRIGHTNESS_CENTRE, BRIGHTNESS_SPAN = 0.45, 0.30
WARMTH_SPAN = 0.40


@dataclass(frozen=True, slots=True)
class FrameFeatures:
    """The measurements of one frame (see the module docstring for each)."""

    pts: float
    motion: float | None  # None for a stream's first frame: nothing to compare it with
    brightness: float
    saturation: float
    warmth: float
    contrast: float


@dataclass(frozen=True, slots=True)
class Previous:
    """What the next frame's motion is measured against: the last grey frame and its time."""

    grey: np.ndarray
    pts: float


def shrink(image: np.ndarray, width: int) -> np.ndarray:
    """Scale ``image`` [shape=(h, w, 3)] down to ``width`` pixels wide, keeping its aspect."""
    height, current = image.shape[:2]
    if current <= width:
        return image
    new_height = max(1, round(height * width / current))
    return cv2.resize(image, (width, new_height), interpolation=cv2.INTER_AREA)


def frame_features(
    image: np.ndarray, pts: float, previous: Previous | None, *, analysis_width: int
) -> tuple[FrameFeatures, Previous]:
    """Measure one RGB frame.

    Parameters
    ----------
    image : np.ndarray [shape=(height, width, 3), dtype=uint8], RGB.
    pts : the frame's time in seconds.
    previous : what :func:`frame_features` returned for the previous frame, or None.
    analysis_width : frames are shrunk to this width first.

    Returns
    -------
    features, previous : this frame's features, and what to pass for the next frame.
    """
    small = shrink(image, analysis_width)
    grey_u8 = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    grey = grey_u8.astype(np.float32) / 255.0
    chroma = small.max(axis=2).astype(np.int16) - small.min(axis=2)
    saturation = float(chroma.mean()) / 255.0
    means = small.reshape(-1, 3).mean(axis=0)
    red, blue = float(means[0]), float(means[2])
    warmth = (red - blue) / (red + blue) if red + blue > 1e-6 else 0.0
    motion: float | None = None
    if previous is not None and previous.grey.shape == grey.shape:
        difference = float(np.abs(grey - previous.grey).mean())
        gap = max(pts - previous.pts, MIN_FRAME_GAP_S)
        motion = min(1.0, difference * REFERENCE_FRAME_S / gap)
    features = FrameFeatures(
        pts=pts,
        motion=motion,
        brightness=float(grey.mean()),
        saturation=saturation,
        warmth=warmth,
        contrast=min(1.0, 2.0 * float(grey.std())),
    )
    return features, Previous(grey=grey, pts=pts)


def mood_from_features(
    features: Sequence[FrameFeatures], config: AnalysisConfig, t_start: float, t_end: float
) -> Mood:
    """Valence and arousal of one window from its frames' features (see the module docstring).

    ``features`` must not be empty. Frames without a motion measurement (a stream's first
    frame) are left out of the motion mean; a window with none reads as still.
    """
    if not features:
        raise ValueError("a window needs at least one frame")
    measured = [f.motion for f in features if f.motion is not None]
    motion = float(np.mean(measured)) if measured else 0.0
    brightness = float(np.mean([f.brightness for f in features]))
    saturation = float(np.mean([f.saturation for f in features]))
    warmth = float(np.mean([f.warmth for f in features]))
    contrast = float(np.mean([f.contrast for f in features]))

    motion_term = 2.0 * min(1.0, motion / config.motion_full_scale) - 1.0
    saturation_term = _term(saturation, SATURATION_CENTRE, SATURATION_SPAN)
    contrast_term = _term(contrast, CONTRAST_CENTRE, CONTRAST_SPAN)
    brightness_term = _term(brightness, BRIGHTNESS_CENTRE, BRIGHTNESS_SPAN)
    warmth_term = _term(warmth, 0.0, WARMTH_SPAN)

    arousal = _mix(config.arousal_weights, (motion_term, saturation_term, contrast_term))
    valence = _mix(config.valence_weights, (brightness_term, saturation_term, warmth_term))
    # One frame cannot show motion; two or more give a full measurement.
    confidence = 1.0 if len(features) >= 2 else 0.5
    return Mood(
        t_start=t_start,
        t_end=t_end,
        valence=valence,
        arousal=arousal,
        confidence=confidence,
        features={
            "motion": motion,
            "brightness": brightness,
            "saturation": saturation,
            "warmth": warmth,
            "contrast": contrast,
            "frames": float(len(features)),
        },
    )


def _term(value: float, centre: float, span: float) -> float:
    return max(-1.0, min(1.0, (value - centre) / span))


def _mix(weights: Sequence[float], terms: Sequence[float]) -> float:
    total = sum(weights)
    if total <= 0:
        return 0.0
    value = sum(w * t for w, t in zip(weights, terms, strict=True)) / total
    return max(-1.0, min(1.0, value))


class FrameFeatureModel(WindowModel[FrameFeatures]):
    """Analysis mode ``frame``: picture features per frame, their mapping per window.

    Parameters
    ----------
    config : the ``[analysis]`` section (analysis width, motion scale, mapping weights).
    """

    name = "frame"

    def __init__(self, *, config: AnalysisConfig) -> None:
        self._config = config
        self._previous: Previous | None = None

    def reset(self) -> None:
        self._previous = None

    def prepare(self, frame: Frame) -> FrameFeatures:
        features, self._previous = frame_features(
            frame.image, frame.pts, self._previous, analysis_width=self._config.analysis_width
        )
        return features

    def infer(self, prepared: Sequence[FrameFeatures], t_start: float, t_end: float) -> Mood:
        return mood_from_features(prepared, self._config, t_start, t_end)
