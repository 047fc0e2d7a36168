"""The ``[section]`` models of config.toml: type, range, choices and description of every key.

Each section is a frozen pydantic dataclass: a standard library dataclass (so
``dataclasses.replace`` and ``dataclasses.fields`` keep working) whose constructor validates every
value against its declaration. The declaration is the one place that states a key's type, its
range (``Field(ge=..., le=...)``; on a tuple key it bounds each item), its choices
(``Literal[...]``) and, in the string under it, its description: the comment above the key in
config.toml (tests/test_config.py keeps the two equal). Loading, layering, the environment and the
JSON schema live in :mod:`daemon.config`.

Values are accepted as TOML and the environment give them: ints and floats are strict (``true``
is not a number, ``"48000"`` is not an int), a float key takes an int, a string key takes a number
(``password = 1234``), a bool key takes true/false and the strings "true/false/1/0/yes/no"
(pydantic also takes "on/off"), a tuple key takes a list.

This module stays whole (about 560 lines): it is the schema of config.toml, one declaration and
one description per key, and reads best as one file beside it.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from daemon.errors import ConfigError

# extra="forbid": an unknown key is an error, never ignored. coerce_numbers_to_str: TOML and the
# environment turn `1234` into an int, but a password or a port name of digits is still a string.
# allow_inf_nan=False: TOML can spell inf and nan; no key means either.
# use_attribute_docstrings: the string under a field is its description in the JSON schema.
_SECTION = ConfigDict(
    extra="forbid",
    coerce_numbers_to_str=True,
    allow_inf_nan=False,
    use_attribute_docstrings=True,
)

# A MIDI note from A0 to C8, the piano's range.
MidiNote = Annotated[StrictInt, Field(ge=21, le=108)]

# Marks a key whose value `moodscore config` does not print (JSON schema's own word for it).
_SECRET: dict[str, Any] = {"writeOnly": True}


# Keys renamed in a release, old -> new: a config that still has the old name is told the new one.
RENAMED = {"midi.offset_ms": "midi.delay_ms"}


class ConfigSection:
    """Base of the section models: validated copies and one-line errors.

    A subclass ``FooConfig`` is the ``[foo]`` section of config.toml.
    """

    __slots__ = ()

    @classmethod
    def section_name(cls) -> str:
        """The ``[section]`` name of config.toml this class models (``EngineConfig`` -> engine)."""
        return cls.__name__.removesuffix("Config").lower()

    def with_(self, **values: Any) -> Self:
        """A copy with some keys changed, validated like config.toml.

        Raises
        ------
        ConfigError
            A key is unknown or a value out of its type, range or choices.
        """
        return self.merged(values, origin=f"{type(self).__name__}.with_")

    def merged(self, values: Mapping[str, Any], *, origin: str) -> Self:
        """A copy with ``values`` over this section's; ``origin`` (a file path, "environment",
        "command line") starts any error message."""
        name = self.section_name()
        # Every subclass is a dataclass; mypy sees only this base, which is not.
        fields = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for key in values:
            if f"{name}.{key}" in RENAMED:
                raise ConfigError(
                    f"{origin}: {name}.{key} is now {RENAMED[f'{name}.{key}']} (the same setting); "
                    "rename it"
                )
            if key not in fields:
                hint = suggest(key, fields, prefix=name)
                raise ConfigError(f"{origin}: unknown key {name}.{key}{hint}")
        try:
            return dataclasses.replace(self, **values)  # type: ignore[type-var]
        except ValidationError as exc:
            raise ConfigError(_explain(exc, type(self), values, origin)) from None


def section_schema(cls: type[ConfigSection]) -> dict[str, Any]:
    """The JSON schema of one section (cached: it never changes at run time)."""
    if cls not in _SCHEMAS:
        _SCHEMAS[cls] = TypeAdapter(cls).json_schema()
    return _SCHEMAS[cls]


_SCHEMAS: dict[type[ConfigSection], dict[str, Any]] = {}


def _explain(
    exc: ValidationError, cls: type[ConfigSection], values: Mapping[str, Any], origin: str
) -> str:
    """pydantic's first complaint as our one line: origin, dotted key, what is wrong, what is
    allowed. The allowed part comes from the field's JSON schema, so it states exactly what the
    declaration checks."""
    error = exc.errors(include_url=False)[0]
    key = str(error["loc"][0]) if error["loc"] else "?"
    prop = section_schema(cls)["properties"].get(key, {})
    dotted = f"{cls.section_name()}.{key}"
    value = values.get(key, error.get("input"))
    shown = format_toml_value(value)
    kind = error["type"]
    if kind == "literal_error" and "enum" in prop:
        choices = [str(c) for c in prop["enum"]]
        hint = suggest(value, choices, otherwise="") if isinstance(value, str) else ""
        return f"{origin}: {dotted} = {shown} is not one of {', '.join(choices)}{hint}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bounds = prop["prefixItems"][0] if "prefixItems" in prop else prop
        each = " (each item)" if "prefixItems" in prop else ""
        low, high = (format_toml_value(bounds.get(b)) for b in ("minimum", "maximum"))
        return f"{origin}: {dotted} = {shown} is outside [{low}, {high}]{each}"
    if kind == "finite_number":
        return f"{origin}: {dotted} = {shown} is not finite; it must be {_allowed(prop)}"
    return f"{origin}: {dotted} must be {_allowed(prop)}, got {shown}"


_TYPE_WORDS = {"integer": "int", "number": "float", "boolean": "bool (true or false)"}


def _allowed(prop: Mapping[str, Any]) -> str:
    """What a key's JSON schema accepts, in words: "int in [32, 4096]", "one of a, b"."""
    if "enum" in prop:
        return "one of " + ", ".join(str(c) for c in prop["enum"])
    if "prefixItems" in prop:
        items = prop["prefixItems"]
        word, _, bounds = _allowed(items[0]).partition(" in ")
        return f"a list of {len(items)} {word}s" + (f" each in {bounds}" if bounds else "")
    word = _TYPE_WORDS.get(prop.get("type", ""), "str")
    if "minimum" in prop and "maximum" in prop:
        low, high = format_toml_value(prop["minimum"]), format_toml_value(prop["maximum"])
        return f"{word} in [{low}, {high}]"
    return word


