"""Late audio blocks while a taught head trains: worker process against thread, same session.

A live session (``manual`` audio backend, the demo source, game mode) plays; in turns of
``--turn`` seconds, nothing is trained, then heads are trained back to back (the examples of
four scenes x 60 s, 480 windows of 420 features, as ``teach`` leaves them) by a teacher with
a worker ``process`` and then a ``thread``. The engine's late blocks are counted per turn::

    .venv/bin/python tools/bench_teach.py --turns 2 --turn 5 -o teach_bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from daemon.analysis.teach import Teacher
from daemon.app import LiveRequest, build_live
from daemon.config import load_config
from daemon.engine import BackendChoice
from daemon.sources import open_source

SCENES = ("combat", "exploration", "dialogue", "menu")


def _teach(teacher: Teacher, rng: np.random.Generator) -> None:
    for i, scene in enumerate(SCENES):
        teacher.teach(scene, 60.0)
        for _ in range(120):
            teacher.observe(rng.normal(i, 2.0, 420).astype(np.float32), "combat", 0.5)


async def _turn(session: Any, seconds: float, teacher: Teacher | None) -> dict[str, Any]:
    engine = session.engine
    late, trainings = engine.late_blocks, 0
    started = time.monotonic()
    rng = np.random.default_rng(0)
    while time.monotonic() - started < seconds:
        if teacher is None:
            await asyncio.sleep(0.1)
            continue
        await asyncio.to_thread(_teach, teacher, rng)
        await asyncio.to_thread(teacher.wait_idle, 60)
        trainings += 4
    return {
        "seconds": round(time.monotonic() - started, 1),
        "late_blocks": engine.late_blocks - late,
        "trainings": trainings,
    }


async def _main(turns: int, turn_s: float) -> dict[str, Any]:
    config = load_config(use_user_file=False).replace("engine", backend="manual")
    config = config.replace("web", enabled=False).replace("mqtt", enabled=False)
    config = config.replace("analysis", mode="game")
    source = open_source("demo", config.source, paced=True)
    session = build_live(
        config, LiveRequest(web_port_flexible=False), source, BackendChoice("manual", "bench")
    )
    workers = {w: Teacher(model_hash="bench", worker=w) for w in ("process", "thread")}
    results: dict[str, list[dict[str, Any]]] = {"idle": [], "process": [], "thread": []}
    task = asyncio.create_task(session.run())
    try:
        await asyncio.sleep(5.0)  # the first bars, the models loaded
        for _ in range(turns):
            results["idle"].append(await _turn(session, turn_s, None))
            for name, teacher in workers.items():
                results[name].append(await _turn(session, turn_s, teacher))
    finally:
        session.request_stop()
        await task
        for teacher in workers.values():
            teacher.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--turn", type=float, default=5.0, help="seconds per turn")
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    results = asyncio.run(_main(args.turns, args.turn))
    text = json.dumps(results, indent=2)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
