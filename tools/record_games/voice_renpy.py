"""Voice recorded dialogue footage (Ren'Py, Wesnoth): the game's own lines spoken by espeak-ng
over its own music.

Debian's Ren'Py games have no voice acting, and there is no sound card to record their music
from. This tool gives a recorded Ren'Py clip (``models/footage/train/renpy/*.mp4`` and its
labels) the sound a voiced visual novel has, built from real parts, and says so in the labels'
``meta.audio``:

- every ``say`` stretch (lines in the text box, read one after another; Wesnoth: its story
  pages and character messages) is filled with the next dialogue lines of the game's own script
  (Ren'Py: ``script.rpy`` and some of the tutorial's files; Wesnoth: the campaign's first
  scenario's ``story``/``message`` lines), in order, 0.3-0.8 s apart, spoken by Debian's
  espeak-ng (a formant voice: the VAD has to find it as it would a human one; voice and speed
  vary per character), from 0.2 s into the stretch and cut at its end;
- ``choice`` screens stay unvoiced (a voiced game does not read its buttons out);
- under everything, the game's own music (The Question: ``illurock.opus``; the tutorial:
  ``sunflower-slow-drag.ogg``; Wesnoth: ``wanderer.ogg``), looped at about -24 dBFS, the voice
  at about -18 dBFS.

The result goes to ``models/footage/audio/`` (the 96x72 picture, a 16 kHz mono AAC track).

    .venv/bin/python -m tools.record_games.voice_renpy question_1280x720 tutorial_960x540 \
        wesnoth/campaign_two_brothers_1024x768
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from daemon.config import REPO_ROOT

from .with_audio import OUT

RATE = 16_000
FOOTAGE = REPO_ROOT / "models" / "footage" / "train"
WESNOTH = Path("/usr/share/games/wesnoth/1.16/data")
WESNOTH_SAYS = ("story_viewer", "wml_message_left", "wml_message_right")
_WML = re.compile(r'(?:message|story)\s*=\s*_\s*"((?:[^"]|"")+)"', re.S)
GAMES = {
    "question": (
        Path("/usr/share/games/renpy/the_question/game"),
        "illurock.opus",
        ["script.rpy"],
    ),
    "tutorial": (
        Path("/usr/share/games/renpy/demo/game"),
        "sunflower-slow-drag.ogg",
        ["script.rpy", "tutorial_playing.rpy", "tutorial_quickstart.rpy", "indepth_text.rpy"],
    ),
}
_SAY = re.compile(r'^\s*(?:(\w+)\s+)?"((?:[^"\\]|\\.){8,})"\s*$')
VOICES = ["en", "en-us", "en+f3", "en+m3", "en-gb", "en+f2"]


def dialogue_lines(folder: Path, files: list[str]) -> list[tuple[str, str]]:
    """(speaker, text) of every say statement in the script files, in order."""
    lines: list[tuple[str, str]] = []
    for name in files:
        for raw in (folder / name).read_text(errors="replace").splitlines():
            match = _SAY.match(raw)
            if match and not raw.lstrip().startswith(("$", "#", "text", "action")):
                text = re.sub(r"\{[^}]*\}|\[[^]]*\]", "", match.group(2)).replace('\\"', '"')
                if len(text.split()) >= 2:
                    lines.append((match.group(1) or "narrator", text))
    return lines


def wesnoth_lines(campaign: str) -> list[tuple[str, str]]:
    """(speaker, text) of the story pages and messages of a campaign's first scenario."""
    folder = next(
        p for p in (WESNOTH / "campaigns").iterdir() if p.name.lower() == campaign.lower()
    )
    first = sorted((folder / "scenarios").glob("*.cfg"))[0]
    lines = []
    for match in _WML.finditer(first.read_text(errors="replace")):
        text = " ".join(match.group(1).replace('""', '"').split())
        text = re.sub(r"<[^>]*>", "", text)
        if len(text.split()) >= 2:
            lines.append(("speaker", text))
    return lines


def _decode(path: Path, seconds: float, *, loop: bool = False) -> np.ndarray:
    looped = ["-stream_loop", "-1"] if loop else []
    out = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            *looped,
            "-i",
            str(path),
            "-t",
            f"{seconds:.2f}",
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(out, dtype="<f4").copy()


def speak(text: str, voice: str, speed: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "line.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text],
            check=True,
            capture_output=True,
        )
        return _decode(wav, 60.0)


def _at_db(x: np.ndarray, db: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return x if rms < 1e-6 else x * (10 ** (db / 20) / rms)


def voice_clip(clip: str, out: Path) -> Path:
    """Voice ``clip`` (``question_1280x720``, or ``wesnoth/<clip>``); returns the new MP4."""
    game, _, name = clip.rpartition("/")
    game = game or "renpy"
    labels = json.loads((FOOTAGE / game / f"{name}.json").read_text())
    if game == "wesnoth":
        lines = wesnoth_lines(name.removeprefix("campaign_").rsplit("_", 1)[0])
        music = WESNOTH / "core" / "music" / "wanderer.ogg"
        says: tuple[str, ...] = WESNOTH_SAYS
    else:
        folder, music_name, scripts = GAMES[name.split("_")[0]]
        lines, music, says = dialogue_lines(folder, scripts), folder / music_name, ("say",)
    fps = float(labels["fps"])
    seconds = labels["frames"] / fps
    track = _at_db(_decode(music, seconds, loop=True), -24.0)
    track = np.pad(track, (0, max(0, round(seconds * RATE) - track.size)))
    rng = random.Random(clip)
    speakers: dict[str, tuple[str, int]] = {}
    voiced = 0
    k = 0
    for start, end, state, _cls in labels["segments"]:
        if state not in says:
            continue
        # A say stretch holds every line read in a row: voice them one after another.
        a = round((start / fps + 0.2) * RATE)
        b = round(end / fps * RATE)
        while b - a > RATE // 2:
            speaker, text = lines[k % len(lines)]
            k += 1
            voice, speed = speakers.setdefault(speaker, (rng.choice(VOICES), rng.randint(150, 185)))
            piece = _at_db(speak(text, voice, speed), -18.0)[: b - a]
            track[a : a + piece.size] += piece
            voiced += 1
            a += piece.size + round(rng.uniform(0.3, 0.8) * RATE)
    track = np.clip(track, -1.0, 1.0).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{game}_{name}_voiced.mp4"
    with tempfile.TemporaryDirectory() as scratch:
        wav = Path(scratch) / "a.wav"
        import soundfile

        soundfile.write(wav, track, RATE)
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-i",
                str(FOOTAGE / f"{clip}.mp4"),
                "-i",
                str(wav),
                "-c:v",
                "copy",
                "-c:a",
                "aac",
                "-ac",
                "1",
                "-b:a",
                "32k",
                "-shortest",
                str(target),
            ],
            check=True,
        )
    labels["video"] = target.name
    labels["meta"]["audio"] = (
        f"synthetic voice track: {voiced} lines voiced by espeak-ng from the game's own script "
        f"over its dialogue stretches; the game's own music ({music.name}) under everything "
        "(tools/record_games/voice_renpy.py)"
    )
    target.with_suffix(".json").write_text(json.dumps(labels))
    print(f"wrote {target}: {voiced} lines voiced over {seconds:.0f} s")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "clips", nargs="+", help="Ren'Py clip names, or wesnoth/<clip> (models/footage/train)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for clip in args.clips:
        voice_clip(clip, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
