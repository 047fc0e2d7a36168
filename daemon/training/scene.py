"""``moodscore train-scene``: a scene model for your own game, from folders of clips.

CLIPS_DIR holds one folder per class, named as the class (``combat/``, ``menu/``, ``town/``...);
each holds video files (any FFmpeg format) and/or folders of numbered frames (PNG/JPEG, taken
as consecutive frames at ``--frames-fps``) or loose images (each a still clip). A class folder
may also hold ``.npz`` clips written by the tools recorders. Every clip is read at the model's
8 frames per second and shrunk to 96x72.

Held-out evaluation never shares a clip with training: whole clips are held out per class
(about a fifth, at least one when a class has two or more); a class with a single clip gives
its last fifth. The report (JSON) and a confusion-matrix PNG are written beside the model.

Training starts from the default model (its CNN, GRU and heads), so a few minutes of footage
per class is enough; arousal and valence are distilled from the default model, so a new class
set keeps its intensity reading (see ``models/scene_training.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from daemon.analysis.game import shrink_to_store
from daemon.analysis.video_file import read_video
from daemon.errors import ConfigError, ModelError, SourceError
from models.scene_data import MODEL_FPS, Clip, load_clip

log = logging.getLogger("moodscore.train_scene")

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".flv", ".mpg"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
HOLD_OUT_SHARE = 0.2


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"{path} is not a readable image; remove it from the clips folder")
    return shrink_to_store(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def load_clip_folder(
    root: Path, *, frames_fps: float = MODEL_FPS, still_seconds: float = 3.0
) -> tuple[list[Clip], tuple[str, ...]]:
    """Every clip under ``root``, one sub-folder per class (sorted class names).

    frames_fps : the rate of folders of numbered frames (resampled to the model's rate).
    still_seconds : how long a loose image lasts as a clip.

    Raises
    ------
    ConfigError
        ``root`` is missing, has fewer than two class folders, or a class has no clip.
    """
    if not root.is_dir():
        raise ConfigError(f"clips folder {root} does not exist; make one folder per class in it")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ConfigError(
            f"{root} needs at least two class folders (e.g. combat/ and exploration/), "
            f"found {len(class_dirs)}"
        )
    classes = tuple(p.name for p in class_dirs)
    clips: list[Clip] = []
    for label, folder in enumerate(class_dirs):
        found = 0
        for entry in sorted(folder.iterdir()):
            frames: np.ndarray | None = None
            if entry.is_dir():
                images = sorted(p for p in entry.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if images:
                    stack = np.stack([_read_image(p) for p in images])
                    ticks = np.arange(0.0, len(images) / frames_fps, 1.0 / MODEL_FPS)
                    frames = stack[np.minimum((ticks * frames_fps).astype(int), len(images) - 1)]
            elif entry.suffix.lower() in VIDEO_SUFFIXES:
                frames = read_video(entry)
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                frames = np.repeat(
                    _read_image(entry)[None], max(1, round(still_seconds * MODEL_FPS)), 0
                )
            elif entry.suffix.lower() == ".npz":
                recorded = load_clip(entry)
                frames = recorded.frames
            if frames is None:
                continue
            clip = Clip.empty_targets(
                frames, label, classes=classes, group=f"{folder.name}/{entry.name}", source="user"
            )
            clips.append(clip)
            found += 1
        if not found:
            raise ConfigError(
                f"class folder {folder} has no video, frame folder or image; add clips to it"
            )
    return clips, classes


def split_clips(clips: Sequence[Clip], *, seed: int = 0) -> tuple[list[Clip], list[Clip]]:
    """Train and held-out clips: whole clips per class; a class's only clip gives its last
    fifth (see the module docstring)."""
    rng = np.random.default_rng(seed)
    train: list[Clip] = []
    held: list[Clip] = []
    by_class: dict[int, list[Clip]] = {}
    for clip in clips:
        by_class.setdefault(int(clip.labels[0]), []).append(clip)
    for members in by_class.values():
        if len(members) == 1:
            clip = members[0]
            cut = max(1, int(len(clip) * (1 - HOLD_OUT_SHARE)))
            train.append(_slice(clip, 0, cut))
            if cut < len(clip):
                held.append(_slice(clip, cut, len(clip)))
            continue
        order = rng.permutation(len(members))
        n_held = max(1, round(len(members) * HOLD_OUT_SHARE))
        held += [members[i] for i in order[:n_held]]
        train += [members[i] for i in order[n_held:]]
    return train, held


def _slice(clip: Clip, start: int, end: int) -> Clip:
    return Clip(
        frames=clip.frames[start:end],
        labels=clip.labels[start:end],
        monsters=clip.monsters[start:end],
        arousal=clip.arousal[start:end],
        valence=clip.valence[start:end],
        classes=clip.classes,
        group=f"{clip.group}[{start}:{end}]",
        source=clip.source,
        fps=clip.fps,
        meta=dict(clip.meta),
    )


def plot_confusion(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], png: Path, title: str
) -> None:
    """A confusion matrix (rows: truth, columns: predicted; shares per row) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(confusion, dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.1 * len(classes) + 1.8))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j, i, f"{shares[i, j]:.0%}\n({int(counts[i, j])})", ha="center", va="center",
                color="white" if shares[i, j] > 0.5 else "black", fontsize=8,
            )  # fmt: skip
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


