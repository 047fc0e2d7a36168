"""Control commands: their schemas and the parser every front end shares.

Every way of steering the music (MQTT ``cmd/<name>``, the web panel's ``/api/<name>``, tests)
sends a command *name* and a *payload*; :func:`parse_command` validates the payload against the
command's pydantic model and returns a frozen command, or raises :class:`CommandError` with one
line a user can act on. Payloads are JSON objects, or, where one value says it all, that bare
value: ``cmd/tempo`` ``120``, ``cmd/scene`` ``combat``, ``cmd/transport`` ``stop``.

Front ends hand commands to the :class:`~daemon.control.hub.ControlHub`; the
:class:`~daemon.control.router.Router` applies them on the musical grid.

This module stays whole (about 510 lines): it is the control vocabulary, every command's schema
beside the one parser and the one table (:data:`COMMANDS`) the front ends and the README's command
table are checked against; split, a new command could be added in one place and missed in another.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from daemon.errors import MoodscoreError
from daemon.messages import KEY_NAMES, LAYER_ORDER, Layer
from daemon.outputs.delays import LIMITS_MS
from daemon.scenes import available_scenes

log = logging.getLogger("moodscore.control")

# Payloads larger than this are refused before parsing: no command needs more, and a flood of
# huge payloads must cost nothing but the answer.
MAX_PAYLOAD_BYTES = 4096
# Longest error text sent back; pydantic can be wordy about a deeply wrong payload.
MAX_MESSAGE_CHARS = 300
# Words that release an override, as a bare payload.
RELEASE_WORDS = ("auto", "release", "none", "null", "")

_KEY_PITCH = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "FB": 4, "E#": 5, "F": 5,
    "F#": 6, "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11, "CB": 11,
}  # fmt: skip
_KEY_RE = re.compile(r"^\s*([A-Ga-g])([#b♯♭-]?)\s*(major|minor|maj|min|m)?\s*$", re.IGNORECASE)
_SCENE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class CommandError(MoodscoreError):
    """A command was refused: unknown name, malformed payload or a value out of range.

    ``str(error)`` is one line that says what to send instead.
    """


class _Command(BaseModel):
    """Base of the command models: frozen, strict about unknown keys, finite numbers."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=True)
    name: ClassVar[str]


class MoodCommand(_Command):
    """``mood``: play this mood for ``hold_s`` seconds, whatever the analysis reads.

    The analysis takes over again afterwards, smoothly from the held mood. ``hold_s = 0`` ends a
    hold at once (or nudges the mood without holding it).
    """

    name: ClassVar[str] = "mood"
    valence: Annotated[float, Field(ge=-1.0, le=1.0)]
    arousal: Annotated[float, Field(ge=-1.0, le=1.0)]
    hold_s: Annotated[float, Field(ge=0.0, le=86400.0)] = 30.0


