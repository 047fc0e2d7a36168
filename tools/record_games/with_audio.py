"""Record OpenArena clips WITH the game's own audio, for game mode's audio cues.

There is no sound card here: SDL's ``disk`` audio driver (``SDL_AUDIODRIVER=disk``,
``SDL_DISKAUDIOFILE``) writes what the game mixes to a raw file at the pace a device would play
it. Every grabbed frame is stamped with the file's size at that moment (cue ``audio_pos``, in
bytes), so the audio under each 1/8 s frame is known however the capture paused. The clip is
recorded by :mod:`tools.record_games.openarena` as usual (same labels), with sound switched on
(``s_initsound 1``, 22050 Hz 16-bit stereo), then written to ``models/footage/audio/`` as the
96x72 footage with a 16 kHz mono AAC track, and its labels JSON beside it.

    .venv/bin/python -m tools.record_games.with_audio --clip dm_oa_dm2_800x600 --seconds 150 \\
        --name oa_dm2_audio
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import REPO_ROOT

from . import __main__ as recorder
from . import openarena

RAW_RATE = 22050
RAW_CHANNELS = 2
OUT = REPO_ROOT / "models" / "footage" / "audio"


def _patch(raw: Path) -> Any:
    plain = openarena.game_session

    @contextlib.contextmanager
    def with_sound(plan: Any, *, argv: list[str], **kwargs: Any) -> Iterator[Any]:
        argv = [*argv, "+set", "s_initsound", "1", "+set", "s_useOpenAL", "0"]
        argv += ["+set", "s_sdlSpeed", str(RAW_RATE), "+set", "s_sdlBits", "16"]
        argv += ["+set", "s_sdlChannels", str(RAW_CHANNELS), "+set", "s_volume", "0.8"]
        env = {"SDL_AUDIODRIVER": "disk", "SDL_DISKAUDIOFILE": str(raw)}
        probe = kwargs.pop("cue_probe", None)

        def stamped() -> dict[str, float]:
            cues = probe() if probe is not None else {}
            cues["audio_pos"] = float(raw.stat().st_size) if raw.exists() else float("nan")
            return cues

        with plain(plan, argv=argv, env=env, cue_probe=stamped, **kwargs) as session:
            yield session

    openarena.game_session = with_sound  # type: ignore[assignment]
    return plain


def build_track(raw: Path, positions: np.ndarray, fps: float = 8.0) -> np.ndarray:
    """The audio under each frame, joined: [shape=(n,), float32, RAW_RATE, mono]."""
    pcm = np.frombuffer(raw.read_bytes(), dtype="<i2")
    pcm = pcm[: pcm.size // RAW_CHANNELS * RAW_CHANNELS].reshape(-1, RAW_CHANNELS)
    mono = pcm.mean(axis=1).astype(np.float32) / 32768.0
    step = round(RAW_RATE / fps)
    pieces = []
    for pos in positions:
        start = 0 if not np.isfinite(pos) else int(pos) // (2 * RAW_CHANNELS)
        piece = mono[start : start + step]
        pieces.append(np.pad(piece, (0, step - piece.size)))
    return np.concatenate(pieces)


def mux(video: Path, audio: np.ndarray, out: Path) -> None:
    """``video`` with ``audio`` (RAW_RATE mono) as a 16 kHz mono AAC track, to ``out``."""
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "a.wav"
        import soundfile

        soundfile.write(wav, audio, RAW_RATE)
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-i",
                str(video),
                "-i",
                str(wav),
                "-c:v",
                "copy",
                "-c:a",
                "aac",
                "-ar",
                "16000",
                "-ac",
                "1",
                "-b:a",
                "32k",
                "-shortest",
                str(out),
            ],
            check=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip", required=True, help="an OpenArena clip plan (openarena.PLANS)")
    parser.add_argument("--seconds", type=float, help="override the clip's length")
    parser.add_argument("--name", required=True, help="file name (no suffix) under --out")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moodscore-oa-audio-") as folder:
        scratch = Path(folder)
        raw = scratch / "game_audio.raw"
        plain = _patch(raw)
        try:
            failures = recorder._record_game(
                openarena, [args.clip], scratch / "footage", None, args.seconds
            )
        finally:
            openarena.game_session = plain
        if failures:
            return 1
        clip = scratch / "footage" / openarena.GAME.split / "openarena" / f"{args.clip}.mp4"
        labels = json.loads(clip.with_suffix(".json").read_text())
        positions = np.asarray(labels["cues"]["audio_pos"], dtype=np.float64)
        track = build_track(raw, positions)
        args.out.mkdir(parents=True, exist_ok=True)
        mux(clip, track, args.out / f"{args.name}.mp4")
        labels["video"] = f"{args.name}.mp4"
        labels["meta"]["audio"] = (
            "OpenArena's own mix (SDL disk driver, 22050 Hz stereo -> 16 kHz mono AAC), aligned "
            "per frame by the audio file's size at each grab"
        )
        labels["meta"]["command"] = (
            f".venv/bin/python -m tools.record_games.with_audio --clip {args.clip} "
            f"--name {args.name}" + (f" --seconds {args.seconds:g}" if args.seconds else "")
        )
        (args.out / f"{args.name}.json").write_text(json.dumps(labels))
        shutil.copy(raw, scratch / "keep.raw")
        print(f"wrote {args.out / args.name}.mp4: {len(positions)} frames with audio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