def format_toml_value(value: Any) -> str:
    """``value`` as TOML writes it: strings quoted, bools lower case, tuples as arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is a TOML basic string (same quotes and escapes), but for DEL, which JSON
        # leaves raw and TOML does not allow.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{format_toml_value(str(k))} = {format_toml_value(v)}" for k, v in value.items()
            )
            + "}"
        )
    return repr(value)


def suggest(
    name: str,
    candidates: Iterable[str],
    *,
    prefix: str = "",
    otherwise: str = "; see config.toml for the valid keys",
) -> str:
    """A "; did you mean ...?" naming the closest candidate, else ``otherwise``."""
    close = difflib.get_close_matches(name, list(candidates), n=1)
    if not close:
        return otherwise
    return f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?"


@dataclass(frozen=True, slots=True, config=_SECTION)
class SourceConfig(ConfigSection):
    """``[source]``: where frames come from."""

    kind: str = "auto"
    """Where frames come from: "auto" (webcam if one opens, else the built-in demo), "demo",
    "webcam" (see webcam_index), or a path to a video file."""

    webcam_index: StrictInt = 0
    """Webcam index (0 = first camera); `--source /dev/videoN` opens a camera by device path."""

    width: StrictInt = 640
    """Requested webcam capture width, pixels; the camera may pick the nearest it supports."""

    height: StrictInt = 360
    """Requested webcam capture height, pixels."""

    fps: StrictFloat = Field(default=30.0, ge=1, le=240)
    """Requested webcam frame rate; also the frame rate of the demo scene."""

    demo_cycle_s: StrictFloat = Field(default=60.0, ge=5, le=3600)
    """Length of one cycle of the demo scene (calm -> intense -> calm), seconds."""

    loop: bool = False
    """Play a video file again from the start when it ends (live `run` only)."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class AnalysisConfig(ConfigSection):
    """``[analysis]``: what reads the mood, and how frame features weigh in it."""

    mode: Literal["frame", "face", "game", "auto"] = "frame"
    """What reads the mood: "frame" (picture colour and motion), "face" (facial expression of the
    people in view; see [face]), "game" (scene class and intensity of captured game video; see
    [game]) or "auto" (face while faces are in view, else game)."""

    window_s: StrictFloat = Field(default=0.5, ge=0.05, le=10)
    """Length of one analysis window, seconds: one Mood per window."""

    analysis_width: StrictInt = Field(default=160, ge=16, le=1920)
    """Frames are shrunk to this width (keeping aspect) before measuring; smaller is faster."""

    motion_full_scale: StrictFloat = Field(default=0.12, ge=0.001, le=1)
    """Motion energy (mean absolute frame difference, 0-1) that counts as "full" motion."""

    arousal_weights: tuple[StrictFloat, StrictFloat, StrictFloat] = (0.6, 0.25, 0.15)
    """Weights of the features in arousal (motion, saturation, brightness contrast); they need not
    sum to 1."""

    valence_weights: tuple[StrictFloat, StrictFloat, StrictFloat] = (0.4, 0.2, 0.4)
    """Weights of the features in valence (brightness, saturation, colour warmth)."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class FaceConfig(ConfigSection):
    """``[face]``: face mode: how many faces, how they combine, how readings smooth."""

    max_faces: StrictInt = Field(default=4, ge=1, le=16)
    """Most faces looked at per frame (the largest ones are kept)."""

    combine: Literal["largest", "mean"] = "largest"
    """Several faces: "largest" reads the largest face, "mean" the confidence-weighted mean of all.
    """

    min_detection_confidence: StrictFloat = Field(default=0.5, ge=0.05, le=0.95)
    """Minimum face detection confidence (0-1); lower finds more faces and more false ones."""

    blendshape_weight: StrictFloat = Field(default=0.4, ge=0, le=1)
    """Share of the blendshape cues (smile, brows, eyes, jaw) beside the expression model, 0-1."""

    smoothing_s: StrictFloat = Field(default=0.5, ge=0, le=30)
    """Time constant of the confidence-weighted smoothing of the face reading, seconds (0 = none).
    """

    hold_s: StrictFloat = Field(default=1.0, ge=0, le=60)
    """With no face in view, hold the last reading this long (seconds) before drifting to neutral.
    """

    neutral_drift_s: StrictFloat = Field(default=1.0, ge=0.05, le=60)
    """Time constant of the drift back to the neutral mood once no face is in view, seconds."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class GameConfig(ConfigSection):
    """``[game]``: game mode: the scene model and the smoothing of its probabilities."""

    model: str = ""
    """Scene model for --mode game/auto: a .pt file from `moodscore train-scene` (a relative path is
    taken from the current directory); empty = the shipped default (models/weights/scene_default.pt,
    classes combat, exploration, dialogue, menu)."""

    smoothing_s: StrictFloat = Field(default=0.25, ge=0, le=30)
    """Time constant of the smoothing of the scene probabilities, seconds (0 = none), so one odd
    window does not flip the scene. Short: the model already reads a second of frames and the
    conductor's scene_hold_s/scene_attack_s hold a new scene before it counts; longer delays the
    answer to a fight by as much (1.0 s made it 1.8 s late at 110 bpm, 0.25 s gives 0.5 s)."""

    min_scene_prob: StrictFloat = Field(default=0.5, ge=0, le=1)
    """Confidence floor (unsure means steady): a window names its most probable scene only when that
    probability reaches this (0-1); below it no scene is named, the conductor keeps its preset and
    intensity alone moves tempo and layers. The timeline records each window's confidence."""

    audio: bool = True
    """Hear the game's own audio in `render`/`analyze --mode game` of a video file that has an audio
    track (speech raises dialogue, loud dense transients raise combat); --no-game-audio turns it
    off. Live, the audio comes from audio_device."""

    text: bool = True
    """Read on-screen text in game mode (one frame a second, in a worker): large text blocks raise
    dialogue and menu where the picture already gives them 0.1 or more (models/text_cues.py);
    --no-game-text turns it off."""

    audio_device: str = ""
    """Live game audio for `run` (--game-audio): "jack:PORTS" (a JACK port pattern), "pulse:NAME" or
    a name ending in ".monitor" (a PulseAudio/PipeWire source), or a PortAudio input name or index;
    empty = none. Capture only the game, never moodscore's own music (README, "Game audio"): the
    audio cues are dropped, with a warning, while the capture hears it."""
    profile: str = ""
    """Game whose taught profile to load and save (what `teach` marked for it, in the user data
    folder's moodscore/profiles; --game NAME sets it for one run); empty = taught scenes are kept
    for this run only."""

    teach_worker: Literal["process", "thread"] = "process"
    """Where a taught head trains while the music plays: "process" (a niced worker process with one
    torch thread; no audio glitch measured) or "thread" (a thread of the daemon)."""

    auto_profile: bool = False
    """Choose the game profile by itself from the OBS scene name (the OBS page reports it) or the
    captured window's title: a name in [game.profiles], else a saved profile whose name the scene
    name or title contains (case ignored); anything else keeps the profile in use."""

    profiles: dict[str, str] = Field(default_factory=dict, json_schema_extra={"default": {}})
    """For auto_profile: OBS scene names or window titles (or a part of them, case ignored) and the
    profile each picks, e.g. [game.profiles] "Red Eclipse" = "redeclipse"."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class ConductorConfig(ConfigSection):
    """``[conductor]``: mood smoothing and the grid on which changes land."""

    scene: str = "default"
    """Scene preset (a file in scenes/) used until a scene model names one."""

    smoothing_s: StrictFloat = Field(default=2.0, ge=0, le=60)
    """Time constant of the exponential smoothing of valence, and of arousal while it drifts,
    seconds."""

    attack_s: StrictFloat = Field(default=0.25, ge=0, le=60)
    """Time constant with which a sudden rise in arousal (see cue_threshold) is followed once it
    holds for two windows, seconds (short: the music answers a fight at once)."""

    release_s: StrictFloat = Field(default=3.0, ge=0, le=60)
    """Time constant with which a sudden fall in arousal is followed, seconds (long: a fight
    fades)."""

    cue_threshold: StrictFloat = Field(default=0.35, ge=0.05, le=2)
    """A jump in arousal at least this big (in a window, or in a frame's reading that holds
    0.1 s) is a cue: the music answers it at once (a stinger, a transition rule) instead of
    through the smoothing."""

    hysteresis: StrictFloat = Field(default=0.08, ge=0, le=0.5)
    """A smoothed value must move this far past a step boundary before bpm, layers or mode change.
    """

    beats_per_bar: StrictInt = Field(default=4, ge=2, le=7)
    """Beats in a bar (the grid on which changes land)."""

    scene_hold_s: StrictFloat = Field(default=2.0, ge=0, le=60)
    """A scene named by the analysis (a scene model) must persist this long, seconds, before the
    conductor switches to its preset (at the next bar line); names without a preset are ignored."""

    scene_attack_s: StrictFloat = Field(default=0.5, ge=0, le=60)
    """A scene named with at least scene_confidence probability must persist only this long,
    seconds."""

    scene_confidence: StrictFloat = Field(default=0.7, ge=0, le=1)
    """Probability from which a scene change counts as confident (see scene_attack_s)."""

    stingers: bool = True
    """Play a stinger (a short phrase in the key: a hit, a riser, a fill) when a cue comes."""

    stinger_interval_s: StrictFloat = Field(default=4.0, ge=0, le=600)
    """At least this long between two stingers, seconds."""

    preset_dirs: tuple[str, ...] = ()
    """Your own scene preset folders, searched before the built-in scenes/ (a preset there with
    the name of a built-in one replaces it). A preset file edited while the music plays takes
    effect at the next bar line."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class ComposerConfig(ConfigSection):
    """``[composer]``: the melody model, its sampling and the form of the tune."""

    melody_model: Literal["lstm", "ngram"] = "lstm"
    """Melody model: "lstm" (the conditioned LSTM, models/MELODY_CARD.md) or "ngram" (the Markov
    model, models/NGRAM_CARD.md); both are trained on public-domain folk tunes."""

    melody_weights: str = ""
    """LSTM weights written by `moodscore train-melody` (a relative path is looked up in the working
    directory, then in the repository); empty = the shipped models/weights/melody_lstm.pt."""

    seed: StrictInt = 0
    """Seed for all musical randomness; the same input, config and seed give the same notes."""

    temperature: StrictFloat = Field(default=0.9, ge=0.05, le=3)
    """Sampling temperature of the melody model (lower = safer, higher = more adventurous)."""

    top_p: StrictFloat = Field(default=0.95, ge=0.05, le=1)
    """Nucleus sampling of the LSTM: draw from the likeliest notes holding this share of probability
    (1 = all notes; lower = safer)."""

    scale_constraint: bool = True
    """Keep the lead's pitches in the key's scale (minor adds the raised 7th); false lets the model
    choose chromatic notes itself."""

    register: tuple[MidiNote, MidiNote] = (60, 84)
    """Lowest and highest MIDI note of the lead; the LSTM also centres its register between them."""

    structure: str = ""
    """Imposed form for the LSTM melody, one letter per section, primes for variations, e.g. "AABA"
    or "A B A' C A''" (A' keeps A's opening and rhythm with new pitches); empty = free form with
    motif echoes. Each pass through the form writes new material."""

    section_bars: StrictInt = Field(default=4, ge=1, le=16)
    """Bars per section of `structure`."""

    lookahead_bars: StrictInt = Field(default=1, ge=1, le=8)
    """Bars composed ahead of the bar that is playing, so model latency never reaches the speakers.
    """