class SceneCommand(_Command):
    """``scene``: force a scene preset; None (or ``auto``) gives the choice back to the mood."""

    name: ClassVar[str] = "scene"
    scene: str | None

    @field_validator("scene")
    @classmethod
    def _known_scene(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value.lower() in RELEASE_WORDS:
            return None
        # The session's presets (the user's folders too) when the hub says which; else the
        # built-in ones.
        context = info.context or {}
        names = list(context.get("scenes") or available_scenes())
        if not _SCENE_NAME_RE.match(value) or value not in names:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise ValueError(
                f"unknown scene {shown!r}; available: {', '.join(names)} (or auto to release)"
            )
        return value


class TempoCommand(_Command):
    """``tempo``: fix the tempo in bpm; None releases it to the mood."""

    name: ClassVar[str] = "tempo"
    bpm: Annotated[float, Field(ge=60.0, le=180.0)] | None


class LayersCommand(_Command):
    """``layers``: fix how many layers play (1 lead ... 5 with the arpeggio); None releases."""

    name: ClassVar[str] = "layers"
    layers: Annotated[int, Field(ge=1, le=5)] | None


class KeyCommand(_Command):
    """``key``: fix key and mode (``"A minor"``, ``"Eb"``, ``"f#m"``); None releases."""

    name: ClassVar[str] = "key"
    key: str | None

    @field_validator("key")
    @classmethod
    def _known_key(cls, value: str | None) -> str | None:
        if value is None or value.lower() in RELEASE_WORDS:
            return None
        tonic, mode = parse_key(value)
        return f"{KEY_NAMES[tonic]} {mode}"

    @property
    def tonic_mode(self) -> tuple[int, Literal["major", "minor"]] | None:
        """The key as (pitch class, mode), or None to release."""
        return None if self.key is None else parse_key(self.key)


class MuteCommand(_Command):
    """``mute``: silence (or bring back) one layer, with a one-beat fade from the next beat."""

    name: ClassVar[str] = "mute"
    layer: Layer
    muted: bool = True

    @field_validator("layer", mode="before")
    @classmethod
    def _layer(cls, value: object) -> Layer:
        if isinstance(value, Layer):
            return value
        if isinstance(value, str) and value.lower() in {layer.value for layer in LAYER_ORDER}:
            return Layer(value.lower())
        names = ", ".join(layer.value for layer in LAYER_ORDER)
        raise ValueError(f"unknown layer; use one of {names}")


class TransportCommand(_Command):
    """``transport``: ``stop`` fades out and falls silent at the next bar line while the clock
    runs on; ``play`` comes back in at a bar line."""

    name: ClassVar[str] = "transport"
    action: Literal["play", "stop"]


class StingerCommand(_Command):
    """``stinger``: play a short phrase over the music now, in the key, landing on the next
    beat (``hit``, ``riser``, ``fill``, ``danger``, ``swell``)."""

    name: ClassVar[str] = "stinger"
    kind: Literal["hit", "riser", "fill", "danger", "swell"] = "hit"


class SourceCommand(_Command):
    """``source``: switch the live source (``demo``, ``webcam:N``, ``screen:N``, a file path)
    without stopping the music."""

    name: ClassVar[str] = "source"
    source: Annotated[str, Field(min_length=1, max_length=1024)]


class DelayCommand(_Command):
    """``delay``: set an output's delay in milliseconds while playing (what the panel's
    calibration page proposes): ``{"output": "osc", "ms": 40}``. ``engine`` is the sound card's
    latency (every other output moves by it); the others move that output against the sound."""

    name: ClassVar[str] = "delay"
    output: Literal["engine", "midi", "mqtt", "osc", "os2l", "web"]
    ms: float

    @field_validator("ms")
    @classmethod
    def _within_limits(cls, value: float, info: ValidationInfo) -> float:
        low, high = LIMITS_MS.get(info.data.get("output", ""), (-500.0, 2000.0))
        if not low <= value <= high:
            raise ValueError(f"must be within {low:g}..{high:g} ms for this output")
        return value


class FollowTempoCommand(_Command):
    """An outside clock's tempo (MIDI clock in) for the conductor to follow; None: it went
    away. Internal: no front end parses it (it is not in :data:`COMMANDS`)."""

    name: ClassVar[str] = "follow_tempo"
    bpm: Annotated[float, Field(ge=20.0, le=400.0)] | None


def _preset_name(value: str, info: ValidationInfo) -> str:
    context = info.context or {}
    names = list(context.get("scenes") or available_scenes())
    if not _SCENE_NAME_RE.match(value) or value not in names:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(
            f"no scene preset named {shown!r}; teach one of: {', '.join(names)} (a custom scene "
            "needs its NAME.toml preset in a preset folder)"
        )
    return value


class TeachCommand(_Command):
    """``teach``: the next ``seconds`` of the game show ``scene`` (a built-in scene or any
    preset's name, e.g. ``boss`` with a ``boss.toml``); they become examples of it, and a
    per-game head is trained on them in the background (game modes only)."""

    name: ClassVar[str] = "teach"
    scene: str
    seconds: Annotated[float, Field(gt=0.0, le=120.0)] = 5.0
    # A recording instead of the live game: ``seconds`` of it from ``start`` (read at once, as
    # fast as the CPU allows). A path opens a file, so the web API wants the token for it.
    file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    start: Annotated[float, Field(ge=0.0, le=86400.0)] = 0.0

    @field_validator("scene")
    @classmethod
    def _known_scene(cls, value: str, info: ValidationInfo) -> str:
        return _preset_name(value, info)


GAME_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.+-]*$"  # as profiles.check_name


class GameCommand(_Command):
    """``game``: teach and read this game's profile from now on (its saved one, or a new one);
    its head reads from the next bar (game modes only)."""

    name: ClassVar[str] = "game"
    game: Annotated[str, Field(min_length=1, max_length=64, pattern=GAME_NAME_PATTERN)]


class TeachUndoCommand(_Command):
    """``teach_undo``: drop the last teaching batch (or the one being collected)."""

    name: ClassVar[str] = "teach_undo"


