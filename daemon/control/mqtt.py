"""MQTT: beat-accurate telemetry for lighting rigs and automation, and live control.

Topics, under ``<prefix>/<instance>/`` (``moodscore/<host name>/`` by default; the README's "MQTT"
section shows every payload):

- ``status``: ``online`` / ``offline``, retained; ``offline`` is also the Last Will, so a crash or
  a lost network says so too;
- ``state``: retained JSON (:meth:`ControlHub.state`), published on change, rate-limited;
- ``health``: retained JSON, the health monitor's report (:mod:`daemon.control.health`: late
  blocks, xruns, underruns, CPU, memory, ``status``), at most every ``health_interval_s`` and at
  once when the status changes;
- ``event/beat``: JSON per beat, published ``beat_lead_ms`` *before* the beat sounds, with the
  wall-clock time (``time``, Unix seconds) and the audio time it sounds at; ``event/bar`` the
  same per bar with the bar's plan; ``event/scene`` when the scene changes; ``event/cue`` when
  the music answers a sudden change at once (kind, strength, the audio time it answers at);
  ``event/note`` (``note_events``) per note;
- ``cmd/<name>`` (mood, scene, tempo, layers, key, mute, transport, source, stinger,
  teach, teach_undo, game): commands, validated
  by :mod:`daemon.control.commands`; each is answered on ``cmd/<name>/result`` with JSON
  ``{"ok": bool, "error": str|null, "id": ...}`` echoing the ``id`` of a JSON command (plain
  ``ok`` or the error text with ``mqtt.plain_results``). An MQTT v5 client that sends a response
  topic gets the same answer there too, with its correlation data.
- ``<prefix>/group/<group>/cmd/<name>`` (``mqtt.group``, ``run --group``): the same commands,
  sent once to every daemon of the group (one installation, several rooms: each member applies
  it to its own music, and still follows its own camera); each member answers on its own
  ``cmd/<name>/result`` and on ``<prefix>/group/<group>/cmd/<name>/result/<instance>`` (the same
  JSON with ``"instance"`` added), so a sender sees every member's answer.

Home Assistant discovery configs are retained under ``<discovery_prefix>/...`` and sent again
whenever ``<discovery_prefix>/status`` says ``online``. With ``wled_topic`` set, each bar sends a
colour, effect and speed from the mood and tempo to ``<wled_topic>/api`` (rate-limited).

The bridge is an output of the session (closed last, so ``offline`` means the music has gone)
and never holds the music up: the clock's listeners only schedule on the event loop; a broker
that goes away is reconnected to with backoff while the music plays on, and on reconnect the
status, state and discovery are published again. Events are best effort (dropped while
disconnected); state and status are retained, QoS 1.

Timing. The engine announces each beat from the audio block that contains it, which in
``manual`` mode is up to ``engine.live_ahead_s`` (100 ms) before the beat is heard; the bridge
schedules the publication with the clock's ``call_at(beat - beat_lead_ms, loop=...)``. With a
sound card (``device``/``jack``) beats are known only about one audio buffer ahead, so they are
published as soon as they are known (with less lead than asked for).

This module stays whole (about 570 lines): it is one connection's life cycle (connect, publish
status, state, health and discovery, answer commands, publish beats ahead of the sound,
reconnect and republish), all on one client and one set of counters; the payloads and topic
rules are already in :mod:`daemon.control.mqtt_topics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon.clock import MusicClock, ScheduledNote
from daemon.config import MqttConfig
from daemon.control.commands import (
    COMMAND_NAMES,
    CommandError,
    CommandResult,
    RequestId,
    split_request_id,
)
from daemon.control.hub import ControlHub
from daemon.control.mqtt_topics import (
    NAME_RE,
    base_topic,
    check_config,
    discovery_configs,
    group_topic,
    instance_name,
    parse_broker,
    response_topic_usable,
    result_payload,
    tls_context,
    wled_state,
)
from daemon.logs import RateLimitedLog
from daemon.messages import KEY_NAMES, BarStarted, Beat
from daemon.outputs.base import Output, Stage

__all__ = [
    "BridgeStats",
    "MqttBridge",
    "base_topic",
    "check_config",
    "discovery_configs",
    "instance_name",
    "parse_broker",
    "tls_context",
    "wled_state",
]

log = logging.getLogger("moodscore.mqtt")

# How long the connection task waits for the broker to acknowledge a QoS 1 publication.
_ACK_TIMEOUT_S = 5.0
# First reconnect delay; it doubles up to mqtt.reconnect_max_s.
_FIRST_BACKOFF_S = 0.5
# Incoming messages waiting to be handled; beyond this aiomqtt drops them (with a warning).
_INCOMING_QUEUE = 4096
# A beat that can no longer go out before it sounds is dropped, not sent late: lights flashing
# off the beat are worse than one missed flash. (In manual mode that is the session's very first
# beat: the clock starts at audio time 0 the moment the engine runs, so it is never known ahead.)
LATE_DROP_S = 0.0


@dataclass(frozen=True, slots=True)
class _Reply:
    """Where an MQTT v5 client asked for the answer: its response topic and correlation data."""

    topic: str
    properties: Properties | None

    @classmethod
    def of(cls, message: aiomqtt.Message, base: str, group: str | None = None) -> _Reply | None:
        asked = message.properties
        topic = getattr(asked, "ResponseTopic", None) if asked is not None else None
        if not isinstance(topic, str) or not response_topic_usable(topic, base):
            return None
        if group is not None and not response_topic_usable(topic, group):
            return None
        correlation = getattr(asked, "CorrelationData", None)
        if correlation is None:
            return cls(topic, None)
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = bytes(correlation)
        return cls(topic, properties)


@dataclass
class BridgeStats:
    """What the bridge did: counts, and each beat's lead (ms between publishing and the sound)."""

    connects: int = 0
    beats_published: int = 0
    beats_late: int = 0
    commands: int = 0
    beat_leads_ms: list[float] = field(default_factory=list)


