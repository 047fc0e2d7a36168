"""Per-output delays: one reference (the engine's sound), ``delay_ms`` per section, and the
``delay`` command that moves a running output (what the panel's calibration page sends)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from daemon.clock import BarGrid, DelayedClock
from daemon.control.commands import CommandError, DelayCommand, parse_command
from daemon.control.hub import ControlHub
from daemon.control.router import Router
from daemon.outputs.delays import Delays
from daemon.outputs.midi_port import MidiPortOutput
from daemon.scenes import load_scene
from tests.test_midi import SR, FakeEngine, RecordingPort, plan


def test_a_section_moves_its_outputs_and_the_engine_moves_every_one() -> None:
    engine = FakeEngine(lambda t: 10.0 + t)
    delays = Delays({"engine": 20.0, "osc": 100.0})
    osc = delays.view(engine, "osc", 0.1)  # type: ignore[arg-type]
    midi = delays.view(engine, "midi", 0.0)  # type: ignore[arg-type]
    assert osc.wall_time(1.0) == pytest.approx(11.12)
    assert midi.wall_time(1.0) == pytest.approx(11.02)
    delays.set("midi", -10.0)
    delays.set("engine", 50.0)
    assert osc.wall_time(1.0) == pytest.approx(11.15)
    assert midi.wall_time(1.0) == pytest.approx(11.04)
    assert delays.as_dict() == {
        "engine": 50.0, "midi": -10.0, "mqtt": 0.0, "osc": 100.0, "os2l": 0.0, "web": 0.0
    }  # fmt: skip
    with pytest.raises(ValueError, match="outside"):
        delays.set("web", -300.0)
    assert isinstance(osc, DelayedClock)


def test_the_delay_command_is_checked_against_each_outputs_limits() -> None:
    command = parse_command("delay", '{"output": "web", "ms": 90}')
    assert command == DelayCommand(output="web", ms=90.0)
    assert parse_command("delay", "osc,-12.5") == DelayCommand(output="osc", ms=-12.5)  # OSC
    for bad in ('{"output": "web", "ms": -200}', '{"output": "lasers", "ms": 1}', "40"):
        with pytest.raises(CommandError):
            parse_command("delay", bad)


async def test_the_router_applies_a_delay_and_the_state_shows_it() -> None:
    from daemon.conductor import Conductor
    from daemon.config import load_config

    hub = ControlHub()
    delays = Delays({})
    conductor = Conductor(
        config=load_config(use_user_file=False).conductor, preset=load_scene("default")
    )

    async def replan() -> None:
        pass

    router = Router(
        hub=hub,
        conductor=conductor,
        transport=None,  # type: ignore[arg-type]  # a delay asks nothing of the engine
        replan=replan,
        delays=delays,
    )
    result = await hub.execute("delay", {"output": "osc", "ms": 42})
    assert result.ok
    router.apply(hub.take_all()[0])
    assert hub.state()["delays"]["osc"] == 42.0 and delays.ms("osc") == 42.0


def test_midi_delay_moves_every_message_by_it() -> None:
    """The same bar to two MIDI ports, one through ``midi.delay_ms = 100``: every message of
    the second arrives 100 +- 2 ms after the first's."""
    t0 = time.perf_counter() + 0.1
    engine = FakeEngine(lambda t: t0 + t)
    delays = Delays({"midi": 100.0})
    ports = [RecordingPort(), RecordingPort()]
    outputs = [MidiPortOutput(port=ports[0]), MidiPortOutput(port=ports[1], delay_s=0.1)]
    outputs[0].attach(engine)  # type: ignore[arg-type]
    outputs[1].attach(delays.view(engine, "midi", outputs[1].delay_s))  # type: ignore[arg-type]
    grid = BarGrid.build(
        bar=0, start=0, sample_rate=SR, plan=plan(0, 240.0), first_beat=0, bpm_from=None, ramp=1
    )
    engine.bar(grid, [])
    time.sleep(0.1 + 1.0 + 0.25)
    for output in outputs:
        asyncio.run(output.aclose())
    engine.close_scheduler()
    clocks = [np.array([t for t, m in port.received if m.type == "clock"]) for port in ports]
    assert len(clocks[0]) == len(clocks[1]) == 96
    moved_ms = (clocks[1] - clocks[0]) * 1000
    print(f"MIDI +100 ms: moved by {np.median(moved_ms):.2f} ms (median; sd {moved_ms.std():.2f})")
    # Each message leaves when the clock's thread wakes for it; on a loaded machine a wake-up
    # can be late by tens of ms, so the median says where the delay put them.
    assert np.median(moved_ms) == pytest.approx(100.0, abs=2.0), moved_ms
    assert np.mean(np.abs(moved_ms - 100.0) < 2.0) > 0.5, moved_ms
