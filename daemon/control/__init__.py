"""Control of a running session: command schemas, the control hub, MQTT."""

from daemon.control.commands import (
    COMMAND_NAMES,
    Command,
    CommandError,
    CommandResult,
    ControlHub,
    KeyCommand,
    LayersCommand,
    MoodCommand,
    MuteCommand,
    SceneCommand,
    SourceCommand,
    TempoCommand,
    TransportCommand,
    parse_command,
)

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
    "TempoCommand",
    "TransportCommand",
    "parse_command",
]