Command = (
    MoodCommand
    | SceneCommand
    | TempoCommand
    | LayersCommand
    | KeyCommand
    | MuteCommand
    | TransportCommand
    | StingerCommand
    | SourceCommand
    | DelayCommand
    | FollowTempoCommand
    | TeachCommand
    | TeachUndoCommand
    | GameCommand
)

COMMANDS: dict[str, type[_Command]] = {
    model.name: model
    for model in (
        MoodCommand,
        SceneCommand,
        TempoCommand,
        LayersCommand,
        KeyCommand,
        MuteCommand,
        TransportCommand,
        StingerCommand,
        SourceCommand,
        DelayCommand,
        TeachCommand,
        TeachUndoCommand,
        GameCommand,
    )
}
COMMAND_NAMES: tuple[str, ...] = tuple(COMMANDS)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The answer to one command: ``ok`` and ``"ok"``, or not ok and the error text."""

    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        """``{"ok": ..., "message": ...}`` for the web API."""
        return {"ok": self.ok, "message": self.message}


OK = CommandResult(True, "ok")


def parse_key(text: str) -> tuple[int, Literal["major", "minor"]]:
    """``"A minor"``, ``"Am"``, ``"a"`` (lower case: minor), ``"Eb major"``, ``"F#"`` -> (pitch
    class, mode).

    Raises
    ------
    ValueError
        Not a key name.
    """
    match = _KEY_RE.match(text)
    if match is None:
        raise ValueError("not a key; write e.g. 'A minor', 'Am', 'Eb major' or 'F#'")
    letter, accidental, quality = match.groups()
    accidental = {"♯": "#", "♭": "B", "-": "B", "b": "B"}.get(accidental, accidental)
    tonic = _KEY_PITCH[letter.upper() + accidental]
    # Without a quality word, the letter's case says it, as in music21 ("a" = A minor).
    minor = quality.lower() in ("minor", "min", "m") if quality else letter.islower()
    return tonic, "minor" if minor else "major"


def parse_command(
    name: str,
    payload: bytes | str | Mapping[str, Any] | None,
    *,
    scenes: Sequence[str] | None = None,
) -> Command:
    """Validate ``payload`` as the command ``name``.

    Parameters
    ----------
    name : the command (the MQTT topic leaf, the web API path): one of :data:`COMMAND_NAMES`.
    payload : a JSON object (bytes or text), a bare value where one says it all (``"120"`` for
        tempo, ``"combat"`` for scene, ``"stop"`` for transport, ``"drums"`` to mute a layer,
        ``"0.5,-0.2"`` for valence,arousal), or an already-decoded mapping.
    scenes : the scene names a ``scene`` command may name (default: the built-in presets).

    Raises
    ------
    CommandError
        Unknown command, undecodable or oversized payload, wrong types or values out of range.
    """
    model = COMMANDS.get(name)
    if model is None:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise CommandError(f"unknown command {shown!r}; commands: {', '.join(COMMAND_NAMES)}")
    data = _decode(name, payload)
    try:
        command = model.model_validate(data, context={"scenes": scenes})
    except ValidationError as exc:
        raise CommandError(f"{name}: {_describe(exc, name)}") from None
    return cast(Command, command)


# Longest request id echoed back (an automation's correlation id, a UUID, a counter).
MAX_ID_CHARS = 128
RequestId = str | int | float | None


def split_request_id(
    payload: bytes | str,
) -> tuple[RequestId, bytes | str | dict[str, Any]]:
    """The ``id`` of a JSON-object payload, for the answer to echo, and the payload without it.

    ``{"bpm": 150, "id": "a1"}`` gives ``("a1", {"bpm": 150})``; anything else (a bare value, a
    payload that is not JSON or too large, an object without ``id``) comes back unchanged with
    the id None, for :func:`parse_command` to judge.

    Raises
    ------
    CommandError
        The ``id`` is neither a string of at most :data:`MAX_ID_CHARS` characters nor a finite
        number.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None, payload
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    except UnicodeDecodeError:
        return None, payload
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None, payload
    try:
        value = json.loads(stripped)
    except (json.JSONDecodeError, RecursionError):
        return None, payload
    if not isinstance(value, dict) or "id" not in value:
        return None, payload
    request_id = value.pop("id")
    if request_id is None:
        return None, value
    fits = (isinstance(request_id, str) and len(request_id) <= MAX_ID_CHARS) or (
        isinstance(request_id, int | float)
        and not isinstance(request_id, bool)
        and math.isfinite(request_id)
    )
    if not fits:
        raise CommandError(
            f"id: send a string of at most {MAX_ID_CHARS} characters or a number; it comes back "
            "in the result"
        )
    return request_id, value


