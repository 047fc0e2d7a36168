"""Frame windows -> Mood: one window model per analysis mode (frame features, faces; game next).

The face mode (``daemon.analysis.face``) is not imported here: it loads mediapipe and torch,
which only a face analysis needs; :func:`make_window_model` imports it on demand.
"""

from daemon.analysis.base import WindowModel
from daemon.analysis.features import (
    FrameFeatureModel,
    FrameFeatures,
    frame_features,
    mood_from_features,
    shrink,
)
from daemon.analysis.modes import analysis_modes, make_window_model
from daemon.analysis.windows import AnalysisStage, WindowAnalyzer

__all__ = [
    "AnalysisStage",
    "FrameFeatureModel",
    "FrameFeatures",
    "WindowAnalyzer",
    "WindowModel",
    "analysis_modes",
    "frame_features",
    "make_window_model",
    "mood_from_features",
    "shrink",
]
