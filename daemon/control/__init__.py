"""Control of a running session: command schemas, the control hub, the router, MQTT.

The router (:mod:`daemon.control.router`) and the MQTT bridge are imported from their modules;
this package exports only the light names front ends share.
"""

from daemon.control.commands import (
    COMMAND_NAMES,
    Command,
    CommandError,
    CommandResult,
    KeyCommand,
    LayersCommand,
    MoodCommand,
    MuteCommand,
    SceneCommand,
    SourceCommand,
    StingerCommand,
    TeachCommand,
    TeachUndoCommand,
    TempoCommand,
    TransportCommand,
    parse_command,
)
from daemon.control.hub import ControlHub

__all__ = [
    "COMMAND_NAMES",
    "Command",
    "CommandError",
    "CommandResult",
    "ControlHub",
    "KeyCommand",
    "LayersCommand",
    "MoodCommand",
    "MuteCommand",
    "SceneCommand",
    "SourceCommand",
    "StingerCommand",
    "TeachCommand",
    "TeachUndoCommand",
    "TempoCommand",
    "TransportCommand",
    "parse_command",
]
