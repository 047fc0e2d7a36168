"""The game-scene model: a small CNN per frame, a GRU over a second of frames, two heads.

Input, per frame, at :data:`~models.scene_data.MODEL_FPS` (8 frames per second, whatever the
source's rate): the picture shrunk to 80x60 RGB, plus one **motion** channel, the absolute grey
difference from the previous sampled frame (1/8 s earlier), so motion means the same for a
30 fps capture card and a 60 fps file. RGB beat HSV in a like-for-like run (model card).

- **CNN** (per frame, shared): four 3x3/5x5 convolutions with batch norm (16-32-48-64
  channels, strides 2-2-2-1) to a 8x10 map, average-pooled to 3x4 (so where things are on
  screen, a text box at the bottom, a centred menu, still counts) and projected to 128 numbers;
- **GRU** (96 units) over the last ``frames`` embeddings (8 = one second);
- **heads** on the GRU's last state: scene class logits (combat, exploration, dialogue, menu
  for the default model; any classes for a user's model) and (arousal, valence) through tanh.

Streaming use (:class:`SceneReader`) embeds each new frame once and re-runs only the GRU per
window, so a window costs a few frame embeddings and one short GRU pass.

The checkpoint is a plain dict (``torch.save``; loaded with ``weights_only=True``): format,
version, the :class:`SceneNetConfig`, the class names, the state dict and a free-form
``metrics`` dict. Pure torch and numpy: no I/O beyond reading the checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.errors import CheckpointError, WeightsNotFound
from models.scene_adapt import window_features
from models.scene_cues import CUE_NAMES, CueTracker, cue_columns
from models.scene_data import MODEL_FPS, SCENE_CLASSES, STORE_HEIGHT, STORE_WIDTH
from models.shipped import weights_path

FORMAT = "moodscore-scene"
VERSION = 1
DEFAULT_WEIGHTS = weights_path("scene_default.pt")
WEIGHTS_DIR = DEFAULT_WEIGHTS.parent
MOTION_GAIN = 4.0  # grey differences are small; scaled so busy motion reaches about 1


@dataclass(frozen=True, slots=True)
class SceneNetConfig:
    """The network's shape and input; stored in every checkpoint.

    height, width : model input size in pixels (frames are stored at 72x96 and shrunk to it).
    frames : frames per window the GRU reads (at ``fps``).
    fps : frames per second the model samples any source at.
    colour : ``"rgb"`` or ``"hsv"`` picture channels (plus the motion channel either way).
    channels : CNN widths; embed : per-frame embedding size; hidden : GRU units.
    cues : names of the per-frame picture cues (:mod:`models.scene_cues`) the GRU reads beside
        each embedding; empty: none (models written before the cues existed).
    """

    height: int = 60
    width: int = 80
    frames: int = 8
    fps: float = MODEL_FPS
    colour: str = "rgb"
    channels: tuple[int, int, int, int] = (16, 32, 48, 64)
    embed: int = 128
    hidden: int = 96
    cues: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["channels"] = list(self.channels)
        data["cues"] = list(self.cues)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneNetConfig:
        values = dict(data)
        if "channels" in values:
            values["channels"] = tuple(values["channels"])
        if "cues" in values:
            values["cues"] = tuple(values["cues"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def _block(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SceneNet(nn.Module):
    """CNN per frame + GRU over the window + class and affect heads (module docstring).

    Parameters
    ----------
    config : the network's shape.
    classes : number of scene classes.
    """

    def __init__(self, config: SceneNetConfig, classes: int) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3, c4 = config.channels
        self.cnn = nn.Sequential(
            _block(4, c1, 5, 2),
            _block(c1, c2, 3, 2),
            _block(c2, c3, 3, 2),
            _block(c3, c4, 3, 1),
            nn.AdaptiveAvgPool2d((3, 4)),
            nn.Flatten(),
            nn.Linear(c4 * 12, config.embed),
            nn.ReLU(inplace=True),
        )
        self.gru = nn.GRU(config.embed + len(config.cues), config.hidden, batch_first=True)
        self.classify = nn.Linear(config.hidden, classes)
        self.affect = nn.Linear(config.hidden, 2)
        # Single-frame heads: the CNN is trained through them first (stage 1), and a user's
        # fine-tuning distils the default model's per-frame arousal/valence through them.
        self.frame_classify = nn.Linear(config.embed, classes)
        self.frame_affect = nn.Linear(config.embed, 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings.

        x : torch.Tensor [shape=(n, 4, height, width)], from :func:`model_input`.
        Returns torch.Tensor [shape=(n, embed)].
        """
        out: torch.Tensor = self.cnn(x)
        return out

    def heads(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits [shape=(b, classes)] and (arousal, valence) [shape=(b, 2)] in [-1, 1]
        from a window of embeddings and cues [shape=(b, t, embed + len(config.cues))]
        (:func:`window_inputs`)."""
        state = self.state(embeddings)
        return self.classify(state), torch.tanh(self.affect(state))

    def state(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The GRU's last state [shape=(b, hidden)] over a window [shape=(b, t, ...)], as
        :meth:`heads` reads it (a taught per-game head reads it too)."""
        _, hidden = self.gru(embeddings)
        last: torch.Tensor = hidden[-1]
        return last

    def frame_heads(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-frame class logits and (arousal, valence) from embeddings [shape=(n, embed)]."""
        return self.frame_classify(embeddings), torch.tanh(self.frame_affect(embeddings))

    def forward(
        self, x: torch.Tensor, cues: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x : torch.Tensor [shape=(b, t, 4, height, width)], cues [shape=(b, t, len(cues))]
        -> (logits, affect)."""
        b, t = x.shape[:2]
        embeddings = self.embed(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1)
        return self.heads(window_inputs(embeddings, cues, self.config))


def window_inputs(
    embeddings: torch.Tensor, cues: torch.Tensor | None, config: SceneNetConfig
) -> torch.Tensor:
    """What the GRU reads per frame: the embedding, then the model's cues (when it has any).

    embeddings : [shape=(..., embed)]; cues : [shape=(..., len(CUE_NAMES))], every cue of
    :mod:`models.scene_cues` (the model's own are picked out), or None for a model without cues.
    """
    if not config.cues:
        return embeddings
    if cues is None:
        raise ValueError("this scene model reads picture cues; pass them")
    picked = cues[..., cue_columns(config.cues)].to(embeddings.dtype)
    return torch.cat((embeddings, picked), dim=-1)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """rgb [shape=(..., 3, h, w)] in [0, 1] -> hsv in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb.unbind(-3)
    high, _ = rgb.max(-3)
    low, _ = rgb.min(-3)
    delta = high - low
    safe = torch.where(delta > 1e-6, delta, torch.ones_like(delta))
    hue = torch.where(
        high == r,
        ((g - b) / safe) % 6,
        torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    hue = torch.where(delta > 1e-6, hue / 6.0, torch.zeros_like(hue))
    saturation = torch.where(
        high > 1e-6, delta / torch.clamp(high, min=1e-6), torch.zeros_like(high)
    )
    return torch.stack((hue, saturation, high), dim=-3)


@functools.lru_cache(maxsize=32)
def _area_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """[shape=(size_out, size_in)]: each output pixel averages the input span it covers
    (fractional overlap at the edges), which is exactly cv2's INTER_AREA when shrinking."""
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    scale = size_in / size_out
    for o in range(size_out):
        low, high = o * scale, (o + 1) * scale
        for i in range(int(np.floor(low)), min(size_in, int(np.ceil(high)))):
            matrix[o, i] = min(high, i + 1) - max(low, i)
    matrix /= matrix.sum(axis=1, keepdims=True)
    return torch.from_numpy(matrix)


def _shrink(x: torch.Tensor, config: SceneNetConfig) -> torch.Tensor:
    # Area averaging as two small matrix products: the same result as an area resize, and
    # many times faster than torch's adaptive pooling for non-integer ratios.
    height, width = x.shape[-2:]
    if (height, width) == (config.height, config.width):
        return x
    rows = _area_matrix(height, config.height).to(x.device)
    cols = _area_matrix(width, config.width).to(x.device)
    return torch.matmul(torch.matmul(rows, x), cols.T)


def model_input(
    frames: torch.Tensor, config: SceneNetConfig, *, previous: torch.Tensor | None = None
) -> torch.Tensor:
    """Stored frames -> network input: shrink, colour channels, motion channel.

    Parameters
    ----------
    frames : torch.Tensor [shape=(..., t, 72, 96, 3), dtype=uint8], RGB, at the model's fps
        (already cropped when training; any size works, it is resized).
    config : the network's input size and colour space.
    previous : torch.Tensor [shape=(..., 72, 96, 3), dtype=uint8], the frame before the first
        one (its motion reference); None: the first frame has no motion.

    Returns
    -------
    torch.Tensor [shape=(..., t, 4, height, width), dtype=float32].
    """
    lead = frames.shape[:-3]
    x = frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
    x = _shrink(x, config)
    x = x.reshape(*lead, 3, config.height, config.width)
    grey = 0.299 * x[..., 0, :, :] + 0.587 * x[..., 1, :, :] + 0.114 * x[..., 2, :, :]
    if previous is not None:
        p = previous.reshape(-1, *previous.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        p = _shrink(p, config)
        p = p.reshape(*lead[:-1], 3, config.height, config.width)
        first = 0.299 * p[..., 0, :, :] + 0.587 * p[..., 1, :, :] + 0.114 * p[..., 2, :, :]
        before = torch.cat((first.unsqueeze(-3), grey[..., :-1, :, :]), dim=-3)
        motion = (grey - before).abs()
    else:
        motion = torch.zeros_like(grey)
        motion[..., 1:, :, :] = (grey[..., 1:, :, :] - grey[..., :-1, :, :]).abs()
    motion = torch.clamp(motion * MOTION_GAIN, 0.0, 1.0)
    colour = _rgb_to_hsv(x) if config.colour == "hsv" else x
    return torch.cat((colour - 0.5, motion.unsqueeze(-3)), dim=-3)


def save_checkpoint(
    path: Path,
    net: SceneNet,
    classes: Sequence[str],
    *,
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Write ``net`` with its config, class names and metrics as a scene checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    torch.save(
        {
            "format": FORMAT,
            "version": VERSION,
            "config": net.config.to_dict(),
            "classes": list(classes),
            "state_dict": state,
            "metrics": dict(metrics or {}),
        },
        path,
    )


@dataclass(frozen=True, slots=True)
class LoadedScene:
    """A loaded checkpoint: the network (eval mode), its class names and stored metrics."""

    net: SceneNet
    classes: tuple[str, ...]
    metrics: dict[str, Any]


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> LoadedScene:
    """Read a scene checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    WeightsNotFound
        There is no file at ``path``.
    CheckpointError
        The file is not a torch file, not a scene model, or does not fit the network.
    """
    if not path.is_file():
        raise WeightsNotFound(f"scene model {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a scene model checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a moodscore scene model (no {FORMAT!r} header)")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} was written by a newer moodscore; upgrade to read it")
    config = SceneNetConfig.from_dict(data["config"])
    classes = tuple(str(c) for c in data["classes"])
    net = SceneNet(config, len(classes))
    try:
        net.load_state_dict(data["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not fit the scene network: {exc}") from exc
    net.to(device).eval()
    return LoadedScene(net=net, classes=classes, metrics=dict(data.get("metrics", {})))


@dataclass(frozen=True, slots=True)
class SceneReading:
    """What the model reads from one window.

    probs : class probabilities by name (they sum to 1).
    arousal, valence : in [-1, 1].
    """

    probs: dict[str, float]
    arousal: float
    valence: float

    @property
    def scene(self) -> str:
        """The most probable class."""
        return max(self.probs, key=lambda name: self.probs[name])


class SceneReader:
    """Streaming inference: feed frames as they come, read the last ``frames`` of them.

    Parameters
    ----------
    loaded : a checkpoint from :func:`load_checkpoint` (its network is used in eval mode).
    device : where the network runs.
    """

    def __init__(self, loaded: LoadedScene, device: torch.device | str = "cpu") -> None:
        self.net = loaded.net.to(device).eval()
        self.classes = loaded.classes
        self.config = loaded.net.config
        self.device = torch.device(device)
        self._previous: torch.Tensor | None = None
        self._embeddings: list[torch.Tensor] = []
        self._cues = CueTracker(fps=self.config.fps)
        self._cue_rows: list[np.ndarray] = []
        self._state: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the stream (a new source starts)."""
        self._previous = None
        self._embeddings = []
        self._cues.reset()
        self._cue_rows = []
        self._state = None

    @property
    def cues(self) -> np.ndarray | None:
        """The picture cues averaged over the frames the GRU reads (the last second)
        [shape=(len(CUE_NAMES),)], None before the first frame."""
        return np.mean(self._cue_rows, axis=0) if self._cue_rows else None

    @torch.inference_mode()
    def push(self, frames: np.ndarray) -> None:
        """Embed new frames (in one batch) and keep the last ``config.frames`` embeddings.

        frames : np.ndarray [shape=(n, 72, 96, 3), dtype=uint8], RGB, at the model's fps.
        """
        if len(frames) == 0:
            return
        batch = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = model_input(batch, self.config, previous=self._previous)
        self._previous = batch[-1]
        embeddings = self.net.embed(x)
        self._embeddings.extend(embeddings.unbind(0))
        del self._embeddings[: -self.config.frames]
        self._cue_rows.extend(self._cues.push(frame) for frame in frames)
        del self._cue_rows[: -self.config.frames]

    @torch.inference_mode()
    def read(self) -> SceneReading | None:
        """The reading of the frames pushed so far (None before the first frame)."""
        if not self._embeddings:
            return None
        window = torch.stack(self._embeddings).unsqueeze(0)
        cues = torch.from_numpy(np.stack(self._cue_rows)).unsqueeze(0).to(window.device)
        state = self.net.state(window_inputs(window, cues, self.config))
        self._state = state[0]
        logits, affect = self.net.classify(state), torch.tanh(self.net.affect(state))
        probs = torch.softmax(logits[0], dim=0).cpu().numpy()
        arousal, valence = (float(v) for v in affect[0].cpu())
        return SceneReading(
            probs={name: float(p) for name, p in zip(self.classes, probs, strict=True)},
            arousal=arousal,
            valence=valence,
        )

    def features(self) -> np.ndarray | None:
        """The last read window as a taught head's example (:func:`models.scene_adapt.
        window_features`); None before the first :meth:`read`."""
        if self._state is None or self._previous is None or not self._embeddings:
            return None
        return window_features(self._state, self._previous)


@torch.inference_mode()
def clip_windows(
    loaded: LoadedScene, frames: np.ndarray, *, step: int = 4
) -> list[tuple[SceneReading, np.ndarray]]:
    """A whole clip read as :class:`SceneReader` streams it, ``step`` new frames a window (4 =
    0.5 s at 8 fps): each window's reading and example features. The same numbers, many times
    faster: the CNN embeds every frame in one batch (it reads each frame alone; motion against
    the frame before, as when streaming), only the GRU runs per window.

    frames : np.ndarray [shape=(n, 72, 96, 3), dtype=uint8], RGB at the model's fps.
    """
    net, config = loaded.net, loaded.net.config
    if len(frames) == 0:
        return []
    batch = torch.from_numpy(np.ascontiguousarray(frames))
    embeddings = torch.cat(
        [
            net.embed(model_input(batch[i : i + 256], config, previous=batch[i - 1] if i else None))
            for i in range(0, len(batch), 256)
        ]
    )
    tracker = CueTracker(fps=config.fps)
    # A model without cues does not read them (the GRU's input is the embedding alone).
    cue_rows = (
        np.stack([tracker.push(frame) for frame in frames])
        if config.cues
        else np.zeros((len(frames), len(CUE_NAMES)), np.float32)
    )
    out = []
    for end in range(step, len(frames) + step, step):
        end = min(end, len(frames))
        start = max(0, end - config.frames)
        window = embeddings[start:end]
        cues = torch.from_numpy(cue_rows[start:end])
        state = net.state(window_inputs(window.unsqueeze(0), cues.unsqueeze(0), config))
        logits, affect = net.classify(state), torch.tanh(net.affect(state))
        probs = torch.softmax(logits[0], dim=0).numpy()
        reading = SceneReading(
            probs={name: float(p) for name, p in zip(loaded.classes, probs, strict=True)},
            arousal=float(affect[0, 0]),
            valence=float(affect[0, 1]),
        )
        features = window_features(state[0], frames[end - 1])
        out.append((reading, features))
    return out


def store_size() -> tuple[int, int]:
    """(width, height) frames are shrunk to before the model sees them: 96x72."""
    return STORE_WIDTH, STORE_HEIGHT


__all__ = [
    "DEFAULT_WEIGHTS",
    "SCENE_CLASSES",
    "LoadedScene",
    "SceneNet",
    "SceneNetConfig",
    "SceneReader",
    "SceneReading",
    "clip_windows",
    "load_checkpoint",
    "model_input",
    "save_checkpoint",
    "store_size",
    "window_inputs",
]
