"""Teaching the scene model one game: a small head on the general model's frozen features.

The general scene model (:mod:`models.scene`) is never changed. Each 0.5 s analysis window
becomes one **example**: :func:`window_features` of what the model already computed for it
(mean and spread of the last second's CNN embeddings, the mean picture cues, the GRU's last
state), with the scene the user said it shows. A per-game :class:`AdaptedHead`, a logistic
regression over standardised features, learns the user's classes (the built-in four, or a
custom name such as ``boss``) from those examples in well under a second on a CPU.

:func:`adapt` decides whether the head may take over: the last quarter of each class's examples
(by the time they were taught, never random windows: neighbouring windows look alike and would
flatter the head) is held back; a head fitted on the rest must beat the general model's reading
of those held-back windows. The head that is used is then refitted on every example.

Pure torch and numpy, no I/O: the daemon (``daemon/analysis/teach.py``) collects examples,
trains off the event loop and saves the per-game profile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

HELD_BACK = 0.25  # share of each class's examples, the latest taught, held back to judge
MIN_CLASSES = 2
STEPS = 100  # full-batch LBFGS iterations; the loss is convex and small, this converges
# Chosen on games that are not the evaluation's (the issue-19 procedure on the training
# footage of OpenArena, Minetest, Ren'Py and Wesnoth: balanced accuracy on their other minutes
# is flat from 0.03 to 0.3 and falls from 1 up, Minetest 0.96 at 0.1, 0.88 at 1, 0.78 at 3).
# Red Eclipse, the held-out game the figure is reported on, never chose it.
WEIGHT_DECAY = 0.1


THUMB_BLOCK = 8  # the last frame's thumbnail: 8x8-pixel blocks of the 96x72 stored frame


def thumbnail(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """The stored frame [shape=(72, 96, 3), dtype=uint8] as 12x9 block means in [0, 1]
    [shape=(324,)]: a game's fixed screens (a menu, a map, a shop) are the same picture each
    time, which the general model's pooled embedding blurs."""
    pixels = frame.cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    h, w = pixels.shape[0] // THUMB_BLOCK, pixels.shape[1] // THUMB_BLOCK
    blocks = pixels[: h * THUMB_BLOCK, : w * THUMB_BLOCK].astype(np.float32) / 255.0
    return blocks.reshape(h, THUMB_BLOCK, w, THUMB_BLOCK, 3).mean(axis=(1, 3)).reshape(-1)


