"""Frame windows -> Mood: picture features first; face and game models plug in here."""

from daemon.analysis.features import FrameFeatures, frame_features, mood_from_features, shrink
from daemon.analysis.windows import AnalysisStage, WindowAnalyzer

__all__ = [
    "AnalysisStage",
    "FrameFeatures",
    "WindowAnalyzer",
    "frame_features",
    "mood_from_features",
    "shrink",
]
