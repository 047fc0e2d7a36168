"""Scene footage as the scene model trains on it: clips of small frames with per-frame labels.

A **clip** is one continuous stretch of one game at the model's frame rate: small RGB frames
plus, per frame, a scene class index and (where the game tells) the number of visible monsters
and arousal/valence targets. Clips are stored as one ``.npz`` each (numpy only, no torch), so
recorders, the trainer and ``moodscore train-scene`` share one format. Windows for training are
cut out of clips; a clip's frames never straddle a train/held-out split, because splits are
made by clip group (a map, a game, a user's video file).

Nothing here imports torch or any I/O library beyond numpy and json.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The default model's classes, named as the scene presets in scenes/ are.
SCENE_CLASSES: tuple[str, ...] = ("combat", "exploration", "dialogue", "menu")

# Frames are stored a little larger than the model sees them, so training can crop and rescale
# (aspect and zoom augmentation) without upsampling.
STORE_HEIGHT, STORE_WIDTH = 72, 96
# The model's frame rate: frames are taken this often from any source, whatever its own rate,
# so motion (the difference of consecutive frames) means the same everywhere.
MODEL_FPS = 8.0


@dataclass(slots=True)
class Clip:
    """One continuous stretch of footage.

    frames : np.ndarray [shape=(n, 72, 96, 3), dtype=uint8], RGB at ``fps``.
    labels : np.ndarray [shape=(n,), dtype=int16], class index into ``classes`` (-1: unknown).
    monsters : np.ndarray [shape=(n,), dtype=float32], visible monsters (NaN: not known).
    arousal, valence : np.ndarray [shape=(n,), dtype=float32], targets in [-1, 1] (NaN: none).
    classes : the class names ``labels`` index.
    group : what splits go by (``"vizdoom/freedoom2/MAP03"``, ``"atari/pong"``, a file name).
    source : where it came from, for reports (``"vizdoom"``, ``"atari"``, ``"user"``).
    meta : anything else a recorder wants to keep (seed, agent, compositing).
    """

    frames: np.ndarray
    labels: np.ndarray
    monsters: np.ndarray
    arousal: np.ndarray
    valence: np.ndarray
    classes: tuple[str, ...]
    group: str
    source: str
    fps: float = MODEL_FPS
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @classmethod
    def empty_targets(
        cls,
        frames: np.ndarray,
        label: int,
        *,
        classes: Sequence[str],
        group: str,
        source: str,
        fps: float = MODEL_FPS,
    ) -> Clip:
        """A clip whose every frame has class ``label`` and no other target."""
        n = int(frames.shape[0])
        nan = np.full(n, np.nan, dtype=np.float32)
        return cls(
            frames=frames,
            labels=np.full(n, label, dtype=np.int16),
            monsters=nan.copy(),
            arousal=nan.copy(),
            valence=nan.copy(),
            classes=tuple(classes),
            group=group,
            source=source,
            fps=fps,
        )


def save_clip(clip: Clip, path: Path) -> None:
    """Write ``clip`` as a compressed ``.npz`` (frames compress about 3x)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "classes": list(clip.classes),
        "group": clip.group,
        "source": clip.source,
        "fps": clip.fps,
        "meta": clip.meta,
    }
    with path.open("wb") as handle:
        np.savez_compressed(
            handle,
            frames=clip.frames,
            labels=clip.labels,
            monsters=clip.monsters,
            arousal=clip.arousal,
            valence=clip.valence,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        )


def load_clip(path: Path) -> Clip:
    """Read a clip written by :func:`save_clip`."""
    with np.load(path) as data:
        header = json.loads(bytes(data["header"]).decode())
        return Clip(
            frames=data["frames"],
            labels=data["labels"].astype(np.int16),
            monsters=data["monsters"].astype(np.float32),
            arousal=data["arousal"].astype(np.float32),
            valence=data["valence"].astype(np.float32),
            classes=tuple(header["classes"]),
            group=str(header["group"]),
            source=str(header["source"]),
            fps=float(header["fps"]),
            meta=dict(header.get("meta", {})),
        )


def load_clips(folder: Path) -> list[Clip]:
    """Every ``*.npz`` clip under ``folder`` (recursively), in path order."""
    return [load_clip(path) for path in sorted(folder.rglob("*.npz"))]


@dataclass(frozen=True, slots=True)
class WindowTarget:
    """What one training window should read as.

    label : the class of the window's last ``label_s`` seconds (majority), -1 when unknown.
    arousal, valence : mean targets over that stretch (NaN when the clip has none).
    monsters : mean visible monsters over that stretch (NaN when not known).
    """

    label: int
    arousal: float
    valence: float
    monsters: float


def window_target(clip: Clip, end: int, *, label_frames: int) -> WindowTarget:
    """The targets of the window whose last frame is ``end - 1`` (see :class:`WindowTarget`).

    The label and targets describe the window's most recent ``label_frames`` frames: the music
    should follow what is on screen now, and the rest of the window is context.
    """
    start = max(0, end - label_frames)
    labels = clip.labels[start:end]
    known = labels[labels >= 0]
    label = int(np.bincount(known).argmax()) if known.size else -1
    return WindowTarget(
        label=label,
        arousal=_nanmean(clip.arousal[start:end]),
        valence=_nanmean(clip.valence[start:end]),
        monsters=_nanmean(clip.monsters[start:end]),
    )


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def resample_indices(times: np.ndarray, fps: float) -> np.ndarray:
    """Indices of the frames to keep so that ``times`` are sampled at ``fps``.

    Parameters
    ----------
    times : np.ndarray [shape=(n,)], rising frame times in seconds.
    fps : the rate to sample at.

    Returns
    -------
    np.ndarray [shape=(m,), dtype=int], for each tick k / fps the last frame at or before it.
    """
    if times.size == 0:
        return np.zeros(0, dtype=np.int64)
    ticks = np.arange(times[0], times[-1] + 1e-9, 1.0 / fps)
    return np.clip(np.searchsorted(times, ticks + 1e-9, side="right") - 1, 0, times.size - 1)
