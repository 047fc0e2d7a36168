"""No silent skips: a test may skip only for hardware this machine cannot have.

Everything the set-up installs (jackd, mosquitto, Chromium, Xvfb, vizdoom, librosa, ...) is
required: a test that needs it fails when it is missing or broken, so a broken install shows up
as failures, never as a quiet row of skips. The only skips allowed are for hardware, and their
reason must say so through :func:`tests.hardware.hardware_skip` (``"hardware (camera): ..."``);
any other skip (``pytest.skip``, ``importorskip``, ``skipif``) is turned into a failure here.

At the end of a run the allowed skips are listed with their reasons, so a reader sees what the
run did not check on this machine.

Two at a time, or alone. ``make test`` runs in two passes: the modules in
:data:`SHARED_MODULES` (offline renders, training on tiny runs, models, config: nothing in them
measures the wall clock) two at a time with pytest-xdist, one module per worker; then every
other test, marked ``alone`` here, one at a time with nothing else running, because those
measure time as a listener would (live audio paced to the clock, JACK MIDI jitter, beats ahead
over MQTT/OSC/Link, Chromium latency) and a neighbour on a two-core machine moves their figures.
A new module runs alone until someone adds it to the list knowing it has no timing in it; a
live test in a listed module is marked ``@pytest.mark.alone`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.hardware import HARDWARE, is_hardware_reason
from tests.jack import clear_stale_jack_registry


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refuse(report: Any, where: str) -> None:
    reason = _skip_reason(report)
    report.outcome = "failed"
    report.longrepr = (
        f"{where} was skipped ({reason!r}), but only missing hardware may skip a test "
        f"({', '.join(HARDWARE)}; see tests/hardware.py). Everything else the set-up installs "
        "is required: install it (tools/setup.sh) or fix it."
    )


# Each xdist worker compiles librosa's numba kernels into a cache of its own: two processes
# compiling the same kernel into one cache at the same moment (a fresh venv's first run) corrupt
# it, and every later librosa call segfaults. Set before anything imports numba.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault(
        "NUMBA_CACHE_DIR",
        str(
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "moodscore"
            / "numba"
            / os.environ["PYTEST_XDIST_WORKER"]
        ),
    )

# Modules with no wall-clock check in them (see above): safe beside one another.
SHARED_MODULES = frozenset(
    {
        "test_affect", "test_analysis", "test_architecture", "test_cli", "test_compose_cmd",
        "test_composer", "test_conductor", "test_config", "test_demo", "test_face", "test_footage",
        "test_game_mode", "test_golden_renders", "test_install", "test_library", "test_melody",
        "test_memory", "test_music_video", "test_ngram", "test_os2l", "test_platforms",
        "test_reactions", "test_render", "test_scene_augment", "test_scene_heldout",
        "test_scene_model", "test_scenes", "test_teach", "test_transitions", "test_visuals",
        "test_web_security", "test_wheel",
    }
)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "alone: measures the wall clock; `make test` runs it with nothing beside it"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem not in SHARED_MODULES:
            item.add_marker(pytest.mark.alone)


def pytest_sessionstart(session: pytest.Session) -> None:
    """JACK's registry left full by jackd servers killed in earlier runs is cleared before any
    test maps it (tests/jack.py says why only here)."""
    clear_stale_jack_registry()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome: Any = yield
    report = outcome.get_result()
    if report.skipped and not (
        hasattr(report, "wasxfail") or is_hardware_reason(_skip_reason(report))
    ):
        _refuse(report, item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    # A module-level skip (``pytestmark = skipif``, ``importorskip`` at import) drops every
    # test in the module before any of them runs: the same rule applies.
    outcome: Any = yield
    report = outcome.get_result()
    if report.skipped and not is_hardware_reason(_skip_reason(report)):
        _refuse(report, collector.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    terminalreporter.section("skipped for hardware: not checked on this machine")
    for report in skipped:
        terminalreporter.write_line(f"{report.nodeid}: {_skip_reason(report)}")
