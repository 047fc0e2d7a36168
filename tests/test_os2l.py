"""OS2L: a lighting program's TCP server (an independent process) receives a beat message per
beat at the music's tempo, ahead of the sound; what it sends that is not OS2L is refused in one
line while the music plays on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main
from daemon.messages import Beat
from daemon.outputs.os2l import Os2lOutput
from tests.live import build, live_config

REPO = Path(__file__).resolve().parents[1]


def lighting_program(out: Path) -> subprocess.Popen[str]:
    """The independent OS2L server (tests/sync_peers.py), in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.sync_peers", "os2l", str(out)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_a_lighting_program_gets_every_beat_ahead_at_the_tempo(tmp_path: Path) -> None:
    """12 s at 120 bpm (the one 60 s sync test is OSC's: tests/test_osc.py)."""
    out = tmp_path / "os2l.jsonl"
    server = lighting_program(out)
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())
        config = live_config(
            web={"enabled": False}, os2l={"enabled": True, "host": "127.0.0.1", "port": port}
        )
        session = build(config, seconds=12.0)
        session.planner.conductor.fix_tempo(120.0)
        output = next(o for o in session.outputs if isinstance(o, Os2lOutput))
        sounds: dict[int, float] = {}
        engine = session.engine

        def on_beat(beat: Beat) -> None:  # the audio thread
            wall = engine.wall_time(beat.audio_time)
            if wall is not None:
                sounds[beat.index] = time.time() + (wall - time.perf_counter())

        engine.add_beat_listener(on_beat)
        report = await session.run()
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(5)
    assert report.underruns == 0
    # The stream is OS2L JSON objects back to back, as DJ software sends them.
    decoder = json.JSONDecoder()
    beats: list[tuple[float, dict[str, object]]] = []
    for line in out.read_text().splitlines():
        record = json.loads(line)
        text = record["data"]
        while text.strip():
            message, end = decoder.raw_decode(text.lstrip())
            text = text.lstrip()[end:]
            beats.append((record["t"], message))
    assert all(m["evt"] == "beat" for _, m in beats)
    positions = [int(m["pos"]) for _, m in beats]  # type: ignore[call-overload]
    assert positions == list(range(positions[0], positions[0] + len(positions)))
    # Every beat after the first bar (the tempo is fixed from the second bar on) at 120 bpm.
    steady = [(t, m) for t, m in beats if int(m["pos"]) >= 8]  # type: ignore[call-overload]
    assert len(steady) >= 12 and all(m["bpm"] == 120.0 for _, m in steady)
    assert all(m["strength"] == (1.0 if int(m["pos"]) % 4 == 0 else 0.5) for _, m in steady)  # type: ignore[call-overload]
    # Ahead of the sound by os2l.lead_ms (30; the program acts on arrival). The median: on this
    # shared 2-core box a stall of the whole machine now and then makes a beat or two late.
    leads_ms = np.array([(sounds[int(m["pos"])] - t) * 1000 for t, m in steady])  # type: ignore[call-overload]
    assert np.median(leads_ms) == pytest.approx(30.0, abs=5.0), leads_ms
    assert output.refused == 1  # "hello, not OS2L"; the button press was fine


def test_os2l_without_a_host_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--source", "demo", "--backend", "manual", "--no-web", "--os2l", "9999"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--os2l" in err, err
