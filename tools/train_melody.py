#!/usr/bin/env python3
"""Train the melody LSTM (the same as ``moodscore train-melody``, runnable from a checkout).

    .venv/bin/python tools/prepare_melodies.py      # once: builds .cache/melodies.json.gz
    .venv/bin/python tools/train_melody.py -o models/weights/melody_lstm.pt
    .venv/bin/python tools/train_melody.py --init models/weights/melody_lstm.pt \\
        --data MY_MIDI_DIR -o my_style.pt           # fine-tune on your own MIDI files

Flags: ``--data DIR|DATASET``, ``--epochs N``, ``--init WEIGHTS``, ``--seed S``, ``--limit N``,
``-o PATH``; see ``daemon/training/melody.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before torch loads: OpenMP threads that spin-wait crawl when another process holds a core.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PYO_GUI_WX", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from daemon.cli import main  # noqa: E402 - after the sys.path fix for direct runs

if __name__ == "__main__":
    # The CLI's own train-melody command, so the flags and errors are the CLI's.
    sys.exit(main(["train-melody", *sys.argv[1:]]))