@dataclass(frozen=True, slots=True)
class TrainReport:
    """What ``train-scene`` wrote: the model, the report JSON, the confusion PNG, the figures."""

    model: Path
    report: Path
    confusion_png: Path | None
    metrics: dict[str, Any]


def train_scene(
    clips_dir: Path,
    output: Path,
    *,
    base: Path | None,
    device: str = "auto",
    epochs: int = 6,
    steps: int = 60,
    seed: int = 0,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> TrainReport:
    """Train a scene model on ``clips_dir`` and write it to ``output`` (see module docstring).

    base : the checkpoint to start from and distil arousal/valence from (default model when
        None); must exist.
    epochs, steps : per stage.

    Raises
    ------
    ConfigError, SourceError
        The folder layout or a clip is unusable (the message says what to fix).
    ModelError
        The base model does not load, or ``device`` names a GPU torch does not see.
    """
    import torch

    from models.device import resolve_device
    from models.scene import DEFAULT_WEIGHTS, SceneNet, load_checkpoint, save_checkpoint
    from models.scene_training import TrainSettings, evaluate, train

    if output.suffix != ".pt":
        raise ConfigError(f"output {output} must end in .pt")
    clips, classes = load_clip_folder(clips_dir)
    train_clips, held = split_clips(clips, seed=seed)
    log.info(
        "%d clip(s) in %d classes (%s): %d for training, %d held out",
        len(clips), len(classes), ", ".join(classes), len(train_clips), len(held),
    )  # fmt: skip
    torch.set_num_threads(min(2, torch.get_num_threads()))
    # A device torch does not have is a ModelError that already says what to set.
    where = resolve_device(device)
    try:
        teacher = load_checkpoint(base or DEFAULT_WEIGHTS, device=where)
    except ModelError as exc:
        raise ModelError(f"{exc}; pass --base MODEL.pt") from exc
    net = SceneNet(teacher.net.config, len(classes)).to(where)
    # Start from the base model everywhere the shapes agree; the class heads start afresh
    # unless the class names are the base model's own, in the same order.
    state = {
        name: value
        for name, value in teacher.net.state_dict().items()
        if not (name.startswith(("classify.", "frame_classify.")) and classes != teacher.classes)
    }
    net.load_state_dict(state, strict=False)
    settings = TrainSettings(
        cnn_epochs=epochs, cnn_steps=steps, gru_epochs=epochs, gru_steps=steps, seed=seed,
        lr=1e-3,
    )  # fmt: skip
    history = train(
        net,
        train_clips,
        classes=classes,
        settings=settings,
        val_clips=held,
        teacher=teacher.net,
        device=where,
        progress=progress,
    )
    figures = evaluate(net, held, classes=classes, device=where).metrics() if held else {}
    metrics = {
        "held_out": figures,
        "classes": list(classes),
        "clips": {"train": [c.group for c in train_clips], "held_out": [c.group for c in held]},
        "base": str(base or DEFAULT_WEIGHTS),
        **history,
    }
    save_checkpoint(output, net, classes, metrics=metrics)
    report = output.with_suffix(".report.json")
    report.write_text(json.dumps(metrics, indent=1) + "\n")
    png: Path | None = None
    if figures:
        png = output.with_suffix(".confusion.png")
        plot_confusion(
            figures["confusion"], classes, png,
            f"{output.name}: held-out accuracy {figures['accuracy']:.0%}",
        )  # fmt: skip
    return TrainReport(model=output, report=report, confusion_png=png, metrics=metrics)
