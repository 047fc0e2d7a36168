"""Plan -> BarScore: the LSTM (or n-gram) melody, a chord per bar, bass, drums, pad, arpeggio."""

from daemon.composer.composer import Composer, load_lstm_model, load_melody_model
from daemon.composer.form import Form, parse_structure
from daemon.composer.harmony import (
    HarmonyPlanner,
    ScaleDegreeChord,
    SoundingNote,
    diatonic_triads,
    scale_pitch_classes,
)

__all__ = [
    "Composer",
    "Form",
    "HarmonyPlanner",
    "ScaleDegreeChord",
    "SoundingNote",
    "diatonic_triads",
    "load_lstm_model",
    "load_melody_model",
    "parse_structure",
    "scale_pitch_classes",
]
