"""The architecture, checked: ``models`` stands alone and modules stay small enough to read.

The layering itself is written down as import-linter contracts in ``pyproject.toml`` and checked
by ``make lint`` (part of ``make test``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A module longer than this says in its docstring why it stays whole.
MAX_LINES = 500


def test_importing_every_model_module_pulls_in_no_daemon_module() -> None:
    modules = sorted(p.stem for p in (ROOT / "models").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module('models.' + name)\n"
        "bad = sorted(m for m in sys.modules if m == 'daemon' or m.startswith('daemon.') "
        "or m.split('.')[0] in ('pyo', 'aiortc', 'aiomqtt', 'aiohttp', 'mido'))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"models imported {result.stdout.strip()}"


def test_long_modules_say_why_they_stay_whole() -> None:
    unexplained = []
    for package in ("daemon", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            lines = path.read_text().count("\n")
            if lines <= MAX_LINES:
                continue
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            if not any(words in docstring for words in ("stays whole", "stay in one module")):
                unexplained.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not unexplained, "split these or say why they stay whole: " + ", ".join(unexplained)
