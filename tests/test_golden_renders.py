"""Refactors keep the music: renders with a fixed input, config and seed give the stored samples.

The hashes in ``tests/golden/renders.json`` were made on the code before the architecture
refactor (wave 2). A change that is *meant* to change the music (new arrangement rules, a
retrained model) rewrites them on purpose and says so in its commit:

    .venv/bin/python -m tests.test_golden_renders --write

Each case hashes what a listener and a DAW receive: the rendered WAV's 16-bit samples and the
Standard MIDI File's bytes (notes, tempo map, programs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from daemon.cli import main

GOLDEN = Path(__file__).parent / "golden" / "renders.json"

# name -> moodscore arguments; {out} is a scratch folder. Short, but each crosses tempo ramps,
# layer changes and (demo) scene-intensity changes.
CASES: dict[str, list[str]] = {
    "render-demo-frame": [
        "render", "demo", "--duration", "14", "--seed", "3",
        "-o", "{out}/music.wav", "--midi", "{out}/music.mid",
    ],
    "render-demo-game": [
        "render", "demo", "--duration", "10", "--seed", "7", "--mode", "game",
        "-o", "{out}/music.wav", "--midi", "{out}/music.mid",
    ],
    "compose-combat": [
        "compose", "--valence", "-0.4", "--arousal", "0.6", "--bars", "6", "--scene", "combat",
        "--seed", "5", "-o", "{out}/music.wav", "-o", "{out}/music.mid",
    ],
    "compose-calm-fixed": [
        "compose", "--valence", "0.5", "--arousal", "-0.5", "--bars", "4", "--scene", "calm",
        "--bpm", "84", "--layers", "5", "--seed", "2",
        "-o", "{out}/music.wav", "-o", "{out}/music.mid",
    ],
}  # fmt: skip


def render_case(name: str, scratch: Path) -> dict[str, str]:
    """Run case ``name`` into ``scratch``; the hashes of its WAV samples and MIDI bytes."""
    args = [a.replace("{out}", str(scratch)) for a in CASES[name]]
    code = main(args)
    assert code == 0, f"{name}: moodscore {' '.join(args)} exited {code}"
    samples, rate = soundfile.read(scratch / "music.wav", dtype="int16", always_2d=True)
    return {
        "audio": hashlib.sha256(np.ascontiguousarray(samples).tobytes()).hexdigest(),
        "frames": str(len(samples)),
        "rate": str(rate),
        "midi": hashlib.sha256((scratch / "music.mid").read_bytes()).hexdigest(),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_render_gives_the_stored_samples(name: str, tmp_path: Path) -> None:
    stored = json.loads(GOLDEN.read_text())
    assert name in stored, f"no stored hashes for {name}; run with --write on purpose"
    got = render_case(name, tmp_path)
    expected = stored[name]
    # Length first: a different length explains a different hash in words a reader can use.
    assert got["frames"] == expected["frames"], f"{name}: audio length changed"
    assert got["audio"] == expected["audio"], f"{name}: the rendered samples changed"
    assert got["midi"] == expected["midi"], f"{name}: the MIDI file changed"


def _write() -> None:
    hashes = {}
    for name in sorted(CASES):
        with tempfile.TemporaryDirectory() as scratch:
            hashes[name] = render_case(name, Path(scratch))
            print(name, hashes[name], file=sys.stderr)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="store the current hashes")
    if parser.parse_args().write:
        _write()
