"""pip's configured package sources as uv options, one per line (uv reads no pip.conf).

The set-up and the wheel test install with uv (a standards installer, several times faster than
pip here: it links from its cache instead of unpacking every wheel again), but a machine's
package sources are usually configured for pip: ``find-links``, ``extra-index-url``,
``index-url`` and ``constraint`` in pip.conf or ``PIP_*`` variables. ``pip config list`` shows
them all; this prints the same as uv flags, so both installers see the same packages.

Usage: ``python tools/pip_sources.py`` (with the venv's python, whose pip is asked).
"""

from __future__ import annotations

import subprocess
import sys

FLAGS = {
    "find-links": "--find-links",
    "extra-index-url": "--extra-index-url",
    "index-url": "--index-url",
    "constraint": "--constraint",
}


def uv_options(pip_config: str) -> list[str]:
    """``pip config list`` output -> uv's flags, each source once, in pip's order."""
    options: list[str] = []
    for line in pip_config.splitlines():
        key, _, value = line.partition("=")
        flag = FLAGS.get(key.rsplit(".", 1)[-1])
        if flag is None:
            continue
        for item in value.strip().strip("'\"").split():
            pair = [flag, item]
            if not any(options[i : i + 2] == pair for i in range(0, len(options), 2)):
                options += pair
    return options


def main() -> int:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    for option in uv_options(listed):
        print(option)
    return 0


if __name__ == "__main__":
    sys.exit(main())
