"""MQTT against a real mosquitto the tests start on a free port, heard through Debian's
``mosquitto_sub`` / ``mosquitto_pub`` (not our code): commands that change the music, a broker
restart mid-run, and a flood of malformed payloads. Beat timing is measured over a minute beside
OSC's and OS2L's (tests/test_osc.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from daemon.app import LiveRequest, build_live
from daemon.config import Config, load_config
from daemon.control.commands import CommandError, CommandResult, split_request_id
from daemon.control.mqtt import (
    MqttBridge,
    discovery_configs,
    parse_broker,
    wled_state,
)
from daemon.control.mqtt_topics import response_topic_usable, result_payload
from daemon.engine import BackendChoice
from daemon.errors import ConfigError
from daemon.outputs.recorder import RecordingOutput
from daemon.session import Session, SessionReport
from daemon.sources import open_source
from tests.mosquitto import MOSQUITTO, Broker
from tests.nextbar import allowed_bars, watch_override

os.environ.setdefault("PYO_GUI_WX", "0")


def needs_mosquitto(test: Callable[..., Any]) -> Callable[..., Any]:
    """Marked ``mosquitto`` (and ``slow``: each runs a live session). tools/setup.sh installs
    mosquitto and mosquitto-clients; without them the ``broker`` fixture fails."""
    return pytest.mark.slow(pytest.mark.mosquitto(test))


BASE = "moodscore/test/"


# -- the broker and Debian's clients ------------------------------------------------------


class Subscriber:
    """``mosquitto_sub`` writing ``<receive time> <topic> <payload>`` lines to a file."""

    def __init__(
        self, port: int, topics: list[str], path: Path, *, fmt: str = "%U %t %p", v5: bool = False
    ) -> None:
        self.path = path
        args = ["mosquitto_sub", "-p", str(port), "-F", fmt, "-q", "1"]
        if v5:
            args += ["-V", "5"]
        for topic in topics:
            args += ["-t", topic]
        self._handle = path.open("wb")
        self._process = subprocess.Popen(args, stdout=self._handle, stderr=subprocess.STDOUT)

    def lines(self) -> list[tuple[float, str, str]]:
        found = []
        for line in self.path.read_text(errors="replace").splitlines():
            stamp, _, rest = line.partition(" ")
            topic, _, payload = rest.partition(" ")
            found.append((float(stamp), topic, payload))
        return found

    def wait_for(self, topic: str, count: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(t == topic for _, t, _ in self.lines()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic} x{count} not received: {self.lines()[-5:]}")
            time.sleep(0.05)

    def wait_for_count(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.lines())} of {count} messages")
            time.sleep(0.1)

    def stop(self) -> list[tuple[float, str, str]]:
        time.sleep(0.2)
        self._process.terminate()
        self._process.wait(10)
        self._handle.close()
        return self.lines()


def publish(port: int, topic: str, message: str, *args: str) -> None:
    subprocess.run(
        ["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-m", message, *args],
        check=True,
        timeout=10,
    )


def retained(port: int, topic: str) -> str:
    """The retained message on ``topic`` (fails if there is none)."""
    done = subprocess.run(
        ["mosquitto_sub", "-p", str(port), "-t", topic, "-C", "1", "-W", "5", "--retained-only"],
        capture_output=True,
        check=True,
        timeout=10,
        text=True,
    )
    return done.stdout.strip()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    missing = [
        tool for tool in (MOSQUITTO, "mosquitto_sub", "mosquitto_pub") if shutil.which(tool) is None
    ]
    assert not missing, f"{missing} not found: tools/setup.sh installs mosquitto(-clients)"
    server = Broker(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def subscribers(tmp_path: Path) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(server: Broker, topics: list[str], **options: Any) -> Subscriber:
        sub = Subscriber(server.port, topics, tmp_path / f"sub{len(made)}.txt", **options)
        made.append(sub)
        # Subscribed once a probe comes back: nothing the daemon sends is missed.
        probe = f"probe/{len(made)}"
        sub_probe = Subscriber(server.port, [probe], tmp_path / f"probe{len(made)}.txt")
        deadline = time.monotonic() + 10
        while not sub_probe.lines() and time.monotonic() < deadline:
            publish(server.port, probe, "x")
            time.sleep(0.1)
        sub_probe.stop()
        time.sleep(0.2)
        return sub

    yield make
    for sub in made:
        if sub._process.poll() is None:
            sub.stop()


def live_config(port: int, **mqtt: Any) -> Config:
    config = load_config(use_user_file=False).replace("engine", backend="manual")
    return config.replace(
        "mqtt", enabled=True, host="127.0.0.1", port=port, instance="test", **mqtt
    )


@dataclass
class LiveRun:
    report: SessionReport
    session: Session
    bridge: MqttBridge


async def run_live(
    config: Config,
    *,
    seconds: float,
    record: Path | None = None,
    during: Callable[[Session, MqttBridge], Coroutine[Any, Any, None]] | None = None,
) -> LiveRun:
    """A live ``manual`` session on the demo with the MQTT bridge, built as ``moodscore run``
    builds it (no web page); ``record`` receives the recording."""
    source = open_source("demo", config.source, paced=True)
    request = LiveRequest(duration=seconds, record_dir=record.parent if record else None)
    session = build_live(
        config.replace("web", enabled=False), request, source, BackendChoice("manual", "test")
    )
    bridge = next(o for o in session.outputs if isinstance(o, MqttBridge))
    task = asyncio.create_task(during(session, bridge)) if during else None
    report = await session.run()
    if task is not None:
        await task
    if record is not None:
        recording = next(o for o in session.outputs if isinstance(o, RecordingOutput))
        recording.path.rename(record)
    return LiveRun(report, session, bridge)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


async def bar_started(session: Session, bar: int) -> None:
    event = asyncio.Event()

    def seen(state: dict[str, Any]) -> None:
        if state["bar"] is not None and state["bar"] >= bar:
            event.set()

    session.control.add_state_listener(seen)
    if (session.control.state()["bar"] or -1) < bar:
        await event.wait()
    session.control.remove_state_listener(seen)


# -- pure pieces --------------------------------------------------------------------------


def test_broker_flag_parsing() -> None:
    assert parse_broker("localhost") == ("localhost", None)
    assert parse_broker("10.0.0.2:1884") == ("10.0.0.2", 1884)
    assert parse_broker("[::1]:8883") == ("::1", 8883)
    for bad in ("", ":1883", "host:0", "host:http"):
        with pytest.raises(ConfigError):
            parse_broker(bad)


def test_home_assistant_discovery_covers_the_entities_the_issue_lists() -> None:
    configs = discovery_configs(
        base=BASE, instance="test", discovery_prefix="homeassistant", scenes=["calm", "combat"]
    )
    kinds = sorted(topic.split("/")[1] + ":" + topic.split("/")[3] for topic, _ in configs)
    assert kinds == [
        "number:layers", "number:tempo", "select:scene_select", "sensor:arousal", "sensor:bpm",
        "sensor:health", "sensor:late_blocks", "sensor:scene", "sensor:valence", "switch:play",
    ]  # fmt: skip
    for topic, payload in configs:
        assert payload["availability_topic"] == BASE + "status"
        assert payload["unique_id"].startswith("moodscore_test_")
        # Home Assistant 2025.10 deprecated object_id for default_entity_id (domain included),
        # and asks integrations to say where discovery came from.
        assert "object_id" not in payload
        component = topic.split("/")[1]
        assert payload["default_entity_id"] == f"{component}.{payload['unique_id']}"
        assert payload["origin"]["name"] == "moodscore" and payload["origin"]["sw_version"]
    # The audio's health: ok / glitching, with every figure as an attribute, and late blocks.
    health = next(p for t, p in configs if t.endswith("/health/config"))
    assert health["state_topic"] == health["json_attributes_topic"] == BASE + "health"
    assert health["value_template"] == "{{ value_json.status }}"
    late = next(p for t, p in configs if t.endswith("/late_blocks/config"))
    assert late["value_template"] == "{{ value_json.late_blocks_per_min }}"
    select = next(p for t, p in configs if "/select/" in t)
    assert select["options"] == ["auto", "calm", "combat"]
    assert select["command_topic"] == BASE + "cmd/scene"


def test_wled_colour_follows_the_mood_and_speed_the_tempo() -> None:
    calm = wled_state(valence=-0.8, arousal=-0.9, bpm=62, layers=1)
    wild = wled_state(valence=0.9, arousal=0.9, bpm=170, layers=5)
    r_calm, _, b_calm = calm["seg"][0]["col"][0]
    r_wild, _, b_wild = wild["seg"][0]["col"][0]
    assert b_calm > r_calm and r_wild > b_wild  # sad = blue-violet, happy = warm
    assert calm["seg"][0]["fx"] == 2 and wild["seg"][0]["fx"] == 22  # Breathe vs Sparkle+
    assert calm["seg"][0]["sx"] < 20 < 220 < wild["seg"][0]["sx"]
    assert calm["bri"] < wild["bri"]
    # Every configured segment gets the look, each named by its id.
    both = wled_state(valence=0.9, arousal=0.9, bpm=170, layers=5, segments=(0, 3))
    assert [seg["id"] for seg in both["seg"]] == [0, 3]
    assert both["seg"][1] == {**wild["seg"][0], "id": 3}


async def test_a_missing_broker_never_stops_the_music() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here
    run = await run_live(live_config(port), seconds=2.0)
    assert run.report.audio_seconds == pytest.approx(2.0, abs=0.01)
    assert run.bridge.stats.connects == 0


def test_command_results_are_json_with_the_id_echoed() -> None:
    ok, refused = CommandResult(True, "ok"), CommandResult(False, "tempo: 'fast' is not a number")
    assert json.loads(result_payload(ok, "a1")) == {"ok": True, "error": None, "id": "a1"}
    assert json.loads(result_payload(refused, 7)) == {
        "ok": False, "error": "tempo: 'fast' is not a number", "id": 7,
    }  # fmt: skip
    # mqtt.plain_results: the old answers, for scripts that read them.
    assert result_payload(ok, "a1", plain=True) == "ok"
    assert result_payload(refused, None, plain=True) == "tempo: 'fast' is not a number"


def test_the_id_is_taken_out_of_a_json_command_and_the_rest_is_left_to_the_parser() -> None:
    assert split_request_id(b'{"bpm": 150, "id": "a1"}') == ("a1", {"bpm": 150})
    assert split_request_id('{"id": 3, "scene": "combat"}') == (3, {"scene": "combat"})
    for untouched in (b"150", b'{"bpm": 150}', b'{"bpm": ', b"\xff{", b"[1]", b"{" * 5000):
        assert split_request_id(untouched) == (None, untouched)
    for bad in ('{"id": [1]}', '{"id": true}', '{"id": 1e999}', '{"id": "%s"}' % ("x" * 129)):
        with pytest.raises(CommandError, match="id: send a string"):
            split_request_id(bad)


def test_answers_never_go_to_our_own_command_topics() -> None:
    """An MQTT v5 response topic under the daemon's own ``cmd/`` would read the answer as a
    command and answer it, for ever; wildcards cannot be published to."""
    assert response_topic_usable("reply/node-red", BASE)
    for bad in (BASE + "cmd/tempo", BASE + "state", "reply/+", "reply/#", "", "x" * 600):
        assert not response_topic_usable(bad, BASE)


# -- against mosquitto --------------------------------------------------------------------


@needs_mosquitto
async def test_mosquitto_pub_commands_change_the_music_at_the_next_bar(
    broker: Broker, subscribers: Callable[..., Subscriber], tmp_path: Path
) -> None:
    import librosa

    play_switch = "homeassistant/switch/moodscore_test/play/config"
    sub = subscribers(
        broker, [BASE + "cmd/+/result", BASE + "event/scene", "wled/test/api", play_switch]
    )
    # Node-RED's request/response over MQTT v5: the answer on the client's own topic, with
    # its correlation data.
    replies = subscribers(broker, ["reply/node-red"], fmt="%U %t %D|%p", v5=True)
    v5_request = ["-V", "5", "-D", "publish", "response-topic", "reply/node-red"]
    v5_request += ["-D", "publish", "correlation-data", "corr-7"]
    sent: dict[str, tuple[float, float]] = {}

    async def steer(session: Session, bridge: MqttBridge) -> None:
        await bridge.connected.wait()
        await bar_started(session, 0)
        scene_applied = watch_override(session, "scene", "combat")
        tempo_applied = watch_override(session, "bpm", 150.0)
        scene_sent = session.engine.audio_time
        await in_thread(publish, broker.port, BASE + "cmd/scene", "combat")
        tempo_sent = session.engine.audio_time
        await in_thread(publish, broker.port, BASE + "cmd/tempo", "150")
        sent["scene"] = (scene_sent, await scene_applied)
        sent["tempo"] = (tempo_sent, await tempo_applied)
        await in_thread(
            publish, broker.port, BASE + "cmd/mood", '{"valence": -0.6, "arousal": 0.7, "id": 42}'
        )
        await in_thread(publish, broker.port, BASE + "cmd/layers", '{"layers": 9, "id": "x-1"}')
        await in_thread(
            publish, broker.port, BASE + "cmd/tempo", '{"bpm": 150, "id": "n-1"}', *v5_request
        )
        # Home Assistant restarts: discovery comes again.
        await in_thread(publish, broker.port, "homeassistant/status", "online")

    wav = tmp_path / "steered.wav"
    config = live_config(
        broker.port, wled_topic="wled/test", wled_interval_s=0.0, wled_segments=[1, 2]
    )
    run = await run_live(config, seconds=14.0, record=wav, during=steer)
    lines = sub.stop()
    results = [(t.split("/")[-2], json.loads(p)) for _, t, p in lines if t.endswith("/result")]
    assert results[0] == ("scene", {"ok": True, "error": None, "id": None})
    assert results[1] == ("tempo", {"ok": True, "error": None, "id": None})
    assert results[2] == ("mood", {"ok": True, "error": None, "id": 42})
    assert results[3][0] == "layers" and results[3][1]["id"] == "x-1"
    assert results[3][1]["ok"] is False and "layers" in results[3][1]["error"]
    assert results[4] == ("tempo", {"ok": True, "error": None, "id": "n-1"})
    assert len(results) == 5
    ((_, topic, answer),) = replies.stop()
    correlation, _, payload = answer.partition("|")
    assert topic == "reply/node-red" and correlation == "corr-7"
    assert json.loads(payload) == {"ok": True, "error": None, "id": "n-1"}
    assert any('"scene": "combat"' in p for _, t, p in lines if t.endswith("event/scene"))
    assert sum(t == play_switch for _, t, _ in lines) == 2  # on connecting, and on HA's birth
    wled = [json.loads(p) for _, t, p in lines if t == "wled/test/api"]
    # One per bar (the last bar may start as the run ends, with the bridge closing).
    assert len(run.report.bars) - 1 <= len(wled) <= len(run.report.bars)
    assert wled[0]["seg"][0]["sx"] < wled[-1]["seg"][0]["sx"]  # 66 bpm, then 150
    assert all([seg["id"] for seg in state["seg"]] == [1, 2] for state in wled)
    # The next bar line when the command came at least 0.3 s before it, else the one after.
    downbeats = [(b.bar, b.audio_time) for b in run.report.bars]
    changed = next(b for b in run.report.bars if b.plan.bpm == 150.0)
    assert changed.bar in allowed_bars(downbeats, *sent["tempo"]), (sent, downbeats)
    combat = next(b for b in run.report.bars if b.plan.scene == "combat")
    assert combat.bar in allowed_bars(downbeats, *sent["scene"]), (sent, downbeats)
    assert changed.plan.scene == "combat" and changed.plan.mode == "minor"
    assert all(b.plan.bpm == 150.0 for b in run.report.bars if b.bar >= changed.bar)
    # The retained state says so (read after the run, by a fresh client).
    state = json.loads(retained(broker.port, BASE + "state"))
    assert (state["bpm"], state["scene"]) == (150.0, "combat")
    assert state["overrides"]["bpm"] == 150.0 and state["overrides"]["scene"] == "combat"
    assert state["overrides"]["mood"]["arousal"] == 0.7
    assert retained(broker.port, BASE + "status") == "offline"
    # And a listener hears it: the recording's tempo after the ramp bar is 150 bpm.
    audio, sr = soundfile.read(wav, dtype="float32")
    after = audio[round((changed.audio_time + 2 * 60 * 4 / 150) * sr) :].mean(axis=1)
    onset = librosa.onset.onset_strength(y=after, sr=sr)
    # To 4 %; the prior only picks the octave, the estimate comes from the audio.
    heard = float(librosa.feature.tempo(onset_envelope=onset, sr=sr, start_bpm=150)[0])
    assert heard == pytest.approx(150.0, rel=0.04)


@needs_mosquitto
async def test_broker_restart_mid_run_reconnects_republishes_and_the_recording_has_no_gap(
    broker: Broker, subscribers: Callable[..., Subscriber], tmp_path: Path
) -> None:
    restarted = asyncio.Event()

    async def restart(session: Session, bridge: MqttBridge) -> None:
        await bridge.connected.wait()
        await bar_started(session, 1)
        await in_thread(broker.kill)
        await asyncio.sleep(1.5)  # the music plays on without a broker
        assert not bridge.connected.is_set()
        await in_thread(broker.start)
        await asyncio.wait_for(bridge.connected.wait(), timeout=10)
        restarted.set()

    wav = tmp_path / "restart.wav"
    config = live_config(broker.port, reconnect_max_s=1.0)
    run = await run_live(config, seconds=12.0, record=wav, during=restart)
    assert restarted.is_set()
    assert run.bridge.stats.connects == 2
    # The restarted broker forgot everything; what it holds now the daemon published again.
    assert retained(broker.port, BASE + "status") == "offline"  # after the run: our goodbye
    state = json.loads(retained(broker.port, BASE + "state"))
    assert state["source"] == "built-in demo scene" and state["bar"] is not None
    discovery = retained(broker.port, "homeassistant/switch/moodscore_test/play/config")
    assert json.loads(discovery)["command_topic"] == BASE + "cmd/transport"
    # Gap-free audio: every sample of the 12 s is there, no bar came late from the composer,
    # and the music never dropped to digital silence.
    audio, sr = soundfile.read(wav, dtype="float32")
    assert len(audio) == round(12.0 * sr)
    assert run.report.underruns == 0
    level = np.abs(audio).max(axis=1)
    blocks = level[: len(level) // 2400 * 2400].reshape(-1, 2400).max(axis=1)  # 50 ms each
    assert blocks[2:-2].min() > 1e-4


@needs_mosquitto
async def test_a_thousand_malformed_payloads_are_all_answered_and_the_music_plays_on(
    broker: Broker, subscribers: Callable[..., Subscriber], tmp_path: Path
) -> None:
    sub = subscribers(broker, [BASE + "cmd/+/result"])
    huge = "x" * 60_000
    floods: dict[str, list[str]] = {
        "tempo": ['{"bpm": ', "fast", '{"bpm": "120"}', "[1, 2]", "nan", "1e309", "999"] * 20,
        "mood": ['{"valence": 5, "arousal": 0}', '{"valence": []}', "{}", "1,2,3,4"] * 50,
        "scene": [huge, "../../etc/passwd", '{"scene": 7}', "nope"] * 50,
        "layers": ["0", "2.5", '{"layers": true}', "{" * 3000] * 50,
        "mute": ["cowbell", '{"layer": "drums", "muted": "yes"}'] * 30,
        "transport": ["rewind", '{"action": null}'] * 25,
        "key": ["H minor", "C##"] * 25,
    }
    unknown = {f"bogus{i}": ["{}"] * 20 for i in range(5)}
    floods.update(unknown)
    total = sum(len(lines) for lines in floods.values())  # 1000
    rss: list[int] = []

    def flood() -> None:
        for name, lines in floods.items():
            subprocess.run(
                ["mosquitto_pub", "-p", str(broker.port), "-t", BASE + f"cmd/{name}", "-l"],
                input="\n".join(lines).encode() + b"\n",
                check=True,
                timeout=30,
            )

    async def attack(session: Session, bridge: MqttBridge) -> None:
        await bridge.connected.wait()
        await bar_started(session, 0)
        for round_ in range(FLOODS):
            await in_thread(flood)
            await in_thread(sub.wait_for_count, total * (round_ + 1), 30.0)
            rss.append(_rss_bytes())

    run = await run_live(live_config(broker.port), seconds=14.0, during=attack)
    answers = [(topic, payload) for _, topic, payload in sub.stop()]
    assert len(answers) == FLOODS * total
    results = [json.loads(payload) for _, payload in answers]
    assert all(r["ok"] is False and r["error"] and r["id"] is None for r in results)
    by_topic = {topic.split("/")[-2] for topic, _ in answers}
    assert by_topic == set(floods)
    assert all(len(payload) < 400 for _, payload in answers)  # a huge payload is not echoed
    # The music played on: all 14 s, nothing late, nothing queued, and memory did not grow with
    # the floods. A leak grows the process by the same amount every flood (1 KiB a message is
    # 1 MiB a flood); the allocator's arenas jump by several MiB now and then whatever the
    # cause, so at least one flood after the first must leave the size (almost) unchanged.
    assert run.report.audio_seconds == pytest.approx(14.0, abs=0.01)
    assert run.report.underruns == 0
    assert run.session.control.pending == 0 and run.session.control.rejected == FLOODS * total
    assert min(b - a for a, b in itertools.pairwise(rss[1:])) < 2**20, rss


FLOODS = 4  # of 1,000 malformed payloads each


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--mqtt", "broker:http"], "port must be a number"),
        (["--mqtt", "localhost", "--config", "BAD_INSTANCE"], "mqtt.instance"),
        (["--mqtt", "localhost", "--config", "BAD_CA"], "mqtt.ca_file"),
    ],
)
def test_bad_mqtt_settings_are_one_line_errors_before_anything_starts(
    flags: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.cli import main

    files = {
        "BAD_INSTANCE": '[mqtt]\ninstance = "a/b"\n',
        "BAD_CA": f'[mqtt]\ntls = true\nca_file = "{tmp_path / "none.pem"}"\n',
    }
    argv = ["run", "--source", str(tmp_path / "never-opened.mp4"), *flags]
    for name, text in files.items():
        if name in argv:
            path = tmp_path / f"{name}.toml"
            path.write_text(text)
            argv[argv.index(name)] = str(path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err, err
