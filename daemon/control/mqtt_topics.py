"""MQTT names and payloads: the topic tree, the broker address, TLS, Home Assistant discovery
and WLED states. Pure functions of the config and the music, so the bridge
(:mod:`daemon.control.mqtt`) only connects, schedules and publishes.
"""

from __future__ import annotations

import colorsys
import json
import re
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from daemon import __version__
from daemon.config import MqttConfig
from daemon.control.commands import CommandResult, RequestId
from daemon.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def result_payload(result: CommandResult, request_id: RequestId, *, plain: bool = False) -> str:
    """The answer on ``cmd/<name>/result``: ``{"ok": true, "error": null, "id": ...}`` (the
    command's ``id`` echoed, null without one), or with ``plain`` (``mqtt.plain_results``) the
    old text: ``ok`` or the error."""
    if plain:
        return result.message
    error = None if result.ok else result.message
    return json.dumps({"ok": result.ok, "error": error, "id": request_id})


def response_topic_usable(topic: str, base: str) -> bool:
    """Whether an MQTT v5 response topic may be answered on: a plain topic, not one of ours
    (an answer on ``<base>cmd/...`` would be read as a command, and answered, and so on)."""
    return (
        0 < len(topic) <= 512 and not any(c in topic for c in "+#\0") and not topic.startswith(base)
    )


def instance_name(config: MqttConfig) -> str:
    """The topic level naming this daemon: ``mqtt.instance``, or the host name made safe."""
    if config.instance:
        if not NAME_RE.match(config.instance):
            raise ConfigError(
                f"mqtt.instance {config.instance!r} may hold only letters, digits, '-' and '_'"
            )
        return config.instance
    host = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "-", host)[:64] or "moodscore"


def base_topic(config: MqttConfig) -> str:
    """``<prefix>/<instance>/``, checked: no wildcards, no empty levels."""
    prefix = config.prefix.strip("/")
    if not prefix or any(c in prefix for c in "+#\0") or "//" in prefix:
        raise ConfigError(
            f"mqtt.prefix {config.prefix!r} must be a topic without wildcards (+ #) or empty "
            "levels, e.g. moodscore"
        )
    return f"{prefix}/{instance_name(config)}/"


def group_topic(config: MqttConfig) -> str | None:
    """``<prefix>/group/<group>/`` for ``mqtt.group`` (None without one), checked: commands there
    reach every daemon of the group."""
    if not config.group:
        return None
    if not NAME_RE.match(config.group):
        raise ConfigError(
            f"mqtt.group {config.group!r} may hold only letters, digits, '-' and '_' (--group)"
        )
    base_topic(config)  # the prefix checked
    return f"{config.prefix.strip('/')}/group/{config.group}/"


