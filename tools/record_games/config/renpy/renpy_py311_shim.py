"""Run Debian's Ren'Py 8.0.3 under Debian's Python 3.11 (``/usr/bin/python3 THIS /usr/games/renpy
GAME_DIR``).

Ren'Py 8.0.3 builds some Python ASTs whose end line lies before their start line; Python 3.11
validates positions in ``compile()`` and refuses them ("AST node line range (403, 1) is not
valid", renpy/renpy#5461), so bookworm's package crashes at start. This wrapper repairs such
positions before each ``compile()`` of an AST and then runs the launcher unchanged.
"""

from __future__ import annotations

import ast
import builtins
import runpy
import sys
from typing import Any

_compile = builtins.compile


def _repair(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        start = getattr(node, "lineno", None)
        end = getattr(node, "end_lineno", None)
        if start is None or end is None:
            continue
        if end < start:
            node.end_lineno = start  # type: ignore[attr-defined]
            end = start
        col = getattr(node, "col_offset", None)
        end_col = getattr(node, "end_col_offset", None)
        if end == start and col is not None and end_col is not None and end_col < col:
            node.end_col_offset = col  # type: ignore[attr-defined]


def _patched_compile(source: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(source, ast.AST):
        _repair(source)
    return _compile(source, *args, **kwargs)


if __name__ == "__main__":
    builtins.compile = _patched_compile
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
