"""How fast the music answers a cut, measured from rendered audio alone.

A step clip cuts from one picture to another (calm -> intense, intense -> calm) at a known time.
It is rendered twice with the same seed: once with the cut, once without it (the first picture
all along). Renders are deterministic, so the two recordings are identical, sample for sample,
until the music first reacts to the cut; that first difference is the **first audible change**.
**Half done** is when the music's activity (onset strength and loudness over one beat, the
"onset rate" a listener hears) has moved half-way from where the uncut render keeps it to the
level the cut render settles at.

The tempo at the cut is set with a scene preset whose tempo range starts there (70, 110 or 150
bpm), written to a scratch folder (``conductor.preset_dirs``).

**Game mode** steps are cut from real ViZDoom footage (freedoom1 E1M5, recorded by
``tools/record_vizdoom.py``, the game's own count of visible monsters as the label): a stretch of
exploration, then a fight (a rise), or a fight, then exploration (a fall). Here the scene model
reads the picture, so a second picture cannot be "the same but uncut": the control is the *same
clip* rendered with the scene held (its hold time set beyond the clip). Both renders hear the same
readings of intensity, so they are identical until the scene change is heard; what the intensity
alone changes counts in neither, which makes these figures an upper bound of the first change.
Both scene presets are fixed at the step's tempo so "one beat" has one meaning.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from daemon.config import Config

CUT_S = 12.0
CLIP_S = 24.0
# Two renders differ from the first sample whose difference is this loud (dBFS) or louder.
AUDIBLE_DB = -50.0
TEMPOS = (70.0, 110.0, 150.0)


@dataclasses.dataclass(frozen=True)
class Reaction:
    """One step: the tempo at the cut and the two delays, in seconds after the cut (None: the
    music never reacted within the clip)."""

    direction: str
    bpm: float
    first_change_s: float | None
    half_done_s: float | None


def step_intensity(before: float, after: float, cut: float = CUT_S) -> Callable[[float], float]:
    """The demo's intensity: ``before`` until ``cut`` seconds, ``after`` from then on."""
    return lambda t: before if t < cut else after


def first_difference(cut: np.ndarray, control: np.ndarray, rate: int) -> float | None:
    """Seconds of the first 10 ms block where two mono recordings differ audibly."""
    n = min(len(cut), len(control))
    block = rate // 100
    blocks = n // block
    diff = (cut[: blocks * block] - control[: blocks * block]).reshape(blocks, block)
    level = 20 * np.log10(np.sqrt((diff**2).mean(axis=1)) + 1e-12)
    loud = np.flatnonzero(level > AUDIBLE_DB)
    return None if len(loud) == 0 else float(loud[0] * block / rate)


def activity(audio: np.ndarray, rate: int, *, beat_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, activity): onset strength times loudness, averaged over one beat, per 20 ms."""
    import librosa

    hop = rate // 50
    onsets = librosa.onset.onset_strength(y=audio, sr=rate, hop_length=hop)
    rms = librosa.feature.rms(y=audio, frame_length=2 * hop, hop_length=hop)[0]
    n = min(len(onsets), len(rms))
    raw = onsets[:n] * rms[:n]
    width = max(1, round(beat_s * 50))
    smooth = np.convolve(raw, np.ones(width) / width, mode="same")
    return np.arange(n) * hop / rate, smooth


def half_done(
    cut: np.ndarray, control: np.ndarray, rate: int, *, cut_s: float, beat_s: float
) -> float | None:
    """Seconds after ``cut_s`` when the cut render's activity is half-way from the uncut
    render's to the level it settles at (its last 4 s)."""
    times, with_cut = activity(cut, rate, beat_s=beat_s)
    _, without = activity(control, rate, beat_s=beat_s)
    n = min(len(with_cut), len(without))
    times, with_cut, without = times[:n], with_cut[:n], without[:n]
    settled = times > times[-1] - 4.0
    target = with_cut[settled].mean() - without[settled].mean()
    if abs(target) < 1e-9:
        return None
    progress = (with_cut - without) / target
    after = np.flatnonzero((times >= cut_s) & (progress >= 0.5))
    return None if len(after) == 0 else float(times[after[0]] - cut_s)


