"""Ableton Link and MQTT groups, between real peers on a network the tests make.

Link finds its peers by multicast, so every Link peer here (the daemons' and the independent
aalink peer of ``tests/sync_peers.py``) runs inside one of two network namespaces joined by a
veth pair, with 224.0.0.0/4 routed to it: never on this machine's own interfaces. Each daemon is
``moodscore run`` in a process of its own, as on two machines; their beat times come from their
OSC bundles (time-tagged with the moment each beat sounds), the session's from the aalink peer.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.cli import main
from daemon.clock import BarGrid, follow_tempo
from daemon.engine.sequencer import Sequencer
from daemon.messages import BarScore, Chord, Plan
from daemon.outputs.link import MAX_SHIFT_BEATS
from tests.mosquitto import MOSQUITTO

ROOT = Path(__file__).resolve().parents[1]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, (
        f"`ip {' '.join(args)}` failed ({done.stderr.strip()}): the Link tests make network "
        "namespaces, which needs iproute2 (tools/setup.sh installs it) and root"
    )


@dataclass
class Lan:
    """Two network namespaces ("machines") on one veth cable; processes started in them."""

    a: str
    b: str
    ip_a: str
    ip_b: str
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def start(self, namespace: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
        command = [
            "ip", "netns", "exec", namespace, "env", f"PYTHONPATH={ROOT}", "PYO_GUI_WX=0", *argv,
        ]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT, text=True, **kwargs)
        self.processes.append(process)
        return process


@pytest.fixture
def lan() -> Iterator[Lan]:
    assert shutil.which("ip"), "`ip` not found: tools/setup.sh installs iproute2"
    pid = os.getpid()
    a, b = f"msla{pid}", f"mslb{pid}"
    subnet = f"10.{150 + pid % 50}.{pid // 50 % 256}"
    made: list[str] = []
    lan = Lan(a, b, f"{subnet}.1", f"{subnet}.2")
    try:
        for namespace in (a, b):
            _ip("netns", "add", namespace)
            made.append(namespace)
        _ip("link", "add", f"v{a}", "type", "veth", "peer", "name", f"v{b}")
        for namespace, address in ((a, lan.ip_a), (b, lan.ip_b)):
            _ip("link", "set", f"v{namespace}", "netns", namespace)
            run = ["netns", "exec", namespace, "ip"]
            _ip(*run, "addr", "add", f"{address}/30", "dev", f"v{namespace}")
            _ip(*run, "link", "set", f"v{namespace}", "up")
            _ip(*run, "link", "set", "lo", "up")
            # Link's multicast goes out on the cable, and only there.
            _ip(*run, "route", "add", "224.0.0.0/4", "dev", f"v{namespace}")
        yield lan
    finally:
        for process in lan.processes:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        for namespace in made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


def daemon(*flags: str, duration: float) -> list[str]:
    return [
        sys.executable, "-m", "daemon.cli", "run", "--source", "demo", "--backend", "manual",
        "--no-web", "-q", "--duration", str(duration), *flags,
    ]  # fmt: skip


def peer(out: Path, bpm: float | None, osc: list[str], broker: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "tests.sync_peers", "link", str(out)]
    argv += ["-" if bpm is None else str(bpm), ",".join(osc) or "-"]
    return argv + ([broker] if broker else [])


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):  # the line being written
            rows.append(json.loads(line))
    return rows


def wait_rows(
    path: Path, ready: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = read_rows(path)
        if ready(rows):
            return rows
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def downbeats(rows: list[dict[str, Any]], at: str) -> dict[int, tuple[float, float]]:
    """bar -> (the moment its downbeat sounds, its bpm), from a daemon's OSC at ``at``."""
    return {bar: (tag, args[1]) for bar, (tag, args) in bar_messages(rows, at).items()}


def bar_messages(rows: list[dict[str, Any]], at: str) -> dict[int, tuple[float, list[Any]]]:
    """bar -> (the moment it sounds, the arguments of its /moodscore/bar)."""
    bars = {}
    for row in rows:
        if row["kind"] != "osc" or row["at"] != at:
            continue
        for address, *args in row["messages"]:
            if address == "/moodscore/bar":
                bars[int(args[0])] = (float(row["tag"]), args)
    return bars


