"""A dummy-driver jackd of the tests' own, under a server name of its own.

jackd is started under ``setpriv --pdeathsig TERM``, so it stops with the test process even when
that is killed (a timeout, Ctrl-C twice) and never outlives the run holding CPU. A jackd killed
outright still leaves its entry in JACK's shared-memory registry, which holds a handful of
servers: once it is full every new server fails with "Too many servers already active". So when
the test session starts and no jackd runs at all, the registry and the servers' shared memory
left in /dev/shm are stale and are removed (tests/conftest.py). Only then: libjack keeps the
registry mapped in every process that used it, and a registry removed under a running test
process would hide every later server from it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.engine import jack_running


@contextlib.contextmanager
def dummy_jackd(monkeypatch: pytest.MonkeyPatch, name: str, *, period: int) -> Iterator[str]:
    """Run ``jackd -n NAME -d dummy -p PERIOD`` (48 kHz) until the block ends; the tests'
    JACK clients (pyo, RtMidi, JACK-Client) find it through ``JACK_DEFAULT_SERVER``."""
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.fail("jackd is not installed: tools/setup.sh installs jackd2")
    name = f"{name}-{os.getpid()}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    command = [jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", "48000", "-p", str(period)]
    setpriv = shutil.which("setpriv")  # util-linux, on every Debian
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "TERM", *command]
    # jackd's stderr goes to a file: on a loaded machine it reports every xrun, and a pipe nobody
    # reads fills up and stops the server in the middle of a test.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115  (closed when jackd has stopped)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 10
        while not jack_running():
            if proc.poll() is not None:
                log.seek(0)
                stderr = log.read()
                pytest.fail(f"jackd did not start: {stderr.strip()[-300:]}")
            if time.monotonic() > deadline:
                pytest.fail("jackd did not accept clients within 10 s")
            time.sleep(0.1)
        yield name
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def clear_stale_jack_registry() -> None:
    """Remove JACK's registry and servers' shared memory when no jackd runs (see above)."""
    running = subprocess.run(["pgrep", "-x", "jackd"], capture_output=True, check=False)
    if running.returncode == 0:  # a live server owns the registry: leave it alone
        return
    shm = Path("/dev/shm")
    for stale in [*shm.glob("jack-*"), *shm.glob("jack_*")]:
        with contextlib.suppress(OSError):
            stale.unlink()
