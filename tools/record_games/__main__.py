"""Record labelled game footage, draw its contact sheets, or total it up.

Run from the repository root with the project's Python:

    .venv/bin/python -m tools.record_games GAME [--clip NAME ...] [--out models/footage]
    .venv/bin/python -m tools.record_games all            # every game, every clip (hours)
    .venv/bin/python -m tools.record_games sheets         # models/footage/sheets/<game>.png
    .venv/bin/python -m tools.record_games summary        # minutes per game and class

``--shots DIR`` also saves full-size screenshots now and then, to check what a recorder sees.
Each game module's docstring names the Debian packages it needs; the harness needs
``xvfb xdotool x11-utils libgl1-mesa-dri``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

from . import (
    chromium_bsu,
    crawl,
    flare,
    minetest,
    openarena,
    redeclipse,
    renpy_vn,
    supertux,
    supertuxkart,
    wesnoth,
)
from .common import REPO_ROOT, finish_clip
from .harness import Capture
from .sheets import summarise, write_sheets

RECORDERS: list[ModuleType] = [
    renpy_vn,
    openarena,
    supertuxkart,
    chromium_bsu,
    minetest,
    wesnoth,
    redeclipse,
    flare,
    supertux,
    crawl,
]
GAMES: dict[str, ModuleType] = {module.GAME.name: module for module in RECORDERS}


def _record_game(
    module: ModuleType,
    clips: list[str] | None,
    out: Path,
    shots: Path | None,
    seconds: float | None,
    full_root: Path | None = None,
) -> int:
    failures = 0
    plans = [p for p in module.PLANS if clips is None or p.name in clips]
    if seconds is not None:
        plans = [dataclasses.replace(p, seconds=seconds) for p in plans]
    if clips is not None and len(plans) != len(clips):
        known = ", ".join(p.name for p in module.PLANS)
        raise SystemExit(f"unknown clip in {clips}; {module.GAME.name} has {known}")
    for plan in plans:
        started = time.monotonic()
        if full_root is not None:
            full = full_root / module.GAME.name / plan.name
            shutil.rmtree(full, ignore_errors=True)
            Capture.full_dir = full
        with tempfile.TemporaryDirectory(prefix=f"moodscore-{module.GAME.name}-") as folder:
            work = Path(folder)
            home = work / "home"
            home.mkdir()
            try:
                session = module.record(plan, work=work, home=home, shots=shots)
                if shots is not None:
                    shutil.copy(work / "game.log", shots / f"{plan.name}.log")
            except Exception:
                failures += 1
                print(f"{module.GAME.name}/{plan.name}: FAILED", file=sys.stderr)
                traceback.print_exc()
                log = work / "game.log"
                if log.exists():
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                continue
        command = f".venv/bin/python -m tools.record_games {module.GAME.name} --clip {plan.name}"
        try:
            finish_clip(
                module.GAME,
                plan,
                session.capture.recording,
                out_root=out,
                command=command,
                extra_meta={"wall_s": round(time.monotonic() - started, 1)},
            )
        except Exception:
            failures += 1
            print(f"{module.GAME.name}/{plan.name}: could not be written", file=sys.stderr)
            traceback.print_exc()
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.record_games", description=__doc__)
    parser.add_argument("game", choices=[*GAMES, "all", "sheets", "summary"])
    parser.add_argument("--clip", action="append", help="record only this clip (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "footage")
    parser.add_argument("--shots", type=Path, help="save full-size screenshots here")
    parser.add_argument("--seconds", type=float, help="override each clip's length (trials)")
    parser.add_argument(
        "--full-frames",
        type=Path,
        help="also save every 4th frame at full size under DIR/<clip>/ (for tools/text_footage.py)",
    )
    args = parser.parse_args(argv)
    if args.game == "sheets":
        write_sheets(args.out)
        return 0
    if args.game == "summary":
        print(summarise(args.out))
        return 0
    modules = list(GAMES.values()) if args.game == "all" else [GAMES[args.game]]
    full_root: Path | None = args.full_frames
    failures = sum(
        _record_game(m, args.clip, args.out, args.shots, args.seconds, full_root) for m in modules
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
