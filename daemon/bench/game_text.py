"""``moodscore bench``: the cost of game mode's on-screen text cue, on one core.

The text cue (:mod:`models.text_cues`) reads one frame a second: the analysis thread hands it
over, and a worker thread of its own (:mod:`daemon.analysis.game_text`) shrinks it to the
detector's size and runs PP-OCRv4's detector.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from daemon.bench.game_audio import _percentiles
from daemon.config import REPO_ROOT


def game_text_figures(*, calls: int) -> dict[str, Any] | None:
    """The on-screen text cue's cost on one core (thread CPU time): ``shrink_ms`` (a 1280x720
    frame to the detector's 640x360) and ``detect_ms`` (PP-OCRv4's detector and the box
    summary), both in the text worker, once a second, p50/p95; the
    frames are a dev clip's story page and fight (``models/footage/text/frames``)."""
    import cv2

    from models.text_cues import TextDetector, TextModelMissing, shrink_for_text

    frames = sorted((REPO_ROOT / "models" / "footage" / "text" / "frames").glob("*.jpg"))
    try:
        detector = TextDetector(threads=1)
    except TextModelMissing:
        return None
    pictures = []
    for path in frames:
        image = cv2.imread(str(path))
        if image is not None:
            rgb = np.ascontiguousarray(image[:, :, ::-1])
            pictures.append(cv2.resize(rgb, (1280, 720), interpolation=cv2.INTER_LINEAR))
    if not pictures:
        return None
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    shrink: list[float] = []
    detect: list[float] = []
    for k in range(calls):
        picture = pictures[k % len(pictures)]
        started = time.thread_time()
        small = shrink_for_text(picture)
        shrink.append(time.thread_time() - started)
        started = time.thread_time()
        detector.measure(small)
        detect.append(time.thread_time() - started)
    cv2.setNumThreads(cv_threads)
    return {
        "input": "1280x720, one frame a second, one core",
        "shrink_ms": _percentiles(shrink),
        "detect_ms": _percentiles(detect),
        # Seconds of CPU per second of video.
        "core_share": round(float(np.median(detect) + np.median(shrink)), 4),
    }
