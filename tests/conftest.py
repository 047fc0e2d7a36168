"""No silent skips: a test may skip only for hardware this machine cannot have.

Everything the set-up installs (jackd, mosquitto, Chromium, Xvfb, vizdoom, librosa, ...) is
required: a test that needs it fails when it is missing or broken, so a broken install shows up
as failures, never as a quiet row of skips. The only skips allowed are for hardware, and their
reason must say so through :func:`tests.hardware.hardware_skip` (``"hardware (camera): ..."``);
any other skip (``pytest.skip``, ``importorskip``, ``skipif``) is turned into a failure here.

At the end of a run the allowed skips are listed with their reasons, so a reader sees what the
run did not check on this machine.
"""

from __future__ import annotations

from collections.abc import Generator
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
