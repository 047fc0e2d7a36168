"""The short soak ``make test`` runs: ``tools/soak.py --minutes 1.5`` (the 60-minute one is run by
hand; see the tool's docstring). A live ``moodscore run`` with three churning Chromium viewers, a
mosquitto killed and restarted, the source lost and regained, a preset edited while it plays
and 1,000 malformed payloads per protocol: the recording plays without a gap, the daemon
survives all of it and stops cleanly.

Issue 17 asks for 3 minutes here: that costs 95 s more and took ``make test`` to 19.5 minutes on
the 2-core machine (over its 20 with a fresh set-up), so the longer run waits for room."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.chromium
@pytest.mark.mosquitto
def test_a_short_soak_survives_every_fault_without_a_gap(tmp_path: Path) -> None:
    out = tmp_path / "soak"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "soak.py"), "--minutes", "1.5", "--small",
         "--out", str(out)],
        capture_output=True, text=True, timeout=400, cwd=ROOT,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["checks"] == {
        "daemon_stopped_cleanly": True,
        "recordings_playable": True,
        "no_gaps": True,
        "broker_restarts_survived": True,
        "floods_answered": True,
        "source_lost_and_regained": True,
        "preset_edits_heard": True,
        "web_flood_answered": True,
    }, (report, done.stderr[-2000:])
    assert done.returncode == 0 and report["ok"]
    # What each check stands on: a 90 s recording, a restart, a file that played, both tempos.
    (recording,) = report["recordings"]
    assert recording["seconds"] == pytest.approx(90.0, abs=0.1) and recording["ffprobe"]
    assert len(report["broker_restarts"]) == 1
    assert "video file clip.mp4" in report["sources_seen"]
    assert report["floods"]["mqtt"]["refused"] == 1000
    assert report["viewers_opened"] >= 6  # three, then one new every 10 s
    assert report["late_blocks"] is not None  # reported (a figure of the machine, not judged)
    assert (out / "rss.png").stat().st_size > 5000