def parse_broker(text: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port or None).

    Raises
    ------
    ConfigError
        An empty host or a port that is not a number in 1-65535.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise ConfigError(f"--mqtt {text!r}: give a broker host, e.g. --mqtt localhost:1883")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--mqtt {text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def check_config(config: MqttConfig) -> None:
    """Raise :class:`ConfigError` for a bad prefix, instance, group or TLS file, before a run
    starts."""
    base_topic(config)
    group_topic(config)
    tls_context(config)


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context ``mqtt.tls``/``ca_file``/``cert_file``/``key_file`` ask for, or None.

    Raises
    ------
    ConfigError
        A certificate or key file that does not load.
    """
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=config.ca_file or None)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"MQTT TLS files do not load ({exc}); check mqtt.ca_file, cert_file and key_file"
        ) from exc
    return context


def wled_state(
    *, valence: float, arousal: float, bpm: float, layers: int, segments: Sequence[int] = (0,)
) -> dict[str, Any]:
    """A WLED JSON API state for one bar, for each of ``segments`` (WLED segment ids).

    Colour: hue from valence (unpleasant = blue-violet, neutral = green-teal, pleasant = warm
    amber), saturation and brightness rising with arousal. Effect by arousal: Breathe (2) when
    calm, Running (15) in between, Sparkle+ (22) when intense; its speed follows the tempo
    (60 bpm = 0, 180 bpm = 255); intensity follows the layer count.
    """
    hue = 0.72 - 0.64 * (max(-1.0, min(1.0, valence)) + 1.0) / 2.0  # 0.72 violet .. 0.08 amber
    level = (max(-1.0, min(1.0, arousal)) + 1.0) / 2.0
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, 0.55 + 0.45 * level, 1.0)
    effect = 2 if level < 0.35 else 15 if level < 0.7 else 22
    look = {
        "col": [[round(r * 255), round(g * 255), round(b * 255)]],
        "fx": effect,
        "sx": round(255 * max(0.0, min(1.0, (bpm - 60.0) / 120.0))),
        "ix": round(255 * max(1, min(5, layers)) / 5),
    }
    return {
        "on": True,
        "bri": round(70 + 185 * level),
        "transition": 7,  # tenths of a second
        # WLED applies a "seg" entry to the segment its "id" names.
        "seg": [{"id": segment, **look} for segment in segments],
    }


def discovery_configs(
    *, base: str, instance: str, discovery_prefix: str, scenes: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Home Assistant MQTT discovery: (config topic, payload) for sensors of valence, arousal,
    scene and bpm, the audio's health (``ok`` / ``glitching``, every figure as an attribute) and
    late blocks per minute, numbers for tempo and layers, a select for the scene and a play
    switch."""
    node = f"moodscore_{instance}".replace("-", "_")
    device = {
        "identifiers": [node],
        "name": f"moodscore {instance}",
        "manufacturer": "moodscore",
        "model": "live soundtrack daemon",
        "sw_version": __version__,
    }
    origin = {"name": "moodscore", "sw_version": __version__}
    common = {
        "availability_topic": base + "status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "state_topic": base + "state",
        "device": device,
        "origin": origin,
    }

    def entry(component: str, key: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        # default_entity_id (the whole entity id) replaces the deprecated object_id.
        payload = {
            **common,
            "unique_id": f"{node}_{key}",
            "default_entity_id": f"{component}.{node}_{key}",
            **fields,
        }
        return f"{discovery_prefix}/{component}/{node}/{key}/config", payload

    return [
        entry(
            "sensor",
            "valence",
            name="Valence",
            value_template="{{ value_json.valence }}",
            icon="mdi:emoticon-happy-outline",
        ),
        entry(
            "sensor",
            "arousal",
            name="Arousal",
            value_template="{{ value_json.arousal }}",
            icon="mdi:lightning-bolt",
        ),
        entry(
            "sensor",
            "scene",
            name="Scene",
            value_template="{{ value_json.scene }}",
            icon="mdi:movie-open",
        ),
        entry(
            "sensor",
            "bpm",
            name="Tempo",
            value_template="{{ value_json.bpm }}",
            unit_of_measurement="bpm",
            icon="mdi:metronome",
        ),
        entry(
            "sensor",
            "health",
            name="Audio health",
            state_topic=base + "health",
            value_template="{{ value_json.status }}",
            json_attributes_topic=base + "health",
            entity_category="diagnostic",
            icon="mdi:heart-pulse",
        ),
        entry(
            "sensor",
            "late_blocks",
            name="Late audio blocks",
            state_topic=base + "health",
            value_template="{{ value_json.late_blocks_per_min }}",
            unit_of_measurement="/min",
            state_class="measurement",
            entity_category="diagnostic",
            icon="mdi:waveform",
        ),
        entry(
            "number",
            "tempo",
            name="Tempo override",
            command_topic=base + "cmd/tempo",
            value_template="{{ value_json.bpm }}",
            min=60,
            max=180,
            step=1,
            mode="slider",
            unit_of_measurement="bpm",
            icon="mdi:metronome",
        ),
        entry(
            "number",
            "layers",
            name="Layers override",
            command_topic=base + "cmd/layers",
            value_template="{{ value_json.layers }}",
            min=1,
            max=5,
            step=1,
            mode="slider",
            icon="mdi:layers-triple",
        ),
        entry(
            "select",
            "scene_select",
            name="Scene override",
            command_topic=base + "cmd/scene",
            value_template="{{ value_json.overrides.scene | default('auto') }}",
            options=["auto", *scenes],
            icon="mdi:movie-open-cog",
        ),
        entry(
            "switch",
            "play",
            name="Play",
            command_topic=base + "cmd/transport",
            payload_on="play",
            payload_off="stop",
            value_template="{{ 'play' if value_json.playing else 'stop' }}",
            state_on="play",
            state_off="stop",
            icon="mdi:play-pause",
        ),
    ]
