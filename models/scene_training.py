"""Training and evaluation of the scene model on clips (pure torch + numpy, no I/O).

Two stages, because a CNN-GRU trained end to end costs eight frame passes per window and this
runs on two shared CPU cores:

1. **CNN** through the single-frame heads: frames drawn at random, balanced over classes, each
   with the frame before it (the motion reference). Augmented with a random crop of 75-100 % of
   each side (zoom and aspect vary, as captures of other games and 16:9 screens do), a
   horizontal flip, brightness/contrast, saturation and colour-cast jitter, the same for a
   frame and its reference.
2. **GRU and window heads** on the frozen CNN's embeddings of every stored frame (computed
   once, exactly as streaming inference computes them), over windows of ``frames`` embeddings,
   with Gaussian noise on the embeddings against over-fitting.

Targets of a frame or window describe its last :data:`LABEL_FRAMES` frames (half a second), the
part the music should follow now. Losses: cross-entropy on the class (weights 1/sqrt(class
share), label smoothing 0.05) plus the mean squared error of arousal and valence where the clip
has targets. A user's model fine-tuned from the default one (``teacher``) learns the default
model's arousal and valence on its footage where the footage has none (distillation, at both
stages), so a new class set does not forget intensity.

Evaluation reads windows every ``stride`` frames of whole held-out clips: accuracy, per-class
recall, the confusion matrix, and Spearman's rank correlation between predicted arousal and the
mean number of visible monsters over the window's last half second.

This module stays whole (about 540 lines): training picks its epoch by the evaluation, and both
must cut windows, cues and targets from clips exactly the same way, so they share these helpers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from models.scene import SceneNet, SceneNetConfig, model_input, window_inputs
from models.scene_cues import clip_cues
from models.scene_data import Clip, window_target

LABEL_FRAMES = 4  # half a second at 8 fps: the stretch a window's targets describe


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """How long and how hard to train.

    cnn_epochs, cnn_steps, cnn_batch : stage 1 (frames per step: ``cnn_batch``);
    gru_epochs, gru_steps, gru_batch : stage 2 (windows per step: ``gru_batch``);
    lr : peak learning rate of both stages (one-cycle); weight_decay : AdamW's;
    affect_weight : weight of the arousal/valence loss beside the class loss;
    augment : crop/flip/jitter the stage-1 frames; seed : all randomness;
    balance_sources : draw each class's frames and windows from its sources (``Clip.source``:
        ``vizdoom``, ``atari``, each game) equally, not in proportion to their frames;
    still_reference : share of stage-1 frames whose motion reference is the frame itself (no
    motion), so that the CNN reads a class from what a picture shows when nothing moves (a
    held screenshot, a stalled renderer), not only from how it moves.
    """

    cnn_epochs: int = 10
    cnn_steps: int = 150
    cnn_batch: int = 96
    gru_epochs: int = 10
    gru_steps: int = 150
    gru_batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    affect_weight: float = 1.0
    augment: bool = True
    seed: int = 0
    balance_sources: bool = False
    still_reference: float = 0.0


@dataclass(slots=True)
class FrameTargets:
    """Per-frame targets of one clip (each describes the frame's last half second)."""

    labels: np.ndarray  # [shape=(n,), dtype=int64], -1 unknown
    affect: np.ndarray  # [shape=(n, 2)], (arousal, valence), NaN where none
    monsters: np.ndarray  # [shape=(n,)], NaN where not known

    @classmethod
    def of(cls, clip: Clip) -> FrameTargets:
        targets = [window_target(clip, i + 1, label_frames=LABEL_FRAMES) for i in range(len(clip))]
        return cls(
            labels=np.array([t.label for t in targets], dtype=np.int64),
            affect=np.array([(t.arousal, t.valence) for t in targets], dtype=np.float32).reshape(
                -1, 2
            ),
            monsters=np.array([t.monsters for t in targets], dtype=np.float32),
        )


def _by_class(
    targets: Sequence[FrameTargets], classes: int, first: int
) -> dict[int, list[tuple[int, int]]]:
    """(clip, frame) pairs per class, for frames at index >= ``first``."""
    pairs: dict[int, list[tuple[int, int]]] = {k: [] for k in range(classes)}
    for c, target in enumerate(targets):
        for i in range(first, len(target.labels)):
            if target.labels[i] >= 0:
                pairs[int(target.labels[i])].append((c, i))
    return pairs


def _by_source(
    pool: dict[int, list[tuple[int, int]]], clips: Sequence[Clip], balance: bool
) -> dict[int, list[list[tuple[int, int]]]]:
    """Each class's pairs split by their clip's source (one list per source), or left whole."""
    if not balance:
        return {k: [pairs] for k, pairs in pool.items()}
    split: dict[int, list[list[tuple[int, int]]]] = {}
    for k, pairs in pool.items():
        groups: dict[str, list[tuple[int, int]]] = {}
        for pair in pairs:
            groups.setdefault(clips[pair[0]].source, []).append(pair)
        split[k] = list(groups.values())
    return split


def _class_weights(pairs: dict[int, list[tuple[int, int]]], classes: int) -> torch.Tensor:
    counts = np.array([len(pairs[k]) for k in range(classes)], dtype=np.float64)
    share = counts / max(1.0, counts.sum())
    weights = np.array([1.0 / math.sqrt(s) if s > 0 else 0.0 for s in share])
    present = weights > 0
    weights[present] /= weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def _augment(pairs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Crop, flip and jitter frames with their references alike, in one batched resample.

    pairs : torch.Tensor [shape=(b, 2, h, w, 3), dtype=uint8] -> the same shape and type, each
    pair showing a random 75-100 % (per side) crop scaled back to the full size.
    """
    b, _, h, w, _ = pairs.shape
    sx = torch.from_numpy(rng.uniform(0.75, 1.0, b)).float()
    sy = torch.from_numpy(rng.uniform(0.75, 1.0, b)).float()
    tx = torch.from_numpy(rng.uniform(-1.0, 1.0, b)).float() * (1 - sx)
    ty = torch.from_numpy(rng.uniform(-1.0, 1.0, b)).float() * (1 - sy)
    flip = torch.from_numpy(np.where(rng.random(b) < 0.5, -1.0, 1.0)).float()
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    theta = theta.repeat_interleave(2, dim=0)
    x = pairs.reshape(b * 2, h, w, 3).permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta, [b * 2, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = torch.from_numpy(rng.uniform(0.8, 1.2, b)).float().repeat_interleave(2)
    offset = torch.from_numpy(rng.uniform(-20, 20, b)).float().repeat_interleave(2)
    x = x * gain[:, None, None, None] + offset[:, None, None, None]
    # Colour: saturation 0.6-1.4 and a cast of +-10 % per channel (other games' palettes).
    saturation = torch.from_numpy(rng.uniform(0.6, 1.4, b)).float().repeat_interleave(2)
    cast = torch.from_numpy(rng.uniform(0.9, 1.1, (b, 3))).float().repeat_interleave(2, dim=0)
    grey = x.mean(dim=1, keepdim=True)
    x = (grey + saturation[:, None, None, None] * (x - grey)) * cast[:, :, None, None]
    out = x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return out.reshape(b, 2, h, w, 3)


def frame_batch(
    clips: Sequence[Clip],
    picks: Sequence[tuple[int, int]],
    config: SceneNetConfig,
    rng: np.random.Generator | None,
    *,
    still_reference: float = 0.0,
) -> torch.Tensor:
    """Network input of single frames ``(clip, index)`` with their motion reference, augmented
    when ``rng`` is given; with ``rng``, a ``still_reference`` share of them is its own
    reference (:class:`TrainSettings`).

    Returns torch.Tensor [shape=(b, 4, height, width)].
    """
    # Drawn only when asked for: the default recipe's random stream stays what it was.
    still = (
        rng.random(len(picks)) < still_reference
        if rng is not None and still_reference > 0
        else np.zeros(len(picks), dtype=bool)
    )
    pairs = torch.from_numpy(
        np.stack(
            [
                clips[c].frames[[i if held else max(0, i - 1), i]]
                for (c, i), held in zip(picks, still, strict=True)
            ]
        )
    )
    if rng is not None:
        pairs = _augment(pairs, rng)
    return model_input(pairs[:, 1:], config, previous=pairs[:, 0])[:, 0]


@torch.inference_mode()
def embed_clip(
    net: SceneNet, clip: Clip, *, device: torch.device | str = "cpu", batch: int = 256
) -> torch.Tensor:
    """Embeddings of every frame of ``clip``, as streaming inference computes them.

    Returns torch.Tensor [shape=(n, embed)] on the CPU.
    """
    net.eval()
    out = []
    for start in range(0, len(clip), batch):
        frames = torch.from_numpy(clip.frames[start : start + batch]).to(device)
        previous = torch.from_numpy(clip.frames[start - 1]).to(device) if start > 0 else None
        out.append(net.embed(model_input(frames, net.config, previous=previous)).cpu())
    return torch.cat(out)


def clip_features(
    net: SceneNet,
    clip: Clip,
    *,
    embeddings: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """What the GRU reads for every frame of ``clip``: the CNN embedding and, for a model with
    picture cues, the cues (computed as a stream computes them).

    Returns torch.Tensor [shape=(n, embed + len(net.config.cues))] on the CPU.
    """
    if embeddings is None:
        embeddings = embed_clip(net, clip, device=device)
    if not net.config.cues:
        return embeddings
    cues = torch.from_numpy(cached_cues(clip))
    return window_inputs(embeddings, cues, net.config)


# frames array id -> (the frames, their cues): training and evaluation ask for the same clips'
# cues many times (stages, ablations); the frames are kept so an id is never reused meanwhile.
_CUE_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def cached_cues(clip: Clip) -> np.ndarray:
    """The picture cues of every frame of ``clip`` [shape=(n, len(CUE_NAMES))], computed once
    per frames array."""
    hit = _CUE_CACHE.get(id(clip.frames))
    if hit is not None and hit[0] is clip.frames:
        return hit[1]
    cues = clip_cues(clip.frames, fps=clip.fps)
    if len(_CUE_CACHE) > 4096:
        _CUE_CACHE.clear()
    _CUE_CACHE[id(clip.frames)] = (clip.frames, cues)
    return cues


@dataclass(slots=True)
class EvalResult:
    """Window-level predictions on held-out clips, and the figures made from them."""

    classes: tuple[str, ...]
    labels: np.ndarray  # [shape=(n,)], -1 unknown
    predicted: np.ndarray  # [shape=(n,)]
    probs: np.ndarray  # [shape=(n, classes)]
    arousal: np.ndarray  # [shape=(n,)] predicted
    target_arousal: np.ndarray  # [shape=(n,)] NaN where none
    monsters: np.ndarray  # [shape=(n,)] NaN where not known
    groups: list[str]

    def subset(self, keep: np.ndarray) -> EvalResult:
        """The windows where ``keep`` [shape=(n,), dtype=bool] is True."""
        return EvalResult(
            classes=self.classes,
            labels=self.labels[keep],
            predicted=self.predicted[keep],
            probs=self.probs[keep],
            arousal=self.arousal[keep],
            target_arousal=self.target_arousal[keep],
            monsters=self.monsters[keep],
            groups=[g for g, k in zip(self.groups, keep, strict=True) if k],
        )

    def metrics(self) -> dict[str, Any]:
        """accuracy, per-class recall, confusion matrix (rows: truth), Spearman, counts."""
        known = self.labels >= 0
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=np.int64)
        for truth, guess in zip(self.labels[known], self.predicted[known], strict=True):
            confusion[truth, guess] += 1
        support = confusion.sum(axis=1)
        recall = {
            name: (round(float(confusion[i, i] / support[i]), 4) if support[i] else None)
            for i, name in enumerate(self.classes)
        }
        present = [r for r in recall.values() if r is not None]
        result: dict[str, Any] = {
            "windows": int(known.sum()),
            "accuracy": round(float(np.trace(confusion) / max(1, confusion.sum())), 4),
            "balanced_accuracy": round(float(np.mean(present)), 4) if present else None,
            "recall": recall,
            "support": {name: int(support[i]) for i, name in enumerate(self.classes)},
            "confusion": confusion.tolist(),
        }
        with_monsters = np.isfinite(self.monsters)
        if with_monsters.sum() >= 3:
            result["spearman_arousal_monsters"] = round(
                spearman(self.arousal[with_monsters], self.monsters[with_monsters]), 4
            )
            result["monster_windows"] = int(with_monsters.sum())
        with_target = np.isfinite(self.target_arousal)
        if with_target.sum() >= 3:
            error = self.arousal[with_target] - self.target_arousal[with_target]
            result["arousal_mae"] = round(float(np.abs(error).mean()), 4)
        return result


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either is constant."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def _windows(embeddings: torch.Tensor, end: int, frames: int) -> torch.Tensor:
    return embeddings[max(0, end - frames) : end]


@torch.inference_mode()
def evaluate(
    net: SceneNet,
    clips: Sequence[Clip],
    *,
    classes: Sequence[str],
    stride: int = LABEL_FRAMES,
    device: torch.device | str = "cpu",
    embeddings: Sequence[torch.Tensor] | None = None,
) -> EvalResult:
    """Read windows ending every ``stride`` frames of whole clips, as streaming inference does
    (the first windows of a clip see fewer frames, as a stream's first second does live).

    embeddings : the clips' GRU inputs when already computed (:func:`clip_features`).
    """
    net.eval()
    t = net.config.frames
    labels, predicted, probs, arousal, target_arousal, monsters, groups = [], [], [], [], [], [], []
    for c, clip in enumerate(clips):
        emb = embeddings[c] if embeddings is not None else clip_features(net, clip, device=device)
        targets = FrameTargets.of(clip)
        ends = list(range(stride, len(clip) + 1, stride))
        full = [e for e in ends if e >= t]
        short = [e for e in ends if e < t]
        outputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if full:
            batch = torch.stack([_windows(emb, e, t) for e in full]).to(device)
            logits, affect = net.heads(batch)
            for j, e in enumerate(full):
                outputs[e] = (logits[j].cpu(), affect[j].cpu())
        for e in short:
            logits, affect = net.heads(_windows(emb, e, t).unsqueeze(0).to(device))
            outputs[e] = (logits[0].cpu(), affect[0].cpu())
        for e in ends:
            logit, affect = outputs[e]
            p = torch.softmax(logit, dim=0).numpy()
            probs.append(p)
            predicted.append(int(p.argmax()))
            labels.append(int(targets.labels[e - 1]))
            arousal.append(float(affect[0]))
            target_arousal.append(float(targets.affect[e - 1, 0]))
            monsters.append(float(targets.monsters[e - 1]))
            groups.append(clip.group)
    k = len(classes)
    return EvalResult(
        classes=tuple(classes),
        labels=np.array(labels, dtype=np.int64),
        predicted=np.array(predicted, dtype=np.int64),
        probs=np.array(probs).reshape(-1, k),
        arousal=np.array(arousal, dtype=np.float64),
        target_arousal=np.array(target_arousal, dtype=np.float64),
        monsters=np.array(monsters, dtype=np.float64),
        groups=groups,
    )


ProgressFn = Callable[[str, int, int, float], None]


def _masked_mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    mask = torch.isfinite(target)
    if not mask.any():
        return None
    return ((out - torch.nan_to_num(target)) ** 2)[mask].mean()


def train(
    net: SceneNet,
    clips: Sequence[Clip],
    *,
    classes: Sequence[str],
    settings: TrainSettings,
    val_clips: Sequence[Clip] = (),
    teacher: SceneNet | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``net`` in place on ``clips`` in two stages (module docstring).

    With ``val_clips``, the stage-2 epoch with the best balanced accuracy on them (ties: lower
    loss) is kept; without, the last. ``progress(stage, step, total_steps, loss)`` is called
    every step.

    Returns
    -------
    dict : per-epoch history of both stages, the best stage-2 epoch, training frames per class.
    """
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    k = len(classes)
    targets = [FrameTargets.of(clip) for clip in clips]
    pairs = _by_class(targets, k, first=0)
    present = [c for c in range(k) if pairs[c]]
    if not present:
        raise ValueError("no labelled frames to train on")
    weights = _class_weights(pairs, k).to(device)
    frame_pool = _by_source(pairs, clips, settings.balance_sources)
    net.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    history: list[dict[str, Any]] = []

    def draw(pool: dict[int, list[list[tuple[int, int]]]], n: int) -> list[tuple[int, int]]:
        chosen = rng.choice(present, size=n)
        picks = []
        for c in chosen:
            # One source: no extra draw, so the default recipe's random stream is unchanged.
            sources = pool[c]
            group = sources[int(rng.integers(len(sources)))] if len(sources) > 1 else sources[0]
            picks.append(group[int(rng.integers(len(group)))])
        return picks

    def one_cycle(params: list[torch.nn.Parameter], steps: int) -> tuple[Any, Any]:
        optimiser = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=settings.lr, total_steps=max(1, steps), pct_start=0.15
        )
        return optimiser, schedule

    # Stage 1: the CNN through the single-frame heads.
    cnn_params = [
        *net.cnn.parameters(),
        *net.frame_classify.parameters(),
        *net.frame_affect.parameters(),
    ]
    total = settings.cnn_epochs * settings.cnn_steps
    optimiser, schedule = one_cycle(cnn_params, total)
    step = 0
    for epoch in range(settings.cnn_epochs):
        net.train()
        started = time.perf_counter()
        losses = []
        for _ in range(settings.cnn_steps):
            picks = draw(frame_pool, settings.cnn_batch)
            x = frame_batch(
                clips,
                picks,
                net.config,
                rng if settings.augment else None,
                still_reference=settings.still_reference,
            ).to(device)
            y = torch.tensor([targets[c].labels[i] for c, i in picks], device=device)
            affect = torch.from_numpy(np.stack([targets[c].affect[i] for c, i in picks])).to(device)
            logits, out = net.frame_heads(net.embed(x))
            if teacher is not None:
                with torch.no_grad():
                    _, taught = teacher.frame_heads(teacher.embed(x))
                affect = torch.where(torch.isfinite(affect), affect, taught)
            loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=0.05)
            mse = _masked_mse(out, affect)
            if mse is not None:
                loss = loss + settings.affect_weight * mse
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(cnn_params, 5.0)
            optimiser.step()
            schedule.step()
            step += 1
            losses.append(float(loss.detach()))
            if progress is not None:
                progress("cnn", step, total, losses[-1])
        record = {
            "stage": "cnn",
            "epoch": epoch,
            "loss": round(float(np.mean(losses)), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        history.append(record)
        if log is not None:
            log(f"cnn epoch {epoch + 1}/{settings.cnn_epochs}: {record}")

    # Stage 2: GRU and window heads over the frozen CNN's embeddings.
    t = net.config.frames
    embeddings = [clip_features(net, clip, device=device) for clip in clips]
    val_embeddings = [clip_features(net, clip, device=device) for clip in val_clips]
    taught_affect: list[torch.Tensor] | None = None
    if teacher is not None:
        taught_affect = []
        for clip in clips:
            teacher_emb = clip_features(teacher, clip, device=device)
            padded = torch.full((len(clip), 2), float("nan"))
            if len(clip) >= t:
                windows = torch.stack(
                    [_windows(teacher_emb, e, t) for e in range(t, len(clip) + 1)]
                )
                with torch.no_grad():
                    _, affect = teacher.heads(windows.to(device))
                padded[t - 1 :] = affect.cpu()
            taught_affect.append(padded)
    window_pairs = _by_class(targets, k, first=t - 1)
    window_pool = _by_source(window_pairs, clips, settings.balance_sources)
    present = [c for c in range(k) if window_pairs[c]]
    if not present:
        raise ValueError(f"clips are shorter than one window ({t} frames)")
    gru_params = [
        *net.gru.parameters(),
        *net.classify.parameters(),
        *net.affect.parameters(),
    ]
    total = settings.gru_epochs * settings.gru_steps
    optimiser, schedule = one_cycle(gru_params, total)
    embed = net.config.embed
    spread = float(torch.cat(embeddings)[:, :embed].std())
    best: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch = settings.gru_epochs - 1
    step = 0
    for epoch in range(settings.gru_epochs):
        net.train()
        started = time.perf_counter()
        losses = []
        for _ in range(settings.gru_steps):
            picks = draw(window_pool, settings.gru_batch)
            x = torch.stack([_windows(embeddings[c], i + 1, t) for c, i in picks]).to(device)
            if settings.augment:
                # Noise on the embeddings only: the cues are measurements, not learnt codes.
                x[..., :embed] += 0.1 * spread * torch.randn_like(x[..., :embed])
            y = torch.tensor([targets[c].labels[i] for c, i in picks], device=device)
            affect = torch.from_numpy(np.stack([targets[c].affect[i] for c, i in picks])).to(device)
            if taught_affect is not None:
                taught = torch.stack([taught_affect[c][i] for c, i in picks]).to(device)
                affect = torch.where(torch.isfinite(affect), affect, taught)
            logits, out = net.heads(x)
            loss = F.cross_entropy(logits, y, weight=weights, label_smoothing=0.05)
            mse = _masked_mse(out, affect)
            if mse is not None:
                loss = loss + settings.affect_weight * mse
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gru_params, 5.0)
            optimiser.step()
            schedule.step()
            step += 1
            losses.append(float(loss.detach()))
            if progress is not None:
                progress("gru", step, total, losses[-1])
        record = {
            "stage": "gru",
            "epoch": epoch,
            "loss": round(float(np.mean(losses)), 4),
            "seconds": round(time.perf_counter() - started, 1),
        }
        if val_clips:
            figures = evaluate(
                net, val_clips, classes=classes, device=device, embeddings=val_embeddings
            ).metrics()
            record["val"] = {
                key: figures.get(key)
                for key in ("accuracy", "balanced_accuracy", "spearman_arousal_monsters")
            }
            score = (figures["balanced_accuracy"] or 0.0, -float(np.mean(losses)))
            if best is None or score > best:
                best = score
                best_epoch = epoch
                best_state = {n: v.detach().clone() for n, v in net.state_dict().items()}
        history.append(record)
        if log is not None:
            log(f"gru epoch {epoch + 1}/{settings.gru_epochs}: {record}")
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {
        "history": history,
        "best_gru_epoch": best_epoch,
        "train_frames": {classes[c]: len(pairs[c]) for c in range(k)},
    }
