"""`moodscore render` end to end: real video in, real pyo audio out, heard as a listener would."""

from __future__ import annotations

import json
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import soundfile

from daemon.app import build_core, build_session
from daemon.cli import main
from daemon.config import load_config
from daemon.engine import choose_backend
from daemon.sources import open_source
from tests.clips import write_clip

pytestmark = pytest.mark.slow

SECONDS = 60.0


def _calm_then_busy(t: float) -> float:
    return 0.05 if t < SECONDS / 2 else 0.95


@pytest.fixture(scope="module")
def calm_busy_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "calm_busy.mp4"
    return write_clip(path, duration=SECONDS, intensity=_calm_then_busy)


@pytest.fixture(scope="module")
def rendered(calm_busy_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("render")
    video, timeline = out / "scored.mp4", out / "scored.json"
    code = main(
        [
            "render",
            str(calm_busy_clip),
            "-o",
            str(video),
            "--timeline",
            str(timeline),
            "--seed",
            "5",
        ]
    )
    assert code == 0
    return video, timeline


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
    return np.concatenate(chunks, axis=1).mean(axis=0), rate


def test_render_writes_h264_video_and_aac_audio_of_the_clip_length(
    rendered: tuple[Path, Path],
) -> None:
    video, _ = rendered
    with av.open(str(video)) as container:
        (video_stream,) = container.streams.video
        (audio_stream,) = container.streams.audio
        assert video_stream.codec_context.name == "h264"
        assert audio_stream.codec_context.name == "aac"
        assert video_stream.frames == int(SECONDS * 30)
    audio, rate = _decode_audio(video)
    # AAC's encoder priming adds up to one 1024-sample frame; the score itself is exact.
    assert len(audio) / rate == pytest.approx(SECONDS, abs=0.1)
    assert np.sqrt(np.mean(audio**2)) > 0.01


def test_busy_half_gets_faster_music_with_more_layers(rendered: tuple[Path, Path]) -> None:
    _, timeline_path = rendered
    document = json.loads(timeline_path.read_text())
    assert document["seed"] == 5
    windows = document["windows"]
    assert len(windows) == int(SECONDS / 0.5)
    calm = [w for w in windows if 10 <= w["t_start"] < SECONDS / 2]
    busy = [w for w in windows if w["t_start"] >= SECONDS / 2 + 10]
    assert np.mean([w["arousal"] for w in busy]) > np.mean([w["arousal"] for w in calm]) + 0.5
    assert min(w["bpm"] for w in busy) > max(w["bpm"] for w in calm) + 30
    assert min(w["layers"] for w in busy) > max(w["layers"] for w in calm)
    assert timeline_path.with_suffix(".png").exists()


def test_busy_half_sounds_faster_and_fuller(rendered: tuple[Path, Path]) -> None:
    video, timeline_path = rendered
    audio, rate = _decode_audio(video)
    windows = json.loads(timeline_path.read_text())["windows"]
    calm_bpm = np.median([w["bpm"] for w in windows if 10 <= w["t_start"] < 30])
    busy_bpm = np.median([w["bpm"] for w in windows if w["t_start"] >= 40])

    def section(start: float, end: float) -> np.ndarray:
        return audio[int(start * rate) : int(end * rate)].astype(np.float32)

    calm, busy = section(12, 30), section(42, 60)
    calm_onsets = len(librosa.onset.onset_detect(y=calm, sr=rate)) / 18
    busy_onsets = len(librosa.onset.onset_detect(y=busy, sr=rate)) / 18
    assert busy_onsets > 1.5 * calm_onsets
    # The beat librosa hears in the busy half is the tempo the conductor chose there, to 4 %.
    # The prior (start_bpm) only picks the octave: the estimate itself comes from the audio.
    heard = float(librosa.feature.tempo(y=busy, sr=rate, start_bpm=busy_bpm)[0])
    assert heard == pytest.approx(busy_bpm, rel=0.04)
    assert busy_bpm > calm_bpm + 30


@pytest.mark.asyncio
async def test_same_input_and_seed_give_the_same_notes(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", duration=12.0, intensity=lambda t: min(1.0, t / 10))
    config = load_config(None, environ={}, use_user_file=False).replace("composer", seed=11)

    async def render_notes(seed_config: object) -> list[object]:
        source = open_source(str(clip), config.source, paced=False)
        core = build_core(config, backend=choose_backend("auto", render=True), render=True)
        session = build_session(config, core, source=source, outputs=[], render=True, duration=None)
        report = await session.run()
        assert report.audio_seconds == pytest.approx(12.0, abs=1e-3)
        return [(s.bar, s.plan, s.chord, s.notes) for s in report.scores]

    first = await render_notes(config)
    second = await render_notes(config)
    assert first == second
    assert len(first) >= 4


def _steady_stretches(bars: list[dict], end: float) -> list[tuple[float, float, float]]:
    """(start, end, bpm) of each run of bars at one tempo in a timeline, without the run's
    first bar when a tempo ramp leads into it (every run but the first)."""
    stretches = []
    first = 0
    for k in range(1, len(bars) + 1):
        if k == len(bars) or bars[k]["bpm"] != bars[first]["bpm"]:
            steady = first if first == 0 else first + 1
            if steady < k:
                stop = bars[k]["audio_time"] if k < len(bars) else end
                stretches.append((bars[steady]["audio_time"], stop, bars[first]["bpm"]))
            first = k
    return stretches


def test_demo_render_tempo_follows_the_scene(tmp_path: Path) -> None:
    """The demo moves calm -> intense -> calm; librosa hears each steady stretch at the tempo
    the timeline says was planned, to 4 %. (64 s: the demo's calm runs from 48 s into the next
    cycle, so the music has settled after its slow release with seconds to spare.)"""
    wav, timeline = tmp_path / "demo.wav", tmp_path / "demo.json"
    args = ["render", "demo", "-o", str(wav), "--duration", "64", "--timeline", str(timeline)]
    assert main(args) == 0
    audio, rate = soundfile.read(str(wav), dtype="float32")
    mono = audio.mean(axis=1)
    stretches = _steady_stretches(json.loads(timeline.read_text())["bars"], len(mono) / rate)
    calm_start, calm_end = stretches[0], stretches[-1]
    intense = max(stretches, key=lambda s: (s[2], s[1] - s[0]))
    assert calm_start[0] == 0.0 and calm_end[1] == pytest.approx(64.0)
    for start, end, bpm in (calm_start, intense, calm_end):
        assert end - start >= 3.0, stretches
        piece = mono[int(start * rate) : int(end * rate)]
        onset_env = librosa.onset.onset_strength(y=piece, sr=rate)
        # The prior only picks the octave (a lone lead in 8ths reads as double time without
        # it); the estimate comes from the audio.
        heard = float(librosa.feature.tempo(onset_envelope=onset_env, sr=rate, start_bpm=bpm)[0])
        assert heard == pytest.approx(bpm, rel=0.04), (start, end, bpm, heard)
    # The scene's intensity moves the tempo by much more than a nudge (66-168 bpm preset).
    assert intense[2] > calm_start[2] + 50 and intense[2] > calm_end[2] + 50, stretches