class MqttBridge(Output):
    """Connects a session's clock and control hub to an MQTT broker (an output, closed last).

    Parameters
    ----------
    config : the ``[mqtt]`` section (broker, credentials, TLS, topics, lead, rates).
    hub : the session's control hub: its state is published, commands go to it.

    :meth:`attach` subscribes to the clock's beats, bars (and notes); :meth:`start` starts the
    connection task (it returns at once; the broker may come later); :meth:`aclose` publishes
    ``offline`` and disconnects, after everything else has stopped.

    Raises
    ------
    ConfigError
        A bad prefix or instance name, or TLS files that do not load.
    """

    stage = Stage.ANNOUNCE
    name = "MQTT"
    delay_section = "mqtt"

    def __init__(self, *, config: MqttConfig, hub: ControlHub) -> None:
        self.config = config
        self.hub = hub
        self.base = base_topic(config)
        self.group = group_topic(config)
        self.instance = instance_name(config)
        self._tls = tls_context(config)
        self._lead_s = config.beat_lead_ms / 1000.0
        # mqtt.delay_ms: the session attaches the bridge to the clock seen this much later, so
        # beats, bars, notes and their "time" all move with it.
        self.delay_s = config.delay_ms / 1000.0
        self._client: aiomqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_dirty = asyncio.Event()
        self._last_scene: str | None = None
        self._last_wled = -float("inf")
        self._health: dict[str, Any] | None = None
        self._health_sent_at = -float("inf")
        self._health_sent_status: str | None = None
        self._fail_log = RateLimitedLog(log, interval=30.0)
        self._was_connected = False
        self.connected = asyncio.Event()
        self.stats = BridgeStats()

    # -- lifecycle -------------------------------------------------------------------------

    def _attach(self, clock: MusicClock) -> None:
        clock.add_beat_listener(self._beat_from_clock)
        clock.add_bar_listener(self._bar_from_clock)
        if self.config.note_events:
            clock.add_note_listener(self._notes_from_clock)
        self.hub.add_state_listener(self._state_changed)
        self.hub.add_event_listener(self._event)
        self.hub.add_health_listener(self._health_changed)

    async def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        log.info("MQTT: topics under %s on %s:%d", self.base, self.config.host, self.config.port)
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="mqtt")

    async def _aclose(self) -> None:
        """Publish ``offline`` (retained), disconnect and stop."""
        self.hub.remove_state_listener(self._state_changed)
        self.hub.remove_event_listener(self._event)
        self.hub.remove_health_listener(self._health_changed)
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(
                    self.base + "status", "offline", qos=1, retain=True, timeout=_ACK_TIMEOUT_S
                )
        tasks = [t for t in [self._task, *self._tasks] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._tasks.clear()
        self.connected.clear()

    # -- the connection --------------------------------------------------------------------

    def _new_client(self) -> aiomqtt.Client:
        config = self.config
        paho_log = logging.getLogger("moodscore.mqtt.paho")
        paho_log.setLevel(logging.WARNING)
        return aiomqtt.Client(
            config.host,
            config.port,
            username=config.username or None,
            password=config.password or None,
            identifier=config.client_id or f"moodscore-{self.instance}",
            protocol=(
                aiomqtt.ProtocolVersion.V5
                if config.protocol == "5"
                else aiomqtt.ProtocolVersion.V311
            ),
            will=aiomqtt.Will(self.base + "status", "offline", qos=1, retain=True),
            keepalive=config.keepalive_s,
            tls_context=self._tls,
            timeout=_ACK_TIMEOUT_S,
            max_queued_incoming_messages=_INCOMING_QUEUE,
            logger=paho_log,
        )

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF_S
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client
                    await self._on_connect(client)
                    backoff = _FIRST_BACKOFF_S
                    async for message in client.messages:
                        await self._on_message(client, message)
            except aiomqtt.MqttError as exc:
                self._report_failure(exc)
            finally:
                self._client = None
                self.connected.clear()
                self._state_dirty.set()  # wake the state task so it sees the loss
            # Jitter, so a fleet of daemons does not hammer a broker that comes back.
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, self.config.reconnect_max_s)

    def _report_failure(self, exc: aiomqtt.MqttError) -> None:
        where = f"{self.config.host}:{self.config.port}"
        hint = ""
        text = str(exc)
        if "authori" in text.lower() or "bad user" in text.lower():
            hint = "; check mqtt.username and mqtt.password"
        elif "certificate" in text.lower() or "ssl" in text.lower():
            hint = "; check mqtt.tls and mqtt.ca_file"
        if self._was_connected:
            self._was_connected = False
            log.warning(
                "MQTT: lost the broker at %s (%s); reconnecting, music plays on", where, text
            )
        else:
            self._fail_log.warning(
                "MQTT: no broker at %s (%s)%s; retrying in the background", where, text, hint
            )

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        self.stats.connects += 1
        self._was_connected = True
        log.info("MQTT: connected to %s:%d as %s", self.config.host, self.config.port, self.base)
        await client.subscribe(self.base + "cmd/+", qos=1)
        if self.group is not None:
            await client.subscribe(self.group + "cmd/+", qos=1)
        if self.config.discovery:
            await client.subscribe(self.config.discovery_prefix + "/status", qos=1)
        await client.publish(self.base + "status", "online", qos=1, retain=True)
        await self._publish_state(client)
        if self._health is not None:
            await client.publish(self.base + "health", json.dumps(self._health), qos=1, retain=True)
        if self.config.discovery:
            await self._publish_discovery(client)
        self.connected.set()
        if not any(t.get_name() == "mqtt-state" for t in self._tasks):
            self._spawn(self._state_loop(), name="mqtt-state")

    async def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        raw: bytes | str = b""
        if isinstance(payload, bytes | str):
            raw = payload
        elif payload is not None:  # paho hands over bytes; aiomqtt's type allows numbers too
            raw = str(payload)
        if topic == self.config.discovery_prefix + "/status":
            if raw in (b"online", "online"):
                log.info("MQTT: Home Assistant came online; sending discovery again")
                await self._publish_discovery(client)
                await self._publish_state(client)
            return
        if topic.startswith(self.base + "cmd/"):
            name, group = topic[len(self.base) + 4 :], False
        elif self.group is not None and topic.startswith(self.group + "cmd/"):
            name, group = topic[len(self.group) + 4 :], True
        else:
            return
        self.stats.commands += 1
        reply = _Reply.of(message, self.base, self.group)
        if message.retain:
            # A retained command would be applied again after every reconnect.
            refused = CommandResult(
                False, "refused: retained command; publish commands without retain"
            )
            self._answer(name, refused, None, reply, group=group)
            return
        if name == "source" or (name == "teach" and b'"file"' in _bytes(raw)):
            # Opening a camera or reading a recording takes a while: answer when done, keep
            # reading commands.
            self._spawn(self._execute(name, raw, reply, group=group), name=f"mqtt-{name}")
            return
        await self._execute(name, raw, reply, group=group)

    async def _execute(
        self, name: str, raw: bytes | str, reply: _Reply | None, *, group: bool = False
    ) -> None:
        try:
            request_id, payload = split_request_id(raw)
        except CommandError as exc:
            self._answer(name, CommandResult(False, str(exc)), None, reply, group=group)
            return
        result = await self.hub.execute(name, payload)
        self._answer(name, result, request_id, reply, group=group)

    def _answer(
        self,
        name: str,
        result: CommandResult,
        request_id: RequestId,
        reply: _Reply | None,
        *,
        group: bool = False,
    ) -> None:
        text = result_payload(result, request_id, plain=self.config.plain_results)
        # The result topic of an unknown or odd name still answers, on a name safe to use.
        leaf = name if name in COMMAND_NAMES or NAME_RE.match(name) else "_invalid"
        self._publish_now(f"{self.base}cmd/{leaf}/result", text)
        if group and self.group is not None:
            answer = (
                text
                if self.config.plain_results
                else json.dumps({**json.loads(text), "instance": self.instance})
            )
            self._publish_now(f"{self.group}cmd/{leaf}/result/{self.instance}", answer)
        if reply is not None:
            self._publish_now(reply.topic, text, properties=reply.properties)

    # -- state, scene events, discovery ----------------------------------------------------

    def _state_changed(self, state: dict[str, Any]) -> None:
        self._state_dirty.set()
        scene = state.get("scene")
        if scene is not None and scene != self._last_scene:
            previous, self._last_scene = self._last_scene, scene
            self._publish_now(
                self.base + "event/scene",
                json.dumps(
                    {
                        "scene": scene,
                        "previous": previous,
                        "bar": state.get("bar"),
                        "forced": "scene" in state.get("overrides", {}),
                    }
                ),
            )

    def _health_changed(self, report: dict[str, Any]) -> None:
        """A health report (once a second): retained, rate-limited, at once on a new status."""
        self._health = report
        now = time.monotonic()
        status = report.get("status")
        if (
            status == self._health_sent_status
            and now - self._health_sent_at < self.config.health_interval_s
        ):
            return
        if self._publish_now(self.base + "health", json.dumps(report), qos=1, retain=True):
            self._health_sent_at, self._health_sent_status = now, status

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        """A moment worth a message (a cue): ``event/<name>``, at once, best effort."""
        self._publish_now(f"{self.base}event/{name}", json.dumps(payload))

    async def _state_loop(self) -> None:
        """Publish the state when it changed, at most every ``state_interval_s``."""
        while True:
            await self._state_dirty.wait()
            self._state_dirty.clear()
            client = self._client
            if client is None or not self.connected.is_set():
                continue
            try:
                await self._publish_state(client)
            except aiomqtt.MqttError:
                continue  # the connection task reconnects and publishes it again
            await asyncio.sleep(self.config.state_interval_s)

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        await client.publish(self.base + "state", json.dumps(self.hub.state()), qos=1, retain=True)

    async def _publish_discovery(self, client: aiomqtt.Client) -> None:
        for topic, payload in discovery_configs(
            base=self.base,
            instance=self.instance,
            discovery_prefix=self.config.discovery_prefix,
            scenes=list(self.hub.scene_names()),
        ):
            await client.publish(topic, json.dumps(payload), qos=1, retain=True)

    # -- beat, bar and note events ---------------------------------------------------------

    def _beat_from_clock(self, beat: Beat) -> None:
        # The clock's audio thread: decide here (the transport of this bar is the engine's own
        # state), then let the clock call the loop. A stopped transport announces no beats.
        if self.clock.playing:
            self._at_sound(beat.audio_time, self._publish_beat, beat)

    def _bar_from_clock(self, started: BarStarted) -> None:
        if self.clock.playing:
            self._at_sound(started.audio_time, self._publish_bar, started)

    def _notes_from_clock(self, notes: Sequence[ScheduledNote]) -> None:
        if self.clock.playing:
            for note in notes:
                self._at_sound(note.time, self._publish_note, note)

    def _at_sound(self, audio_time: float, fn: Any, item: Any) -> None:
        """Call ``fn(item, wall)`` on the loop ``beat_lead_ms`` before ``audio_time`` is heard
        (at once when that has passed, or in a render, which has no wall clock)."""
        loop, clock = self._loop, self.clock
        if loop is None:
            return

        def publish() -> None:
            fn(item, clock.wall_time(audio_time))

        clock.call_at(audio_time - self._lead_s, publish, loop=loop)

    def _publish_beat(self, beat: Beat, wall: float | None) -> None:
        payload: dict[str, Any] = {
            "bar": beat.bar,
            "beat": beat.beat_in_bar,
            "index": beat.index,
            "downbeat": beat.beat_in_bar == 0,
            "bpm": round(beat.bpm, 3),
            "audio_time": round(beat.audio_time, 6),
        }
        if wall is not None:
            now = time.perf_counter()
            if now > wall + LATE_DROP_S:
                self.stats.beats_late += 1
                return
            payload["time"] = round(time.time() + (wall - now), 6)
            payload["lead_ms"] = round((wall - now) * 1000.0, 2)
        if self._publish_now(self.base + "event/beat", json.dumps(payload)):
            self.stats.beats_published += 1
            if "lead_ms" in payload:
                self.stats.beat_leads_ms.append(payload["lead_ms"])

    def _publish_bar(self, started: BarStarted, wall: float | None) -> None:
        plan = started.plan
        payload: dict[str, Any] = {
            "bar": started.bar,
            "audio_time": round(started.audio_time, 6),
            "bpm": plan.bpm,
            "beats": plan.beats_per_bar,
            "layers": plan.layers,
            "key": KEY_NAMES[plan.tonic],
            "mode": plan.mode,
            "scene": plan.scene,
            "valence": round(plan.valence, 3),
            "arousal": round(plan.arousal, 3),
        }
        if wall is not None:
            payload["time"] = round(time.time() + (wall - time.perf_counter()), 6)
        self._publish_now(self.base + "event/bar", json.dumps(payload))
        if self.config.wled_topic:
            now = time.monotonic()
            if now - self._last_wled >= self.config.wled_interval_s:
                self._last_wled = now
                state = wled_state(
                    valence=plan.valence,
                    arousal=plan.arousal,
                    bpm=plan.bpm,
                    layers=plan.layers,
                    segments=self.config.wled_segments,
                )
                self._publish_now(self.config.wled_topic.rstrip("/") + "/api", json.dumps(state))

    def _publish_note(self, note: ScheduledNote, wall: float | None) -> None:
        payload: dict[str, Any] = {
            "layer": note.note.layer.value,
            "pitch": note.note.pitch,
            "velocity": note.note.velocity,
            "bar": note.bar,
            "audio_time": round(note.time, 6),
            "duration": round(note.end_time - note.time, 6),
        }
        if wall is not None:
            payload["time"] = round(time.time() + (wall - time.perf_counter()), 6)
        self._publish_now(self.base + "event/note", json.dumps(payload))

    # -- helpers ---------------------------------------------------------------------------

    def _publish_now(
        self,
        topic: str,
        payload: str,
        *,
        properties: Properties | None = None,
        qos: int = 0,
        retain: bool = False,
    ) -> bool:
        """At once, without waiting for an acknowledgement (QoS 0 unless asked): dropped when
        not connected."""
        client = self._client
        if client is None or self.closed or not self.connected.is_set():
            return False
        # paho's own publish, synchronously: the packet is queued now and written as soon as
        # the loop sees the socket writable. aiomqtt's coroutine would need a task and a loop
        # turn first, which costs milliseconds of beat lead when the loop is busy (aiomqtt is
        # pinned; a QoS 0 publish has nothing to wait for anyway).
        info = client._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        return info.rc == 0

    def _spawn(self, coro: Any, *, name: str) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")
