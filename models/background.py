"""Set-up of a background worker process that trains a model beside live audio.

Kept apart from the training code so that a spawned worker imports only this small module
before it lowers its priority: torch and the model code are imported afterwards, niced.
"""

from __future__ import annotations

import contextlib
import os

NICENESS = 15


def lower_priority() -> None:
    """The worker's initializer: the lowest priority but a few, and one torch thread."""
    with contextlib.suppress(OSError):  # not allowed here: it runs at normal priority
        os.nice(NICENESS)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(1)
