"""The shipped scene model on the held-out games' committed footage (models/footage/val).

A regression guard for the figures models/SCENE_CARD.md reports under "Unseen games": the
shipped model is evaluated on every 0.5 s window of Red Eclipse and Flare (never trained or
tuned on) and must score at least the reported figures minus a small margin (CPU thread
counts change the last digits, nothing more).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.scene import DEFAULT_WEIGHTS, load_checkpoint
from models.scene_data import load_heldout_games
from models.scene_training import evaluate

FOOTAGE = Path(__file__).resolve().parent.parent / "models" / "footage"
MARGIN = 0.02
# The card's figures for the shipped model (models/SCENE_CARD.md, "Unseen games").
REPORTED = {
    "heldout_games": {"balanced_accuracy": 0.456},
    "heldout_redeclipse": {"accuracy": 0.309, "balanced_accuracy": 0.253},
    "heldout_flare": {"balanced_accuracy": 0.468},
}


def test_shipped_model_keeps_its_held_out_figures() -> None:
    torch.set_num_threads(2)
    loaded = load_checkpoint(DEFAULT_WEIGHTS)
    sets = load_heldout_games(FOOTAGE)
    assert set(REPORTED) <= set(sets), f"held-out footage missing: {sorted(sets)}"
    # Every held-out window once; each game's figures are its share of them.
    result = evaluate(loaded.net, sets["heldout_games"], classes=loaded.classes)
    for name, floors in REPORTED.items():
        groups = {clip.group for clip in sets[name]}
        figures = result.subset(np.array([g in groups for g in result.groups])).metrics()
        for key, floor in floors.items():
            assert figures[key] >= floor - MARGIN, f"{name} {key} {figures[key]} < {floor}"
