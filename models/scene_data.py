"""Scene footage as the scene model trains on it: clips of small frames with per-frame labels.

A **clip** is one continuous stretch of one game at the model's frame rate: small RGB frames
plus, per frame, a scene class index and (where the game tells) the number of visible monsters
and arousal/valence targets. Clips are stored as one ``.npz`` each (numpy only, no torch), so
recorders, the trainer and ``moodscore train-scene`` share one format. Windows for training are
cut out of clips; a clip's frames never straddle a train/held-out split, because splits are
made by clip group (a map, a game, a user's video file).

Recorded game footage is committed in a second, smaller format (:func:`save_footage`,
:func:`load_footage`): an H.264 video at 96x72 and 8 fps next to a JSON file of labels (the
label state of each stretch, its class, arousal/valence and per-frame cues from the game).

Nothing here imports torch; the footage functions import PyAV (``av``) when called.
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


# ------------------------------------------------------------------------------------------
# Committed footage: H.264 + labels JSON

FOOTAGE_FORMAT = "moodscore-footage/1"
# Constant quality for the committed H.264: at 96x72 a clip of ten minutes is about 1-2 MB.
FOOTAGE_CRF = 26


def _runs(values: Sequence[str]) -> list[tuple[int, int, str]]:
    """Run-length encoding: ``[(start, stop, value), ...]`` over ``values``."""
    runs: list[tuple[int, int, str]] = []
    start = 0
    for index in range(1, len(values) + 1):
        if index == len(values) or values[index] != values[start]:
            runs.append((start, index, values[start]))
            start = index
    return runs


def _float_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 3) for v in values]


def _float_array(values: Sequence[float | None] | None, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan, dtype=np.float32)
    if len(values) != n:
        raise ValueError(f"a per-frame list has {len(values)} values for {n} frames")
    return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


def save_footage(
    clip: Clip,
    video_path: Path,
    *,
    states: Sequence[str],
    state_classes: dict[str, str | None],
    cues: dict[str, np.ndarray] | None = None,
    crf: int = FOOTAGE_CRF,
) -> Path:
    """Write ``clip`` as ``video_path`` (H.264, yuv420p) and its labels as the ``.json`` beside it.

    Parameters
    ----------
    clip : frames [shape=(n, 72, 96, 3), dtype=uint8] and targets; its ``labels`` must be the
        classes ``state_classes`` gives ``states`` (checked).
    states : the label state of each frame (``"main_menu"``, ``"bot_match"``; n names).
    state_classes : the class of each state name, ``None`` for unlabelled states.
    cues : per-frame numbers from the game [shape=(n,)] (visible enemies, health), NaN unknown.
    crf : x264 constant quality (lower: larger and closer to the grabs).

    Returns the labels file's path. Encoding is single-threaded, so the bytes are repeatable.
    """
    import av

    n = len(clip)
    if clip.frames.shape[1:] != (STORE_HEIGHT, STORE_WIDTH, 3) or len(states) != n:
        raise ValueError("footage must be n x 72 x 96 x 3 frames with one state per frame")
    expected = [
        -1 if state_classes[s] is None else clip.classes.index(str(state_classes[s]))
        for s in states
    ]
    if not np.array_equal(np.asarray(expected, dtype=np.int16), clip.labels):
        raise ValueError("clip.labels disagree with the states' classes")
    video_path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(video_path), "w", format="mp4") as container:
        stream = container.add_stream(
            "libx264",
            rate=round(clip.fps),
            options={
                "crf": str(crf),
                "preset": "slow",
                "threads": "1",
                "g": str(int(clip.fps * 10)),
            },
        )
        stream.width, stream.height, stream.pix_fmt = STORE_WIDTH, STORE_HEIGHT, "yuv420p"
        for image in clip.frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    labels: dict[str, Any] = {
        "format": FOOTAGE_FORMAT,
        "video": video_path.name,
        "frames": n,
        "fps": clip.fps,
        "classes": list(clip.classes),
        "group": clip.group,
        "source": clip.source,
        "meta": clip.meta,
        "state_classes": state_classes,
        "segments": [[a, b, s, state_classes[s]] for a, b, s in _runs(list(states))],
    }
    for name in ("arousal", "valence", "monsters"):
        values = getattr(clip, name)
        if np.isfinite(values).any():
            labels[name] = _float_list(values)
    labels["cues"] = {key: _float_list(np.asarray(v)) for key, v in (cues or {}).items()}
    json_path = video_path.with_suffix(".json")
    json_path.write_text(json.dumps(labels, separators=(",", ":")) + "\n")
    return json_path


def load_footage(path: Path) -> Clip:
    """Read committed footage (``clip.mp4`` or its ``clip.json``) written by :func:`save_footage`.

    Frames are decoded to RGB [shape=(n, 72, 96, 3), dtype=uint8]; labels come from the label
    states' classes (-1 where unlabelled); ``monsters`` is the game's count of visible enemies
    where it gave one. ``meta`` keeps the recorder's metadata plus ``states`` (the label state
    of each frame) and ``cues`` (name -> per-frame list, NaN unknown).
    """
    import av

    json_path = path.with_suffix(".json")
    labels = json.loads(json_path.read_text())
    if labels.get("format") != FOOTAGE_FORMAT:
        raise ValueError(f"{json_path} is not {FOOTAGE_FORMAT} footage")
    n = int(labels["frames"])
    with av.open(str(json_path.with_name(labels["video"]))) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(frames) != n:
        raise ValueError(f"{path}: {len(frames)} frames decoded, the labels say {n}")
    classes = tuple(labels["classes"])
    states: list[str] = []
    label_list: list[int] = []
    for start, stop, state, name in labels["segments"]:
        states.extend([state] * (stop - start))
        label_list.extend([-1 if name is None else classes.index(name)] * (stop - start))
    if len(states) != n:
        raise ValueError(f"{json_path}: segments cover {len(states)} of {n} frames")
    meta = dict(labels.get("meta", {}))
    meta["states"] = states
    meta["cues"] = {k: _float_array(v, n).tolist() for k, v in labels.get("cues", {}).items()}
    return Clip(
        frames=np.stack(frames)
        if frames
        else np.zeros((0, STORE_HEIGHT, STORE_WIDTH, 3), np.uint8),
        labels=np.asarray(label_list, dtype=np.int16),
        monsters=_float_array(labels.get("monsters"), n),
        arousal=_float_array(labels.get("arousal"), n),
        valence=_float_array(labels.get("valence"), n),
        classes=classes,
        group=str(labels["group"]),
        source=str(labels["source"]),
        fps=float(labels["fps"]),
        meta=meta,
    )


def load_footage_folder(folder: Path) -> list[Clip]:
    """Every committed footage clip (``*.json`` labels with their video) under ``folder``."""
    return [
        load_footage(path)
        for path in sorted(folder.rglob("*.json"))
        if json.loads(path.read_text()).get("format") == FOOTAGE_FORMAT
    ]


def load_heldout_games(footage: Path) -> dict[str, list[Clip]]:
    """The held-out games' footage (``footage/val/<game>``) by set name ``heldout_<game>``, and,
    with more than one game, all of them as ``heldout_games`` (each game alone lacks some
    classes; together every class is present, so that is the four-class balanced accuracy)."""
    sets: dict[str, list[Clip]] = {}
    folder = footage / "val"
    for game in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        clips = load_footage_folder(game)
        if clips:
            sets[f"heldout_{game.name}"] = clips
    if len(sets) > 1:
        sets["heldout_games"] = [clip for clips in list(sets.values()) for clip in clips]
    return sets
