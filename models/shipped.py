"""Where the shipped weight files are: ``models/weights/`` as package data.

Read through :mod:`importlib.resources`, so a wheel install (``pip``/``pipx install moodscore``)
finds them as a checkout does. Every weight file ships in the wheel (``[tool.setuptools.package-
data]`` in pyproject.toml); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def weights_path(name: str) -> Path:
    """The path of the shipped weight file ``name`` (it may be missing in a broken install).

    torch, mediapipe and gzip want a real file; an install on disk (wheel or checkout) gives
    one. A zipped install would not, and is not supported.
    """
    resource = importlib.resources.files("models") / "weights" / name
    if not isinstance(resource, Path):
        raise RuntimeError(f"moodscore must be installed on disk, not zipped ({resource})")
    return resource
