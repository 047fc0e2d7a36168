"""The audio engine: pyo server modes, the band's instruments and the sample clock.

pyo itself is imported only when an :class:`Engine` starts, so choosing a backend or building a
:class:`ScoreQueue` never loads it.
"""

from daemon.clock import BarGrid, ScheduledNote
from daemon.engine.backends import (
    BackendChoice,
    choose_backend,
    jack_running,
    pick_device,
    probe_audio_devices,
    probe_audio_outputs,
)
from daemon.engine.engine import Engine
from daemon.engine.scores import ScoreQueue

__all__ = [
    "BackendChoice",
    "BarGrid",
    "Engine",
    "ScheduledNote",
    "ScoreQueue",
    "choose_backend",
    "jack_running",
    "pick_device",
    "probe_audio_devices",
    "probe_audio_outputs",
]
