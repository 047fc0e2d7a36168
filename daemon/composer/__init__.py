"""Plan -> BarScore: the n-gram melody, a chord per bar, bass, drums, pad and arpeggio."""

from daemon.composer.composer import Composer, load_melody_model
from daemon.composer.harmony import (
    HarmonyPlanner,
    ScaleDegreeChord,
    SoundingNote,
    diatonic_triads,
    scale_pitch_classes,
)

__all__ = [
    "Composer",
    "HarmonyPlanner",
    "ScaleDegreeChord",
    "SoundingNote",
    "diatonic_triads",
    "load_melody_model",
    "scale_pitch_classes",
]
