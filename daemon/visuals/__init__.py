"""Beat-synced visuals: frames drawn from the engine's beat clock, as a pure function of time."""

from daemon.visuals.renderer import composite, pack_alpha, pulse, render_frame
from daemon.visuals.timeline import (
    EMPTY_STATE,
    BeatMark,
    NoteMark,
    VisualState,
    VisualTimeline,
)

__all__ = [
    "EMPTY_STATE",
    "BeatMark",
    "NoteMark",
    "VisualState",
    "VisualTimeline",
    "composite",
    "pack_alpha",
    "pulse",
    "render_frame",
]