@dataclass(frozen=True, slots=True, config=_SECTION)
class EngineConfig(ConfigSection):
    """``[engine]``: the pyo audio engine and its master bus."""

    backend: Literal["auto", "device", "jack", "manual", "offline"] = "auto"
    """Audio backend: "auto" (JACK if a server runs, else a device if one exists, else manual),
    "device" (portaudio), "jack", "manual" (live without a sound card), "offline" (render)."""

    sample_rate: StrictInt = Field(default=48000, ge=8000, le=192000)
    """Sample rate of the engine and of recordings, Hz."""

    buffer_size: StrictInt = Field(default=256, ge=32, le=4096)
    """Samples per engine block; the musical clock advances one block at a time."""

    master_gain: StrictFloat = Field(default=0.7, ge=0, le=1)
    """Output gain before the limiter, 0-1."""

    reverb: StrictFloat = Field(default=0.25, ge=0, le=1)
    """Reverb amount on the master bus, 0-1."""

    live_ahead_s: StrictFloat = Field(default=0.1, ge=0.01, le=2)
    """Audio the live manual engine renders ahead of the wall clock, seconds."""

    priority: Literal["realtime", "high", "normal"] = "high"
    """Scheduling priority of the live engine's audio thread, so a busy machine does not make it
    late: "high" (nice -10), "realtime" (SCHED_FIFO, falling back to high) or "normal". Raising it
    needs root, CAP_SYS_NICE or a `ulimit -e`/`-r` limit; without it the log says so, once."""

    process: Literal["own", "shared"] = "own"
    """Where a live "manual" engine runs: "own" (a process of its own, fed scores through a
    queue and handing audio back through shared memory, so a busy daemon cannot make it late) or
    "shared" (a thread of the daemon's process). Renders, the device/jack backends, the library
    mode and a Link session always use "shared"."""

    tempo_ramp: StrictFloat = Field(default=1.0, ge=0, le=1)
    """Fraction of a bar over which a tempo change ramps, starting at the bar line (0 = the tempo
    jumps on the downbeat, 1 = it glides across the whole bar)."""

    device: str = ""
    """Sound card for the "device" backend: its name (a unique part is enough) or its index, as
    `moodscore doctor` lists them; empty = the system's default output. `run --device NAME|INDEX`
    sets it."""

    delay_ms: StrictFloat = Field(default=0.0, ge=0, le=2000)
    """The sound card's own latency, milliseconds: the speakers play this long after the engine
    computes the sound (the recording's time, the reference of every delay), so every other output
    (MIDI, MQTT, OSC, OS2L, the web page) moves this much later to stay with what is heard. Renders
    and recordings never move. The panel's calibration page measures it (README: "Delays")."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class MidiConfig(ConfigSection):
    """``[midi]``: live MIDI out and MIDI clock."""

    enabled: bool = False
    """Mirror the music live to a MIDI port (notes on channels lead 1, bass 2, pad 3, arp 4, drums
    10); `run --midi-port [NAME]` turns it on too. `--midi FILE.mid` writes a file instead."""

    port: str = ""
    """Output port to connect to (a unique part of its name is enough); empty opens a virtual port
    called "moodscore" that other programs connect to."""

    backend: str = "auto"
    """MIDI backend: "auto" (JACK when a JACK server runs, else ALSA), "jack", "alsa", or a mido
    backend such as "mido.backends.rtmidi/UNIX_JACK"."""

    clock: bool = True
    """Send MIDI clock (24 pulses per beat, following tempo ramps), Song Position, Start and Stop.
    """

    delay_ms: StrictFloat = Field(default=0.0, ge=-500, le=500)
    """Move MIDI out (notes and clock) later (+) or earlier (-) than the sound, milliseconds, to
    match a receiver's latency (README: "Delays")."""

    clock_in: bool = False
    """Follow an outside MIDI clock (24 pulses per beat): its tempo, and its Start,
    Stop and Continue as the transport (at the next bar line); `run --midi-clock-in [PORT]` turns
    it on. The clock's tempo leads over the mood's and a fixed one; a clock outside 20-300 bpm, or
    one that stops for 2 s, is logged once and the music keeps its own tempo. Bar lines stay
    moodscore's (MIDI clock says nothing of where a bar starts)."""

    clock_in_port: str = ""
    """Input port the outside clock comes from (a unique part of its name is enough); empty opens
    a virtual input called "moodscore-clock-in" that the clock's sender connects to."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class RecordConfig(ConfigSection):
    """``[record]``: recordings of ``run``."""

    dir: str = ""
    """Directory for recordings of `run` (WAV + timeline JSON); empty means no recording."""

    max_file_mb: StrictInt = Field(default=4000, ge=1, le=4290)
    """A recording continues in a new file (NAME-002.wav, ... each with its own timeline) before
    one grows past this many megabytes; a WAV file holds at most 4,294 MB (~6 h of stereo)."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class ModelsConfig(ConfigSection):
    """``[models]``: where the torch models run."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where torch models run: "auto" (CUDA when present), "cpu" or "cuda"."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class MqttConfig(ConfigSection):
    """``[mqtt]``: the MQTT bridge: broker, topics, Home Assistant and WLED."""

    enabled: bool = False
    """Publish beats, bars and state to an MQTT broker and take commands from it (README: "MQTT");
    `run --mqtt HOST[:PORT]` and `render --mqtt HOST[:PORT]` turn it on for one run."""

    host: str = "localhost"
    """Broker host name or address."""

    port: StrictInt = Field(default=1883, ge=1, le=65535)
    """Broker TCP port (8883 is the usual one for TLS)."""

    prefix: str = "moodscore"
    """First level of every topic: topics are <prefix>/<instance>/status, .../state, .../event/beat,
    ..."""

    instance: str = ""
    """Second level: this daemon's name, so several can share a broker; empty = this machine's host
    name. Letters, digits, "-" and "_" only."""

    client_id: str = ""
    """MQTT client id; empty = "moodscore-<instance>". Two clients with one id knock each other off.
    """

    username: str = ""
    """User name for the broker; empty connects without one."""

    password: str = Field(default="", json_schema_extra=_SECRET)
    """Password for the broker; better set through the environment: MOODSCORE_MQTT_PASSWORD=..."""

    tls: bool = False
    """Connect over TLS (with the system's CA certificates unless ca_file is set)."""

    ca_file: str = ""
    """CA certificate file (PEM) that signed the broker's certificate, for a private CA."""

    cert_file: str = ""
    """Client certificate (PEM), for brokers that authenticate clients by certificate."""

    key_file: str = ""
    """Private key (PEM) of cert_file."""

    keepalive_s: StrictInt = Field(default=30, ge=5, le=3600)
    """Seconds between keep-alive pings; the broker declares us gone (Last Will: offline) after
    1.5x."""

    reconnect_max_s: StrictFloat = Field(default=30.0, ge=1, le=600)
    """Reconnect after a lost connection with backoff from 0.5 s doubling up to this many seconds,
    while the music plays on."""

    beat_lead_ms: StrictFloat = Field(default=50.0, ge=0, le=1000)
    """Publish event/beat and event/bar this many milliseconds before the beat sounds, so lights
    land on it; at most engine.live_ahead_s (the engine announces beats that far ahead)."""

    state_interval_s: StrictFloat = Field(default=0.25, ge=0, le=60)
    """The retained state is published on change, at most once per this many seconds."""

    health_interval_s: StrictFloat = Field(default=10.0, ge=1, le=3600)
    """The retained health report (late audio blocks, xruns, CPU, memory) is published at most once
    per this many seconds, and at once when its status changes between ok and glitching."""

    note_events: bool = False
    """Also publish event/note for every note (with its layer, pitch and velocity), ahead of the
    sound like beats; busy (tens of messages a second), so off by default."""

    protocol: Literal["5", "3.1.1"] = "5"
    """MQTT protocol version to speak: "5" (answers on a client's response topic with its
    correlation data) or "3.1.1" for an old broker that does not know 5 (mosquitto before 1.6)."""

    plain_results: bool = False
    """Answer commands on cmd/<name>/result in plain text ("ok" or the error) instead of JSON
    {"ok": ..., "error": ..., "id": ...}, for scripts written for the old answers."""

    discovery: bool = True
    """Publish Home Assistant discovery configs (sensors, numbers, a select and a switch), re-sent
    whenever Home Assistant comes online."""

    discovery_prefix: str = "homeassistant"
    """Topic prefix Home Assistant listens on for discovery."""

    wled_topic: str = ""
    """WLED device or group topic (e.g. "wled/all"); on each bar a colour, effect and speed derived
    from the mood and tempo go to <wled_topic>/api. Empty = no WLED output."""

    wled_interval_s: StrictFloat = Field(default=1.0, ge=0, le=60)
    """Send WLED at most once per this many seconds (a bar at 180 bpm is 1.3 s)."""

    wled_segments: tuple[Annotated[StrictInt, Field(ge=0, le=31)], ...] = (0,)
    """WLED segment ids the colour and effect go to (WLED numbers them from 0, up to 31)."""

    group: str = ""
    """A group this daemon belongs to: commands published to <prefix>/group/<group>/cmd/<name>
    reach every member (one installation, several rooms; README: "Several instances, one beat");
    empty = none. `run --group NAME` sets it. Letters, digits, "-" and "_" only."""

    delay_ms: StrictFloat = Field(default=0.0, ge=-500, le=2000)
    """Move MQTT beat, bar and note events later (+) or earlier (-) than the sound, milliseconds
    (their "time" too), to match the lights' latency."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class OscConfig(ConfigSection):
    """``[osc]``: Open Sound Control: beats, bars, phase, mood, scene and cues out; commands in."""

    enabled: bool = False
    """Send beats, bars, the phase, mood, scene and cues as OSC bundles to host:port (README:
    "OSC"); `run --osc HOST:PORT` turns it on for one run."""

    host: str = "127.0.0.1"
    """Where OSC goes: a host name or address (a broadcast address reaches a whole subnet)."""

    port: StrictInt = Field(default=9000, ge=1, le=65535)
    """UDP port OSC goes to (TouchDesigner's OSC In, Resolume's OSC input, a QLab cue list...)."""

    listen: str = ""
    """Take OSC commands (/moodscore/cmd/<name>) on this [HOST:]PORT over UDP; empty = none.
    `run --osc-listen [HOST:]PORT` sets it. A host other than 127.0.0.1 lets the network steer the
    music."""

    lead_ms: StrictFloat = Field(default=80.0, ge=0, le=1000)
    """Send each beat's bundle this many milliseconds before it sounds; its time tag says when it
    sounds, so a receiver that honours time tags is exact whatever the network or a busy machine
    does (one that acts on arrival is this early: lower it for such a receiver). Up to a beat."""

    delay_ms: StrictFloat = Field(default=0.0, ge=-500, le=2000)
    """Move OSC later (+) or earlier (-) than the sound, milliseconds (its time tags too), to match
    a receiver's latency."""

    phase_hz: StrictFloat = Field(default=30.0, ge=0, le=200)
    """Send /moodscore/phase (bar and beat phase, 0-1) this many times a second; 0 = never."""

    prefix: str = "/moodscore"
    """First part of every OSC address, out and in."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class Os2lConfig(ConfigSection):
    """``[os2l]``: OS2L beats for DMX lighting software (QLC+, SoundSwitch, ...)."""

    enabled: bool = False
    """Send OS2L beat messages to a lighting program (README: "OS2L"); `run --os2l [HOST:PORT]`
    turns it on for one run."""

    host: str = ""
    """The lighting program's host (QLC+'s OS2L plugin listens there); empty = find it on the
    network by DNS-SD (_os2l._tcp, as QLC+ and SoundSwitch announce it)."""

    port: StrictInt = Field(default=9996, ge=1, le=65535)
    """Its OS2L TCP port (QLC+ listens on 9996 by default)."""

    lead_ms: StrictFloat = Field(default=30.0, ge=0, le=1000)
    """Send each beat this many milliseconds before it sounds (OS2L has no time stamps: the
    receiver acts on arrival, so set delay_ms to what its lights need)."""

    delay_ms: StrictFloat = Field(default=0.0, ge=-500, le=2000)
    """Move OS2L beats later (+) or earlier (-) than the sound, milliseconds."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class LinkConfig(ConfigSection):
    """``[link]``: Ableton Link: tempo and bar phase shared with DJ software, DAWs, phones and other
    moodscore daemons on the local network."""

    enabled: bool = False
    """Join the Link session on the local network (README: "Ableton Link"); `run --link
    [lead|follow]` turns it on for one run. With Link on, tempo changes land on the bar line
    (no ramp), so every peer's timeline stays exact. Link finds peers by multicast on every
    network interface: use it on the installation's own network."""

    follow: bool = False
    """Follow the session: the conductor's tempo yields to the session's and bar lines move onto
    its bar lines (a far-off phase is caught up over a few bars; with no other peer the
    conductor's tempo plays). Off: moodscore leads, and the session gets its tempo and bar phase
    just before each bar line (a follower's engine.live_ahead_s must stay under 0.2 s)."""

    start_stop: bool = True
    """Share play/stop with the session (Link's start/stop sync): following, the session's stop
    stops the music at the next bar line; leading, moodscore's transport starts and stops it."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class WebConfig(ConfigSection):
    """``[web]``: the OBS page, the control panel and the JSON API."""

    enabled: bool = True
    """Serve the OBS page (/), the control panel (/panel) and the JSON API while `run` plays; `run
    --no-web` turns it off for one run."""

    host: str = "127.0.0.1"
    """Address to listen on; 127.0.0.1 serves this machine only, 0.0.0.0 the whole network (then a
    token is required; see token). `run --web HOST:PORT` overrides host and port."""

    port: StrictInt = Field(default=8080, ge=0, le=65535)
    """TCP port (0 = any free port; the log says which)."""

    token: str = Field(default="", json_schema_extra=_SECRET)
    """Access token (?token=... in the URL, or an Authorization: Bearer header): needed by clients
    other than this machine, by other programs' web pages, and to switch the source to a camera,
    screen or file; empty = a random token each run, in the panel's URL printed at start."""

    allowed_hosts: tuple[str, ...] = ()
    """Host names the server answers to besides the address it listens on, localhost, 127.0.0.1
    and [::1] (e.g. ["studio.local"]); a request naming any other host gets 421 (DNS rebinding)."""

    trust_loopback_sources: bool = False
    """Let requests from this machine switch the source to a webcam, screen or file without the
    token (any web page open in a browser here could then start a capture)."""

    delay_ms: StrictFloat = Field(default=0.0, ge=-100, le=2000)
    """Move the OBS page's audio and visuals later (+) or earlier (-) than the sound, milliseconds
    (the panel's calibration page measures it; README: "Delays")."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class VisualsConfig(ConfigSection):
    """``[visuals]``: the beat-synced visuals stream and music-video pictures."""

    width: StrictInt = Field(default=1280, ge=64, le=3840)
    """Width of the live visuals stream of the OBS page, pixels (set the Browser Source to the
    same)."""

    height: StrictInt = Field(default=720, ge=64, le=2160)
    """Height of the live visuals stream, pixels."""

    fps: StrictFloat = Field(default=30.0, ge=1, le=60)
    """Frames per second of the live visuals stream."""

    worker_process: bool = False
    """Draw and VP8-encode the live visuals in a process of their own, so they never hold the audio
    thread up on a busy machine (see `moodscore bench`: busy_machine); off until proven."""

    render: Literal["overlay", "only", "none"] = "none"
    """Visuals in `moodscore render` MP4s when --visuals is not given: "overlay" (over the input's
    picture), "only" (the visuals alone) or "none" (the input's picture as it is)."""


@dataclass(frozen=True, slots=True, config=_SECTION)
class LibraryConfig(ConfigSection):
    """``[library]``: the music library: its index, scans and the library mode."""

    index: str = ""
    """The index of scanned tracks (SQLite); empty = $XDG_DATA_HOME/moodscore/library.sqlite
    (~/.local/share/moodscore/library.sqlite). `library scan/recommend --index PATH` overrides it.
    """

    dir: str = ""
    """The music folder `library scan` reads when given none, and that the library mode plays from
    (only tracks under it); empty = every track in the index."""

    workers: StrictInt = Field(default=2, ge=1, le=64)
    """Processes that analyse files side by side during a scan (1 = in the moodscore process)."""

    play: bool = False
    """run/render: play the library's track for the current scene and mood instead of generated
    music (`--library [DIR|INDEX]` turns it on for one run)."""

    crossfade_s: StrictFloat = Field(default=2.0, ge=0, le=30)
    """Library mode: seconds over which a new track fades in and the old one out, from a bar line.
    """

    min_hold_bars: StrictInt = Field(default=8, ge=1, le=1000)
    """Library mode: bars a track plays at least before another may replace it."""

    switch_margin: StrictFloat = Field(default=0.1, ge=0, le=4)
    """Library mode: how much closer (Earth Mover's Distance in the valence/arousal plane) another
    track must be than the one playing to replace it."""

    seed_track: str = ""
    """A MIDI file whose top line primes the melody LSTM before the first bar (`--seed-track FILE`);
    empty = none."""

    seed_notes: StrictInt = Field(default=32, ge=8, le=512)
    """How many notes of the seed track's top line (from its first bar line) prime the LSTM."""
