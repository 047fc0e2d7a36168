"""A video file read as the scene model reads a source: its frames at the model's rate, shrunk.

``train-scene`` reads whole clips with it; ``teach`` with a file (:mod:`daemon.analysis.teach`)
reads the stretch the user marked, as fast as the CPU decodes, instead of playing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from daemon.errors import SourceError
from models.scene_data import MODEL_FPS, STORE_HEIGHT, STORE_WIDTH

if TYPE_CHECKING:
    from models.scene import LoadedScene, SceneReading

WINDOW_S = 0.5  # a file is read in the live analysis's windows (analysis.window_s)
_LOADED: dict[str, Any] = {}  # scene models by path, loaded once per process


def read_video(
    path: Path,
    *,
    fps: float = MODEL_FPS,
    max_seconds: float | None = None,
    start: float = 0.0,
) -> np.ndarray:
    """A video file's frames at ``fps`` from ``start`` seconds (of the file's own time, its
    first frame at 0) up to ``max_seconds``, each tick taking the first frame at or after it,
    shrunk.

    Returns np.ndarray [shape=(n, 72, 96, 3), dtype=uint8].

    Raises
    ------
    SourceError
        The file does not open or decode as video, or has no frame in the stretch.
    """
    import av

    frames: list[np.ndarray] = []
    next_tick = max(0.0, start)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            origin: float | None = None
            for count, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else count / fps
                origin = t if origin is None else origin
                t -= origin
                if max_seconds is not None and t >= max_seconds:
                    break
                if t + 1e-6 < next_tick:
                    continue
                image = shrink_to_store(frame.to_ndarray(format="rgb24"))
                while next_tick <= t + 1e-6:
                    frames.append(image)
                    next_tick += 1.0 / fps
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise SourceError(f"{path} does not decode as video ({exc}); convert it") from exc
    if not frames:
        where = f" after {start:g} s" if start > 0 else ""
        raise SourceError(f"{path} has no video frames{where}")
    return np.stack(frames)


def shrink_to_store(image: np.ndarray) -> np.ndarray:
    """Any RGB frame [shape=(h, w, 3), dtype=uint8] -> the stored 96x72 frame (INTER_AREA)."""
    if image.shape[:2] == (STORE_HEIGHT, STORE_WIDTH):
        return image
    return cv2.resize(image, (STORE_WIDTH, STORE_HEIGHT), interpolation=cv2.INTER_AREA)


def read_windows(
    loaded: LoadedScene, path: Path, *, start: float, seconds: float
) -> tuple[list[tuple[SceneReading, np.ndarray]], float]:
    """``seconds`` of a video file from ``start`` read by the scene model as the live analysis
    reads it (:func:`models.scene.clip_windows`): each whole window's reading and example
    features, and the window length. A second before ``start`` is read too (not returned), so
    the first window sees a full second, as it would live.

    Raises
    ------
    SourceError
        The file does not decode as video, or has nothing after ``start``.
    """
    from models.scene import clip_windows

    config = loaded.net.config
    step = max(1, round(config.fps * WINDOW_S))
    lead = min(start, config.frames / config.fps)
    lead = int(lead * config.fps / step + 1e-6) * step / config.fps  # on the window grid
    frames = read_video(path, fps=config.fps, start=start - lead, max_seconds=start + seconds)
    skip = round(lead * config.fps / step)
    windows = clip_windows(loaded, frames, step=step)[skip:]
    whole = [w for i, w in enumerate(windows) if (skip + i + 1) * step <= len(frames)]
    return whole, step / config.fps


def read_examples(
    model_path: str, path: str, start: float, seconds: float
) -> tuple[np.ndarray, list[str], float]:
    """:func:`read_windows` as the teacher's worker process (or thread) runs it: plain data
    in and out, the scene model loaded once per process. Returns the windows' example
    features [shape=(n, f), dtype=float32], the general model's scene of each, the window
    length in seconds.

    Raises
    ------
    SourceError
        As :func:`read_windows`.
    """
    from models.scene import load_checkpoint

    loaded = _LOADED.get(model_path)
    if loaded is None:
        loaded = _LOADED[model_path] = load_checkpoint(Path(model_path))
    whole, window_s = read_windows(loaded, Path(path), start=start, seconds=seconds)
    features = np.stack([f for _, f in whole]).astype(np.float32) if whole else np.zeros((0, 0))
    return features, [reading.scene for reading, _ in whole], window_s