def window_features(state: torch.Tensor, last_frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """One window's example features: the general model's GRU state (its reading of the last
    second, frames and cues) and the window's last frame as a :func:`thumbnail`.

    state : torch.Tensor [shape=(hidden,)], the GRU's last state.
    last_frame : the window's last stored frame [shape=(72, 96, 3), dtype=uint8].

    Returns np.ndarray [shape=(hidden + 324,), dtype=float32]. (The mean and spread of the
    CNN embeddings were tried too: on Red Eclipse they made the head worse on other minutes,
    0.62 against 0.82 accuracy, by giving it more to overfit with.)
    """
    parts = [state.detach().float().cpu().numpy(), thumbnail(last_frame)]
    return np.concatenate(parts).astype(np.float32)


class AdaptedHead(nn.Module):
    """Standardise, then one linear layer to the taught classes' logits.

    Parameters
    ----------
    features : length of a feature vector (:func:`window_features`).
    classes : the taught scene names, in logit order.
    """

    def __init__(self, features: int, classes: Sequence[str]) -> None:
        super().__init__()
        self.classes = tuple(classes)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        self.linear = nn.Linear(features, len(self.classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [shape=(n, features)] -> logits [shape=(n, classes)]."""
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        scale: torch.Tensor = self.scale  # type: ignore[assignment]
        out: torch.Tensor = self.linear((x - mean) / scale)
        return out

    @torch.inference_mode()
    def probs(self, features: np.ndarray) -> dict[str, float]:
        """Class probabilities of one window's features [shape=(features,)]."""
        x = torch.from_numpy(np.asarray(features, dtype=np.float32)).unsqueeze(0)
        p = torch.softmax(self(x)[0], dim=0).numpy()
        return {name: float(v) for name, v in zip(self.classes, p, strict=True)}

    def to_state(self) -> dict[str, Any]:
        """A plain dict (tensors, strings) that ``torch.load(weights_only=True)`` reads back."""
        return {
            "classes": list(self.classes),
            "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> AdaptedHead:
        """The head :meth:`to_state` wrote."""
        state = data["state_dict"]
        head = cls(int(state["mean"].shape[0]), [str(c) for c in data["classes"]])
        head.load_state_dict(state)
        return head.eval()


def fit_head(
    features: np.ndarray, labels: Sequence[str], classes: Sequence[str], *, seed: int = 0
) -> AdaptedHead:
    """A head fitted on ``features`` [shape=(n, f)] with scene names ``labels`` [n].

    Classes are weighted equally (a minute of combat and ten seconds of menu count alike).
    """
    torch.manual_seed(seed)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    index = {name: i for i, name in enumerate(classes)}
    y = torch.tensor([index[name] for name in labels], dtype=torch.long)
    head = AdaptedHead(x.shape[1], classes)
    head.mean.copy_(x.mean(dim=0))  # type: ignore[operator]
    head.scale.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-3))  # type: ignore[operator]
    counts = torch.bincount(y, minlength=len(classes)).float().clamp_min(1.0)
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (len(classes) * counts))
    params = list(head.linear.parameters())
    optimiser = torch.optim.LBFGS(params, lr=1.0, max_iter=STEPS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        weight = head.linear.weight
        loss = loss_fn(head(x), y) + WEIGHT_DECAY * (weight * weight).sum()
        loss.backward()
        return loss

    head.train()
    optimiser.step(closure)
    return head.eval()


def split_by_time(labels: Sequence[str], *, held_back: float = HELD_BACK) -> np.ndarray:
    """Which examples are held back [shape=(n,), dtype=bool]: per class, the latest taught
    ``held_back`` share (at least one, never all); ``labels`` in the order taught."""
    held = np.zeros(len(labels), dtype=bool)
    for name in set(labels):
        where = [i for i, label in enumerate(labels) if label == name]
        keep = max(1, round(len(where) * held_back)) if len(where) > 1 else 0
        for i in where[len(where) - keep :]:
            held[i] = True
    return held


@dataclass(frozen=True, slots=True)
class Adaptation:
    """What :func:`adapt` found.

    head : fitted on every example (None: fewer than two classes taught).
    classes : the taught classes.
    adapted_accuracy, general_accuracy : on the held-back examples (None without any).
    takes_over : the head beat the general model on them.
    held_back : how many examples judged it; seconds : how long it took.
    """

    head: AdaptedHead | None
    classes: tuple[str, ...]
    adapted_accuracy: float | None
    general_accuracy: float | None
    takes_over: bool
    held_back: int
    seconds: float


def adapt(
    features: np.ndarray, labels: Sequence[str], general: Sequence[str], *, seed: int = 0
) -> Adaptation:
    """Fit a head on taught examples and judge it against the general model.

    features : np.ndarray [shape=(n, f)], in the order taught; labels : their scene names;
    general : the general model's reading of each (its most probable class).
    """
    started = time.perf_counter()
    classes = tuple(sorted(set(labels)))
    if len(classes) < MIN_CLASSES:
        return Adaptation(None, classes, None, None, False, 0, time.perf_counter() - started)
    held = split_by_time(labels)
    train = ~held
    x = np.asarray(features, dtype=np.float32)
    truth = np.asarray(labels)
    adapted_acc: float | None = None
    general_acc: float | None = None
    if held.any() and len(set(truth[train])) == len(classes):
        trial = fit_head(x[train], list(truth[train]), classes, seed=seed)
        with torch.inference_mode():
            logits = trial(torch.from_numpy(x[held]))
        predicted = np.asarray(classes)[logits.argmax(dim=1).numpy()]
        adapted_acc = balanced_accuracy(truth[held], predicted)
        general_acc = balanced_accuracy(truth[held], np.asarray(general)[held])
    takes_over = adapted_acc is not None and general_acc is not None and adapted_acc > general_acc
    head = fit_head(x, list(truth), classes, seed=seed)
    return Adaptation(
        head=head,
        classes=classes,
        adapted_accuracy=adapted_acc,
        general_accuracy=general_acc,
        takes_over=takes_over,
        held_back=int(held.sum()),
        seconds=time.perf_counter() - started,
    )


def adapt_job(features: np.ndarray, labels: list[str], general: list[str]) -> dict[str, Any]:
    """:func:`adapt` as a worker process runs it: plain data in, plain data out (the head as
    :meth:`AdaptedHead.to_state`)."""
    result = adapt(features, labels, general)
    return {
        "head": None if result.head is None else result.head.to_state(),
        "classes": list(result.classes),
        "adapted_accuracy": result.adapted_accuracy,
        "general_accuracy": result.general_accuracy,
        "takes_over": result.takes_over,
        "held_back": result.held_back,
        "seconds": result.seconds,
    }


def warm() -> None:
    """Nothing: a worker process imports this module (torch) while the first batch is taught."""


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean per-class recall over the classes in ``truth`` (a rare class counts as much)."""
    recalls = [float(np.mean(predicted[truth == name] == name)) for name in np.unique(truth)]
    return float(np.mean(recalls)) if recalls else 0.0


__all__ = [
    "Adaptation",
    "AdaptedHead",
    "adapt",
    "adapt_job",
    "balanced_accuracy",
    "fit_head",
    "split_by_time",
    "window_features",
]