def transport(rows: list[dict[str, Any]], at: str, action: str) -> list[float]:
    """The moments a daemon's OSC at ``at`` says its transport does ``action``."""
    return [
        row["tag"]
        for row in rows
        if row["kind"] == "osc" and row["at"] == at
        for address, *args in row["messages"]
        if address == "/moodscore/transport" and args == [action]
    ]


class Session:
    """The aalink peer's view of the session: the beat and tempo at any moment."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = [r for r in rows if r["kind"] == "link" and r["dt"] < 0.0003 and r["peers"] > 0]
        self.times = np.array([r["t"] for r in self.rows])

    def at(self, moment: float) -> tuple[float, float]:
        """(beat, tempo) at ``moment`` from the sample nearest to it (at most 0.1 s away: the
        session's timeline is straight between a leader's announcements, 0.2 s before bar lines)."""
        i = int(np.argmin(np.abs(self.times - moment)))
        row = self.rows[i]
        assert abs(row["t"] - moment) < 0.1, "the peer has no view of the session then"
        return row["beat"] + (moment - row["t"]) * row["tempo"] / 60.0, row["tempo"]

    def off_ms(self, moment: float, grid: float) -> float:
        """How far ``moment`` is from the session's nearest ``grid`` line (beats), in ms."""
        beat, tempo = self.at(moment)
        return (beat - grid * round(beat / grid)) * 60_000.0 / tempo


def test_without_aalink_link_is_one_line_and_the_music_plays_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "aalink", None)  # `import aalink` fails
    code = main(
        ["run", "--source", "demo", "--backend", "manual", "--no-web", "--duration", "1",
         "--link", "follow"]
    )  # fmt: skip
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert code == 0 and "health:" in err, err  # it played to the end
    assert len(errors) == 1 and "Link: could not join a session" in errors[0], err
    assert errors[0].endswith("the music plays on without Link")


def test_bars_follow_an_outside_grid_onto_its_bar_lines_without_ramps() -> None:
    """The engine's seam for Link: each bar asks an outside tempo as it starts. An outside grid
    at 100 bpm with its bar lines 1.3 beats away: moodscore's bars (planned at 120, ramping)
    catch up by at most half a beat a bar, then sit on its bar lines at its tempo."""
    rate = 48000
    grids: list[BarGrid] = []

    def outside(bar: int, audio_time: float, plan: Plan) -> float:
        beat = audio_time * 100 / 60 + 1.3  # the outside grid's beat at the downbeat
        return follow_tempo(
            beat_at_start=beat, beats=4, tempo=100.0, quantum=4, max_shift=MAX_SHIFT_BEATS
        )

    class Sink:
        def note_on(self, *args: Any, **kwargs: Any) -> None:
            pass

        def bar(self, grid: BarGrid, *, block_start: int, first: bool) -> None:
            grids.append(grid)

        def change(self, *args: Any, **kwargs: Any) -> None:
            pass

    def score(bar: int) -> BarScore:
        bpm = 120.0 if bar % 2 else 90.0  # the conductor's own ideas, which yield
        plan = Plan(bar=bar, bpm=bpm, layers=1, tonic=0, mode="major", density=0.0,
                    valence=0.0, arousal=0.0, ramp=1.0)  # fmt: skip
        return BarScore(bar=bar, plan=plan, chord=Chord(0, "maj", (60, 64, 67)), notes=())

    sequencer = Sequencer(
        sample_rate=rate, scores=score, sink=Sink(), on_bar=lambda started: None,
        on_beat=lambda beat: None, on_end=lambda sample: None, tempo=outside,
    )  # fmt: skip
    for start in range(0, 30 * rate, 512):
        sequencer.advance(start, 512)
    assert all(grid.ramp_steps == 0 for grid in grids)
    off = [(g.end / rate * 100 / 60 + 1.3) % 4 for g in grids]  # outside beat at each bar end
    off = [min(o, 4 - o) for o in off]
    assert off[0] == pytest.approx(0.8, abs=1e-3) and off[1] == pytest.approx(0.3, abs=1e-3)
    assert max(off[2:]) < 1e-4  # on its bar lines from the third bar...
    assert all(g.bpm == pytest.approx(100, abs=0.01) for g in grids[3:])  # ...at its tempo

    def broken(bar: int, audio_time: float, plan: Plan) -> float:
        raise RuntimeError("no session")

    grids.clear()
    sequencer = Sequencer(
        sample_rate=rate, scores=score, sink=Sink(), on_bar=lambda started: None,
        on_beat=lambda beat: None, on_end=lambda sample: None, tempo=broken,
    )  # fmt: skip
    for start in range(0, 10 * rate, 512):
        sequencer.advance(start, 512)
    assert [g.bpm for g in grids[:3]] == [90.0, 120.0, 90.0]  # the plans' own, no ramps
    assert all(grid.ramp_steps == 0 for grid in grids)