def _preset(folder: Path, bpm: float) -> str:
    name = f"bench{int(bpm)}"
    high = min(bpm + 40.0, 180.0)
    (folder / f"{name}.toml").write_text(
        f'description = "reaction bench"\nbpm_min = {bpm}\nbpm_max = {high}\n'
        'mode = "valence"\nlayers_min = 1\nlayers_max = 5\n'
    )
    return name


def _render(config: Config, clip: Path, out: Path) -> np.ndarray:
    import soundfile

    from daemon.app import RenderRequest, render

    code = render(config, RenderRequest(input=str(clip), output=out))
    if code != 0:
        raise RuntimeError(f"render of {clip} failed ({code})")
    audio, _ = soundfile.read(out, dtype="float32", always_2d=True)
    return np.asarray(audio.mean(axis=1))


def measure_step(
    config: Config, *, before: float, after: float, bpm: float, scratch: Path
) -> Reaction:
    """Render the step clip ``before`` -> ``after`` (demo intensity 0..1) and its uncut
    control at ``bpm``; the reaction (see the module docstring)."""
    from daemon.sources.demo import write_demo_clip

    presets = scratch / "presets"
    presets.mkdir(exist_ok=True)
    scene = _preset(presets, bpm)
    config = config.replace("conductor", scene=scene, preset_dirs=[str(presets)])
    config = config.replace("analysis", mode="frame").replace("mqtt", enabled=False)
    tag = f"{before:g}-{after:g}-{bpm:g}"
    cut_clip = write_demo_clip(
        scratch / f"cut-{tag}.mp4", duration=CLIP_S, intensity=step_intensity(before, after)
    )
    control_clip = write_demo_clip(
        scratch / f"control-{tag}.mp4", duration=CLIP_S, intensity=lambda _t: before
    )
    with_cut = _render(config, cut_clip, scratch / f"cut-{tag}.wav")
    without = _render(config, control_clip, scratch / f"control-{tag}.wav")
    rate = config.engine.sample_rate
    first = first_difference(with_cut, without, rate)
    beat_s = 60.0 / bpm
    return Reaction(
        direction="rise" if after > before else "fall",
        bpm=bpm,
        first_change_s=None if first is None else round(first - CUT_S, 3),
        half_done_s=_rounded(half_done(with_cut, without, rate, cut_s=CUT_S, beat_s=beat_s)),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def reaction_figures(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """Frame-mode step clips at 70, 110 and 150 bpm, calm -> intense and intense -> calm
    (``quick``: 110 bpm, calm -> intense only)."""
    tempos = TEMPOS[1:2] if quick else TEMPOS
    steps: list[Reaction] = []
    with tempfile.TemporaryDirectory(prefix="moodscore-reaction-") as scratch:
        for bpm in tempos:
            for before, after in ((0.0, 1.0),) if quick else ((0.0, 1.0), (1.0, 0.0)):
                steps.append(
                    measure_step(config, before=before, after=after, bpm=bpm, scratch=Path(scratch))
                )
    return {
        "method": "first sample differing from the uncut render; activity half-way (1 beat)",
        "steps": [dataclasses.asdict(step) for step in steps],
    }


GAME_MAP = ("freedoom1", "E1M5")
GAME_RECORD_S = 24.0  # the map's opening walk (0-10 s) and first fight (10-21 s)
GAME_BEFORE_S = 8.0  # of the first scene, then the cut
GAME_AFTER_S = 12.0  # of the second scene after the cut
MIN_RUN_S = 4.0  # the shortest stretch of one scene a step is cut from
VIDEO_REPEAT = 3  # each 8 fps game frame written three times: a 24 fps capture


def _runs(labels: np.ndarray, wanted: int) -> list[tuple[int, int]]:
    """(start, end) frame index ranges where ``labels`` is ``wanted``, longest first."""
    padded = np.concatenate(([False], labels == wanted, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    runs = list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))
    return sorted(runs, key=lambda run: run[0] - run[1])


def _ping_pong(frames: np.ndarray, n: int) -> np.ndarray:
    """``n`` frames of ``frames`` played forwards, backwards, forwards...: a short stretch of one
    scene made as long as needed, every picture still a real one from that scene."""
    cycle = np.concatenate((frames, frames[::-1])) if len(frames) > 1 else frames
    reps = -(-n // len(cycle))
    return np.concatenate([cycle] * reps)[:n]


def _game_footage() -> tuple[np.ndarray, np.ndarray, float]:
    """(frames, labels, fps) of the recorded ViZDoom map (full 320x240 frames)."""
    import sys

    from daemon.config import REPO_ROOT

    tools = str(REPO_ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from record_vizdoom import record_map

    full: list[np.ndarray] = []
    clip = record_map(*GAME_MAP, seconds=GAME_RECORD_S, seed=1, overlays=False, full_frames=full)
    return np.stack(full), np.asarray(clip.labels), float(clip.fps)


def _game_presets(folder: Path, bpm: float) -> None:
    """The built-in exploration and combat presets, both fixed at ``bpm``."""
    import re

    from daemon.config import SCENES_DIR

    for name in ("exploration", "combat"):
        text = (SCENES_DIR / f"{name}.toml").read_text()
        text = re.sub(r"(?m)^bpm_min = .*$", f"bpm_min = {bpm}", text)
        text = re.sub(r"(?m)^bpm_max = .*$", f"bpm_max = {bpm}", text)
        (folder / f"{name}.toml").write_text(text)


def measure_game_step(
    config: Config,
    footage: tuple[np.ndarray, np.ndarray, float],
    *,
    rise: bool,
    bpm: float,
    scratch: Path,
) -> Reaction:
    """Render a game-mode step (exploration -> combat when ``rise``, else back) cut from
    ``footage``, and the same clip with the scene held; the reaction (module docstring)."""
    from daemon.sources.demo import write_frames_clip
    from models.scene_data import SCENE_CLASSES

    frames, labels, fps = footage
    first, second = ("exploration", "combat") if rise else ("combat", "exploration")
    before_n, after_n = round(GAME_BEFORE_S * fps), round(GAME_AFTER_S * fps)
    stretches = []
    for name in (first, second):
        runs = _runs(labels, SCENE_CLASSES.index(name))
        # The earliest long stretch: the map's opening walk, its first fight.
        long_runs = sorted(r for r in runs if r[1] - r[0] >= MIN_RUN_S * fps)
        if not long_runs:
            raise RuntimeError(f"the {GAME_MAP} footage has no {name} of {MIN_RUN_S:g} s")
        start, end = long_runs[0]
        stretches.append(frames[start:end])
    before = _ping_pong(stretches[0], before_n)
    after = _ping_pong(stretches[1], after_n)
    tag = f"game-{first}-{second}-{bpm:g}"
    clip = write_frames_clip(
        scratch / f"{tag}.mp4", np.concatenate((before, after)), fps=fps, repeat=VIDEO_REPEAT
    )
    presets = scratch / f"presets-{bpm:g}"
    presets.mkdir(exist_ok=True)
    _game_presets(presets, bpm)
    config = config.replace("conductor", scene=first, preset_dirs=[str(presets)])
    config = config.replace("analysis", mode="game").replace("mqtt", enabled=False)
    never = GAME_BEFORE_S + GAME_AFTER_S + 1.0  # longer than the clip
    held = config.replace("conductor", scene_attack_s=never, scene_hold_s=never)
    with_cut = _render(config, clip, scratch / f"{tag}-cut.wav")
    without = _render(held, clip, scratch / f"{tag}-held.wav")
    rate = config.engine.sample_rate
    cut_s = before_n / fps
    first_change = first_difference(with_cut, without, rate)
    return Reaction(
        direction="rise" if rise else "fall",
        bpm=bpm,
        first_change_s=None if first_change is None else round(first_change - cut_s, 3),
        half_done_s=_rounded(half_done(with_cut, without, rate, cut_s=cut_s, beat_s=60.0 / bpm)),
    )


def game_reaction_figures(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """Game-mode steps (real ViZDoom footage) at 70, 110 and 150 bpm, both ways (``quick``:
    110 bpm, into a fight only)."""
    tempos = TEMPOS[1:2] if quick else TEMPOS
    footage = _game_footage()
    steps: list[Reaction] = []
    with tempfile.TemporaryDirectory(prefix="moodscore-reaction-game-") as scratch:
        for bpm in tempos:
            for rise in (True,) if quick else (True, False):
                steps.append(
                    measure_game_step(config, footage, rise=rise, bpm=bpm, scratch=Path(scratch))
                )
    return {
        "method": (
            f"{GAME_MAP[0]} {GAME_MAP[1]} footage cut {GAME_BEFORE_S:g} s into the first scene; "
            "control: the same clip with the scene held"
        ),
        "steps": [dataclasses.asdict(step) for step in steps],
    }


class _StepSource:
    """The demo, paced live, stepping between calm and intense every ``period`` seconds."""

    @staticmethod
    def open(config: Config, *, period: float) -> Any:
        from daemon.sources.base import ThreadedSource
        from daemon.sources.demo import draw_demo_frame

        class StepSource(ThreadedSource):
            def __init__(self) -> None:
                super().__init__(
                    description="stepping demo",
                    fps=config.source.fps,
                    size=(640, 360),
                    duration=None,
                    pace=True,
                )
                self._drawn = 0

            def _read(self) -> tuple[float, np.ndarray]:
                t = self._drawn / self.fps
                self._drawn += 1
                intense = int(t / period) % 2 == 1
                return t, draw_demo_frame(
                    t, intensity=1.0 if intense else 0.0, width=640, height=360
                )

            def _release(self) -> None:
                pass

        return StepSource()


def all_reaction_figures(config: Config, *, quick: bool = False) -> dict[str, Any]:
    """The bench's ``reaction`` section: the rendered frame-mode steps, the game-mode steps and
    the live cut-to-stinger latency."""
    figures = reaction_figures(config, quick=quick)
    try:
        figures["game"] = game_reaction_figures(config, quick=quick)
    except ImportError as exc:
        # ViZDoom comes with the `train` extra (tools/setup.sh installs it).
        figures["game"] = {"skipped": f"needs ViZDoom (the train extra): {exc}"}
    figures["live_cut_to_stinger_ms"] = live_latency(config, seconds=12.0 if quick else 60.0)
    return figures


def live_latency(config: Config, *, seconds: float = 60.0, period: float = 4.0) -> dict[str, Any]:
    """Live (manual backend, paced source): from the arrival of the frame that confirms a cut
    to calm -> intense, to the moment the first sample of the stinger answering it is heard
    (the engine's wall clock for its first note), in ms."""
    import asyncio
    import time

    from daemon.app import LiveRequest, build_live
    from daemon.engine import BackendChoice
    from daemon.messages import Layer
    from daemon.sources.base import TappedSource

    config = config.replace("web", enabled=False).replace("mqtt", enabled=False)
    config = config.replace("midi", enabled=False)
    config = config.replace("conductor", stingers=True, stinger_interval_s=1.0)
    arrivals: dict[float, float] = {}

    async def arrived(frame: Any) -> None:
        arrivals[round(frame.pts, 4)] = time.perf_counter()

    async def measure() -> list[float]:
        source = TappedSource(_StepSource.open(config, period=period), arrived)
        session = build_live(
            config, LiveRequest(duration=seconds), source, BackendChoice("manual", "bench")
        )
        onsets: list[float] = []
        cues: list[dict[str, Any]] = []
        session.engine.add_note_listener(
            lambda notes: onsets.extend(n.time for n in notes if n.note.layer is Layer.STINGER)
        )
        session.control.add_event_listener(lambda name, payload: cues.append(payload))
        await session.run()
        heard = sorted(
            wall for wall in (session.engine.wall_time(t) for t in onsets) if wall is not None
        )
        latencies = []
        for cue in cues:
            if cue["kind"] != "rise" or cue["seen_in"] != "frames":
                continue
            arrival = arrivals.get(round(cue["source_time"], 4))
            if arrival is None:
                continue
            first = next((w for w in heard if w >= arrival - 0.05), None)
            if first is not None:
                latencies.append((first - arrival) * 1000.0)
        return latencies

    latencies = asyncio.run(measure())
    if not latencies:
        return {"cues": 0}
    return {
        "cues": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "max_ms": round(max(latencies), 1),
    }