def _decode(name: str, payload: bytes | str | Mapping[str, Any] | None) -> Any:
    if isinstance(payload, Mapping):
        return dict(payload)
    if payload is None:
        payload = b""
    size = len(payload)
    if size > MAX_PAYLOAD_BYTES:
        raise CommandError(
            f"{name}: payload of {size} bytes is too large (at most {MAX_PAYLOAD_BYTES})"
        )
    if isinstance(payload, bytes | bytearray):
        try:
            text = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"{name}: payload is not UTF-8 text; send JSON") from None
    else:
        text = payload
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            value = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as exc:
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise CommandError(f"{name}: payload is not valid JSON ({message})") from None
        if isinstance(value, dict):
            return value
        raise CommandError(f"{name}: send a JSON object, e.g. {_EXAMPLES[name]}")
    return _bare(name, stripped)


_EXAMPLES = {
    "mood": '{"valence": 0.5, "arousal": -0.2, "hold_s": 30}',
    "scene": '{"scene": "combat"} or combat',
    "tempo": '{"bpm": 120} or 120',
    "layers": '{"layers": 3} or 3',
    "key": '{"key": "A minor"} or Am',
    "mute": '{"layer": "drums", "muted": true} or drums',
    "transport": '{"action": "stop"} or stop',
    "source": '{"source": "demo"} or demo',
    "stinger": '{"kind": "riser"} or riser',
    "delay": '{"output": "osc", "ms": 40} or osc 40',
    "teach": '{"scene": "combat", "seconds": 5} or combat (+ "file", "start": a recording)',
    "teach_undo": "{} (or nothing)",
    "game": '{"game": "Red Eclipse"} or Red Eclipse',
}


def _bare(name: str, text: str) -> dict[str, Any]:
    """A bare (non-object) payload as the command's fields."""
    unquoted = text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text
    release = unquoted.lower() in RELEASE_WORDS
    if name == "tempo":
        return {"bpm": None if release else _number(name, unquoted)}
    if name == "layers":
        if release:
            return {"layers": None}
        value = _number(name, unquoted)
        if not value.is_integer():
            raise CommandError(f"layers: {unquoted!r} is not a whole number of layers (1-5)")
        return {"layers": int(value)}
    if name == "scene":
        return {"scene": None if release else unquoted}
    if name == "key":
        return {"key": None if release else unquoted}
    if name == "transport":
        return {"action": unquoted.lower()}
    if name == "source":
        return {"source": unquoted}
    if name == "stinger":
        return {} if release or not unquoted else {"kind": unquoted.lower()}
    if name == "mute":
        return {"layer": unquoted}
    if name == "delay":
        parts = [p for p in re.split(r"[,\s]+", unquoted) if p]
        if len(parts) != 2:
            raise CommandError(f"delay: send OUTPUT MS or a JSON object, e.g. {_EXAMPLES['delay']}")
        return {"output": parts[0].lower(), "ms": _number(name, parts[1])}
    if name == "teach":
        return {"scene": unquoted}
    if name == "teach_undo":
        return {}
    if name == "game":
        return {"game": unquoted}
    if name == "mood":
        parts = [p for p in re.split(r"[,\s]+", unquoted) if p]
        if len(parts) not in (2, 3):
            raise CommandError(f"mood: send a JSON object, e.g. {_EXAMPLES['mood']}")
        values = [_number(name, p) for p in parts]
        return dict(zip(("valence", "arousal", "hold_s"), values, strict=False))
    raise CommandError(f"{name}: send a JSON object, e.g. {_EXAMPLES[name]}")  # pragma: no cover


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise CommandError(
            f"{name}: {shown!r} is not a number; send e.g. {_EXAMPLES[name]}"
        ) from None
    if not math.isfinite(value):
        raise CommandError(f"{name}: {text!r} is not a finite number")
    return value


def _describe(exc: ValidationError, name: str) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in error["loc"])
        # "scene: unknown scene", not "scene: scene: unknown scene".
        where = "" if where == name else where
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    text = "; ".join(parts)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def layer_names(layers: Collection[Layer]) -> list[str]:
    """Layer names in play order (for state and payloads)."""
    return [layer.value for layer in LAYER_ORDER if layer in layers]
