"""One build step on top of pyproject.toml: the root's config.toml and scenes/*.toml go into the
wheel as package data, ``daemon/builtin/config.toml`` and ``daemon/builtin/scenes/*.toml``.

The repository keeps them at the root (the files a developer edits and the README points to);
:mod:`daemon.config` reads them through :mod:`importlib.resources` from ``daemon/builtin`` in an
installed wheel, and from the root in a checkout or an editable install. Everything else is
declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class build_py_with_builtins(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the root's files in place
        target = Path(self.build_lib, "daemon", "builtin")
        (target / "scenes").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "config.toml", target / "config.toml")
        for preset in sorted((ROOT / "scenes").glob("*.toml")):
            shutil.copyfile(preset, target / "scenes" / preset.name)


setup(cmdclass={"build_py": build_py_with_builtins})
