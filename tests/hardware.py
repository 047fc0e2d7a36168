"""The hardware a test may skip for, and nothing else (enforced by ``tests/conftest.py``).

A development machine or CI box may lack a GPU, a sound card, a camera or the kernel's ALSA
sequencer, and no set-up can install them; a test that needs one skips with a reason made by
:func:`hardware_skip`. A test that needs software the set-up installs must fail without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import NoReturn

import pytest

# The kinds of hardware a skip may name; keep this list short.
HARDWARE = ("GPU", "sound card", "camera", "ALSA sequencer")
_REASON = re.compile(r"^hardware \((" + "|".join(map(re.escape, HARDWARE)) + r")\): \S")


def hardware_reason(kind: str, detail: str) -> str:
    """The skip reason for ``kind`` (one of :data:`HARDWARE`): ``"hardware (GPU): ..."``."""
    if kind not in HARDWARE:
        raise ValueError(f"{kind!r} is not hardware a test may skip for: {', '.join(HARDWARE)}")
    return f"hardware ({kind}): {detail}"


def hardware_skip(kind: str, detail: str) -> NoReturn:
    """Skip the running test because this machine lacks (or has) ``kind``."""
    __tracebackhide__ = True  # the summary names the test, not this line
    pytest.skip(hardware_reason(kind, detail))


def is_hardware_reason(reason: str) -> bool:
    """True for a reason made by :func:`hardware_reason`."""
    return _REASON.match(reason) is not None


def nvidia_gpu() -> str | None:
    """The first GPU ``nvidia-smi -L`` lists, or None without a working NVIDIA driver."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        listing = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [line for line in listing.stdout.splitlines() if line.startswith("GPU ")]
    return lines[0] if listing.returncode == 0 and lines else None
