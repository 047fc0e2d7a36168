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
    """Frame-mode step clips at 70, 110 and 150 bpm, calm -> intense and intense -> calm."""
    tempos = TEMPOS[1:2] if quick else TEMPOS
    steps: list[Reaction] = []
    with tempfile.TemporaryDirectory(prefix="moodscore-reaction-") as scratch:
        for bpm in tempos:
            for before, after in ((0.0, 1.0), (1.0, 0.0)):
                steps.append(
                    measure_step(config, before=before, after=after, bpm=bpm, scratch=Path(scratch))
                )
    return {
        "method": "first sample differing from the uncut render; activity half-way (1 beat)",
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