@pytest.mark.parametrize(
    ("flags", "config", "expected"),
    [
        (["--group", "hall"], "", "an MQTT group needs MQTT"),
        (["--mqtt", "localhost", "--group", "two rooms"], "", "mqtt.group 'two rooms'"),
        (["--link", "follow"], "[library]\nplay = true\n", "link.follow cannot bend"),
    ],
)
def test_bad_group_and_link_settings_are_one_line_errors(
    flags: list[str], config: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(config)
    code = main(
        ["run", "--source", "demo", "--backend", "manual", "--no-web", "--duration", "1", "-q",
         "--config", str(path), *flags]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err, err


@pytest.mark.slow
def test_following_a_session_the_beats_heard_land_on_its_grid_and_its_stop_stops_the_music(
    lan: Lan, tmp_path: Path
) -> None:
    import librosa
    import soundfile

    out, osc = tmp_path / "peer.jsonl", f"{lan.ip_b}:9101"
    # A DJ app on machine B leads at 100 bpm, playing; moodscore on machine A follows.
    dj = lan.start(lan.b, peer(out, 100.0, [osc]), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert dj.stdout is not None and json.loads(dj.stdout.readline()) == "ready"
    (tmp_path / "combat.toml").write_text('[conductor]\nscene = "combat"\n')  # drums on beats
    flags = ["--link", "follow", "--osc", osc, "--record", str(tmp_path / "rec"), "--beats",
             str(tmp_path / "beats.json"), "--config", str(tmp_path / "combat.toml")]  # fmt: skip
    moodscore = lan.start(lan.a, daemon(*flags, duration=21))
    assert dj.stdin is not None
    # The DJ presses play once moodscore is in the session, and stop six bars in.
    wait_rows(out, lambda rows: 1 in downbeats(rows, osc), 60, "moodscore's first bar")
    dj.stdin.write("play\n")
    dj.stdin.flush()
    wait_rows(out, lambda rows: 6 in downbeats(rows, osc), 60, "moodscore's sixth bar")
    dj.stdin.write("stop\n")
    dj.stdin.flush()
    stopped_at = time.time()
    assert moodscore.wait(60) == 0
    rows = read_rows(out)
    session, bars = Session(rows), downbeats(rows, osc)

    # Caught up within three bars of joining, by the fourth bar or, when the peers find each
    # other a bar later (a loaded machine), the fifth: from then on the session's tempo, and
    # every bar line on its bar line.
    at_tempo = [bar for bar in bars if all(abs(bars[b][1] - 100.0) < 0.1 for b in bars if b >= bar)]
    caught = min(at_tempo, default=None)
    assert caught is not None and caught <= 4, bars
    phase = [session.off_ms(tag, 4) for bar, (tag, _) in bars.items() if bar >= caught]
    assert len(phase) >= 3 and max(map(abs, phase)) < 2.0, phase

    # What is heard: librosa's onsets in the recording, put on the wall clock by the daemon's
    # own beat times (beat map: audio time; OSC: the moment it sounds), sit on the session's
    # beats within 5 ms (librosa's onsets come ~4 ms after the attack).
    beats = json.loads((tmp_path / "beats.json").read_text())["beats"]
    sounds = {
        args[0]: row["tag"]
        for row in rows
        if row["kind"] == "osc"
        for address, *args in row["messages"]
        if address == "/moodscore/beat"
    }
    offsets = [sounds[b["index"]] - b["time"] for b in beats if b["index"] in sounds]
    assert len(offsets) > 10 and np.ptp(offsets) < 1e-4  # one audio-to-wall mapping
    audio, rate = soundfile.read(next((tmp_path / "rec").glob("*.wav")))
    onsets = librosa.onset.onset_detect(y=audio.mean(axis=1), sr=rate, hop_length=32, units="time")
    start, stop = bars[caught][0] - offsets[0], stopped_at - offsets[0]
    on_beats = [
        off
        for onset in onsets
        if start - 0.01 <= onset < stop
        and abs(off := session.off_ms(onset + np.median(offsets), 1)) < 60
    ]
    assert len(on_beats) >= 8 and max(map(abs, on_beats)) < 5.0, on_beats  # two bars or more
    print(
        f"following: bar lines within {max(map(abs, phase)):.3f} ms of the session's, onsets "
        f"heard within {max(map(abs, on_beats)):.2f} ms of its beats ({len(on_beats)} onsets)"
    )

    # The session's stop stops the music at a bar line within a bar of it.
    stops = transport(rows, osc, "stop")
    assert len(stops) == 1 and abs(session.off_ms(stops[0], 4)) < 2.0
    assert 0 < stops[0] - stopped_at < 2 * 2.4 + 0.5
    assert max(bars) < 9  # silent bars send no /moodscore/bar


@pytest.mark.slow
@pytest.mark.mosquitto
def test_two_daemons_in_two_namespaces_keep_one_beat_for_60_s_and_hear_group_commands(
    lan: Lan, tmp_path: Path
) -> None:
    """Room A leads, room B follows; A changes tempo (its mood, then a command); a group
    command changes both at the same bar line; A's stop stops B. An aalink peer watches."""
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("listener 1883 0.0.0.0\nallow_anonymous true\npersistence false\n")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    lan.start(lan.a, [MOSQUITTO, "-c", str(conf)], **quiet)
    out, osc_a, osc_b = tmp_path / "peer.jsonl", f"{lan.ip_b}:9101", f"{lan.ip_b}:9102"
    watcher = lan.start(
        lan.b,
        peer(out, None, [osc_a, osc_b], f"{lan.ip_a}:1883"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert watcher.stdout is not None and json.loads(watcher.stdout.readline()) == "ready"
    assert watcher.stdin is not None
    rooms = {}
    for room, mode, osc in (("roomA", "lead", osc_a), ("roomB", "follow", osc_b)):
        (tmp_path / f"{room}.toml").write_text(f'[mqtt]\ninstance = "{room}"\n')
        flags = ["--link", mode, "--osc", osc, "--mqtt", f"{lan.ip_a}:1883", "--group", "hall",
                 "--config", str(tmp_path / f"{room}.toml")]  # fmt: skip
        namespace = lan.a if room == "roomA" else lan.b
        rooms[room] = lan.start(namespace, daemon(*flags, duration=300))

    def publish(topic: str, payload: str) -> float:
        assert watcher.stdin is not None
        watcher.stdin.write(f"pub {topic} {payload}\n")
        watcher.stdin.flush()
        return time.time()

    def in_phase(rows: list[dict[str, Any]]) -> float | None:
        """The first of A's bar lines B's bar lines have met within 2 ms."""
        b_tags = [tag for tag, _ in downbeats(rows, osc_b).values()]
        for tag, _ in sorted(downbeats(rows, osc_a).values()):
            if b_tags and min(abs(np.array(b_tags) - tag)) < 0.002:
                return tag
        return None

    rows = wait_rows(out, lambda rows: in_phase(rows) is not None, 120, "B in phase with A")
    start = in_phase(rows)
    assert start is not None
    time.sleep(max(start + 15 - time.time(), 0))
    tempo_sent = publish("moodscore/roomA/cmd/tempo", "132")
    time.sleep(max(start + 30 - time.time(), 0))
    group_sent = publish("moodscore/group/hall/cmd/layers", "2")
    time.sleep(max(start + 61 - time.time(), 0))
    stop_sent = publish("moodscore/roomA/cmd/transport", "stop")
    time.sleep(9)
    for process in rooms.values():
        process.send_signal(signal.SIGTERM)
    for process in rooms.values():
        assert process.wait(30) == 0
    rows = read_rows(out)
    a, b = bar_messages(rows, osc_a), bar_messages(rows, osc_b)
    session = Session(rows)

    # 60 s of bar lines: every one of A's has one of B's within 2 ms, at the same tempo; the
    # aalink peer sees A's tempo within 0.1 bpm and A's bar lines on the session's.
    window = [(tag, args) for tag, args in a.values() if start <= tag <= start + 60]
    assert len(window) >= 20
    phase, tempo, seen = [], [], []
    for tag, args in window:
        match = min(b.values(), key=lambda bar: abs(bar[0] - tag))
        phase.append((match[0] - tag) * 1000)
        tempo.append(abs(match[1][1] - args[1]))
        _, session_bpm = session.at(tag + 0.05)
        seen.append((abs(session_bpm - args[1]), abs(session.off_ms(tag, 4))))
    assert max(map(abs, phase)) < 2.0, phase
    assert max(tempo) < 0.1, tempo
    assert max(s[0] for s in seen) < 0.1 and max(s[1] for s in seen) < 2.0, seen
    assert len({round(args[1]) for _, args in window}) >= 2  # the tempo did change
    # The tempo command: at A's next bar line or the one after, and B there with it.
    turned = min(tag for tag, args in window if tag > tempo_sent and abs(args[1] - 132) < 0.01)
    assert turned - tempo_sent < 2 * 4 * 60 / 132 + 0.5
    assert any(abs(tag - turned) < 0.002 and args[1] == pytest.approx(132, abs=0.1)
               for tag, args in b.values())  # fmt: skip

    # The group command: each room answers within one bar, and both change at one bar line.
    answers = {
        row["topic"].rsplit("/", 1)[1]: (row["t"], json.loads(row["payload"]))
        for row in rows
        if row["kind"] == "mqtt" and row["topic"].startswith("moodscore/group/hall/cmd/layers/")
    }
    bar_s = 4 * 60 / 132
    assert set(answers) == {"roomA", "roomB"}, answers
    for room, (t, answer) in answers.items():
        assert answer["ok"] and answer["instance"] == room and 0 < t - group_sent < bar_s, answer
    first_a = min(tag for tag, args in a.values() if tag > group_sent and args[6] == 2)
    first_b = min(tag for tag, args in b.values() if tag > group_sent and args[6] == 2)
    assert abs(first_a - first_b) < 0.002 and first_a - group_sent < 2 * bar_s + 0.5

    # A's stop stops the session at A's bar line, and B at its next one.
    stops_a, stops_b = transport(rows, osc_a, "stop"), transport(rows, osc_b, "stop")
    watched = session.rows
    turns = [(r["t"], r["playing"]) for r, before in zip(watched[1:], watched, strict=False)
             if r["playing"] != before["playing"]]  # fmt: skip
    assert len(stops_a) == 1 and len(stops_b) == 1, (stop_sent, stops_a, stops_b, turns)
    [stop_a], [stop_b] = stops_a, stops_b
    assert 0 < stop_a - stop_sent < 2 * bar_s + 0.5
    stopped = next(r["t"] for r in session.rows if r["t"] > stop_sent and not r["playing"])
    assert abs(stopped - stop_a) < 0.05
    # (B's next bar line; one more if a loaded machine made its OSC bundle late.)
    assert 0 < stop_b - stop_a < 2 * bar_s + 0.01 and abs(session.off_ms(stop_b, 4)) < 2.0
    print(
        f"two daemons: B's bar lines within {max(map(abs, phase)):.3f} ms of A's over "
        f"{window[-1][0] - window[0][0]:.0f} s ({len(window)} bars, tempos "
        f"{sorted({round(args[1]) for _, args in window})}); the session's tempo within "
        f"{max(s[0] for s in seen):.4f} bpm and phase within {max(s[1] for s in seen):.3f} ms "
        f"of A's; group answers after "
        f"{', '.join(f'{t - group_sent:.3f}' for t, _ in answers.values())} s"
    )
