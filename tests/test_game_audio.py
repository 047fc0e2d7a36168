"""Game mode hears the game: audio cues, their fusion with the scene model, the file and live
inputs, and moodscore's own music looped back into the capture (it must not move the scene)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from daemon.analysis.game import GameModel
from daemon.analysis.game_audio import GameAudioCues, PlayedAudio
from daemon.cli import main
from daemon.config import load_config
from daemon.errors import SourceError
from daemon.messages import Frame
from daemon.sources.game_audio import FileAudio, LiveCapture, open_capture
from models.audio_cues import AudioCues, SignalCues, SpeechDetector, fuse

FOOTAGE = Path(__file__).resolve().parent.parent / "models" / "footage" / "audio"
VOICED = FOOTAGE / "renpy_tutorial_960x540_voiced.mp4"
FIGHT = FOOTAGE / "oa_dm4_dev.mp4"
CLASSES = ("combat", "exploration", "dialogue", "menu")
# In the voiced tutorial clip: lines read aloud, and the tutorial's menu under its music alone.
SAY_S = [(35.5, 42.5), (50.5, 55.5)]
MENU_S = [(43.0, 49.5)]


def test_every_audio_clip_has_its_labels_picture_and_sound():
    clips = sorted(FOOTAGE.glob("*.json"))
    assert len(clips) >= 9
    for path in clips:
        labels = json.loads(path.read_text())
        with av.open(str(path.with_name(labels["video"]))) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.width, video.height) == (96, 72)
            assert video.frames == labels["frames"]
            assert audio.sample_rate == 16_000
            assert audio.duration is not None and audio.time_base is not None
            seconds = float(audio.duration * audio.time_base)
            assert abs(seconds - labels["frames"] / 8) < 1.0
        assert "audio" in labels["meta"]


def _cues(**kw: float) -> AudioCues:
    values = {"speech": 0.0, "loudness": 0.6, "onsets": 0.0, "low": 0.0, "level_db": -20.0}
    values.update(kw)
    return AudioCues(**values)


def test_fusion_raises_dialogue_on_speech_and_combat_on_loud_transients_never_against_picture():
    probs = np.array([0.3, 0.3, 0.25, 0.15])
    fused, moved = fuse(CLASSES, probs, _cues(speech=0.95))
    assert fused[2] > 0.5 > probs[2] and set(moved) == {"speech"}
    fused, moved = fuse(CLASSES, probs, _cues(loudness=0.95, onsets=1.0))
    assert fused[0] > 0.5 and set(moved) == {"combat"}
    # The picture flatly says "not dialogue": a voice does not make it one.
    flat = np.array([0.05, 0.5, 0.05, 0.4])
    fused, moved = fuse(CLASSES, flat, _cues(speech=1.0))
    assert np.array_equal(fused, flat) and moved == {}
    # Silence (a muted game): nothing speaks, whatever the VAD said.
    fused, moved = fuse(CLASSES, probs, _cues(speech=1.0, level_db=-70.0))
    assert np.array_equal(fused, probs) and moved == {}


def test_signal_cues_count_transients_and_hear_silence():
    rng = np.random.default_rng(440)
    cues = SignalCues()
    silence = np.zeros(8000, dtype=np.float32)
    loud, onsets, _low, level = cues.push(silence)
    assert level < -100 and onsets == 0.0 and loud == 0.0
    # Clicks every 80 ms (12.5 a second) over soft noise: dense transients.
    hits = (0.01 * rng.standard_normal(8000)).astype(np.float32)
    for k in range(0, 8000, 1280):
        hits[k : k + 80] += 0.8 * rng.standard_normal(80).astype(np.float32)
    for _ in range(3):
        loud, onsets, _low, level = cues.push(hits)
    assert onsets >= 0.75 and loud > 0.6
    # A steady hum: loud, no transients, low.
    t = np.arange(8000) / 16000
    hum = (0.5 * np.sin(2 * np.pi * 60 * t)).astype(np.float32)
    _loud, onsets, low, _level = cues.push(hum)
    _loud, onsets, low, _level = cues.push(hum)
    assert onsets <= 0.15 and low > 0.9


def _mean_speech(path: Path, stretches: list[tuple[float, float]]) -> float:
    audio, vad = FileAudio(path), SpeechDetector()
    values = []
    for a, b in stretches:
        vad.reset()
        t = a
        while t + 0.5 <= b:
            samples = audio.window(t, t + 0.5)
            assert samples is not None
            values.append(vad.push(samples))
            t += 0.5
    audio.close()
    return float(np.mean(values))


def test_vad_hears_the_voice_and_not_the_game_music():
    assert _mean_speech(VOICED, SAY_S) > 0.6
    assert _mean_speech(VOICED, MENU_S) < 0.15


@pytest.fixture(scope="module")
def voiced_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """28 s of the voiced tutorial: a menu, lines read aloud, the tutorial menu, lines again."""
    out = tmp_path_factory.mktemp("clip") / "voiced.mp4"
    cut = ["-ss", "28", "-t", "28", "-i", str(VOICED)]
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", str(out)]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *cut, *encode], check=True)
    return out


def test_analyze_hears_the_file_audio_unless_told_not_to(voiced_clip: Path, tmp_path: Path):
    heard, deaf = tmp_path / "heard.json", tmp_path / "deaf.json"
    assert main(["analyze", str(voiced_clip), "-o", str(heard), "--mode", "game"]) == 0
    flag = ["--no-game-audio"]
    assert main(["analyze", str(voiced_clip), "-o", str(deaf), "--mode", "game", *flag]) == 0
    with_audio = json.loads(heard.read_text())["windows"]
    without = json.loads(deaf.read_text())["windows"]
    assert not any("audio_cues" in w for w in without)

    def during(windows: list[dict], stretches: list[tuple[float, float]]) -> list[dict]:
        return [w for w in windows if any(a - 28 <= w["t_start"] < b - 28.5 for a, b in stretches)]

    said = during(with_audio, SAY_S)
    # Most windows of the read lines recorded the speech that spoke and moved dialogue.
    spoke = [w for w in said if "speech" in w.get("audio_cues", {})]
    assert len(spoke) >= 0.7 * len(said)
    assert all(
        w["scene_probs"]["dialogue"] >= v["scene_probs"]["dialogue"] - 1e-6
        for w, v in zip(said, during(without, SAY_S), strict=True)
    )
    # The tutorial menu under its music: no speech spoke.
    quiet = during(with_audio, MENU_S)
    assert sum("speech" in w.get("audio_cues", {}) for w in quiet) <= 1


def test_a_missing_capture_device_is_one_line_and_the_picture_goes_on(caplog):
    with pytest.raises(SourceError) as info:
        open_capture("pulse:no-such-source")
    assert "\n" not in str(info.value)
    cues = GameAudioCues(open_input=lambda: open_capture("pulse:no-such-source"), speech=False)
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    with caplog.at_level(logging.ERROR, logger="moodscore.analysis.game_audio"):
        for k in range(3):
            fused, features = cues.fuse(CLASSES, probs, k * 0.5, k * 0.5 + 0.5)
            assert fused is probs and features == {}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "no-such-source" in errors[0].getMessage()
    assert cues.missing
    cues.close()


def test_cli_flags_set_the_game_audio_keys(monkeypatch: pytest.MonkeyPatch):
    from daemon.cli import _with_mode, build_parser

    parser = build_parser()
    args = parser.parse_args(["run", "--game-audio", "pulse:game.monitor"])
    assert _with_mode(args, load_config(None)).game.audio_device == "pulse:game.monitor"
    args = parser.parse_args(["analyze", "x.mp4", "-o", "t.json", "--no-game-audio"])
    assert _with_mode(args, load_config(None)).game.audio is False


# --------------------------------------------------------------------------- feedback


class _Cable(LiveCapture):
    """A loopback cable into the capture: what goes in comes out of the capture's ring."""

    def __init__(self, now) -> None:
        super().__init__(description="loopback cable", rate=48_000, now=now)

    def put(self, samples: np.ndarray) -> None:
        self._add(samples)


def _frames(path: Path, seconds: float) -> list[Frame]:
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for k, frame in enumerate(container.decode(stream)):
            pts = k / 8.0  # the footage is stored at the model's 8 frames a second
            if pts >= seconds:
                break
            frames.append(Frame(pts=pts, image=frame.to_ndarray(format="rgb24"), index=k))
    return frames


def _read(model: GameModel, frames: list[Frame], seconds: float, step) -> list:
    moods: list = []
    prepared: list = []
    t = 0.5
    for frame in frames:
        while frame.pts >= t:
            step(t)
            moods.append(model.infer(prepared, t - 0.5, t))
            prepared, t = [], t + 0.5
        prepared.append(model.prepare(frame))
    return moods


@pytest.fixture(scope="module")
def own_music(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """12 s of moodscore's own music for a fight (dense drums), rendered by pyo: 48 kHz stereo."""
    import soundfile

    from daemon.app import ComposeRequest, compose

    out = tmp_path_factory.mktemp("music") / "fight.wav"
    config = load_config(None)
    compose(config, ComposeRequest(valence=-0.4, arousal=0.95, bars=6, outputs=(out,), bpm=150))
    audio, rate = soundfile.read(out, dtype="float32", always_2d=True)
    assert rate == 48_000
    return audio


def test_own_music_looped_back_does_not_move_the_scene(own_music: np.ndarray, caplog):
    """The engine's music goes out and, 150 ms later, comes back in through the capture (a
    desktop monitor that hears everything): the scene must read as from the picture alone, and
    one warning must say so. Without the feedback check the same music does move the scene."""
    seconds = 10.0
    frames = _frames(FIGHT, seconds)
    delay = round(0.15 * 48_000)
    block = 480  # 10 ms

    def run(mode: str) -> tuple[list, GameAudioCues | None]:
        clock = [0.0]
        now = lambda: clock[0]  # noqa: E731
        cable = _Cable(now)
        played = PlayedAudio(sample_rate=lambda: 48_000, now=now)
        cues = None
        config = load_config(None).game
        model = GameModel(config=config, device="cpu")
        if mode != "picture":
            guard = played if mode == "guarded" else None
            cues = GameAudioCues(open_input=lambda: cable, played=guard, speech=False)
            model.audio = cues
        sent = [0]

        def step(until: float) -> None:
            # The engine plays blocks up to `until`; the cable carries them back 150 ms late.
            while sent[0] + block <= round(until * 48_000):
                a = sent[0]
                clock[0] = (a + block) / 48_000
                played.listen(own_music[a : a + block], a / 48_000)
                back = own_music[max(0, a - delay) : max(0, a + block - delay)].mean(axis=1)
                cable.put(back if a >= delay else np.zeros(block, dtype=np.float32))
                sent[0] = a + block

        moods = _read(model, frames, seconds, step)
        model.close()
        return moods, cues

    picture, _ = run("picture")
    with caplog.at_level(logging.WARNING, logger="moodscore.analysis.game_audio"):
        guarded, cues = run("guarded")
    unguarded, _ = run("unguarded")
    assert cues is not None
    # From the second window on (the capture needs 0.5 s of music to compare), every window
    # heard the music, dropped the audio, and read exactly as the picture alone.
    later = range(2, len(picture))
    assert cues.feedback_windows >= len(later)
    for i in later:
        assert guarded[i].scene == picture[i].scene
        assert guarded[i].scene_probs == pytest.approx(picture[i].scene_probs, abs=1e-6)
        assert guarded[i].features.get("audio_feedback") == 1.0
    warnings = [r for r in caplog.records if "own music" in r.getMessage()]
    assert len(warnings) == 1
    # The check is what kept it out: unguarded, the fight music pushes towards combat.
    pushed = [m for m in unguarded if "audio_to.combat" in m.features]
    assert pushed
    assert any(
        u.scene_probs["combat"] > p.scene_probs["combat"] + 0.01
        for u, p in zip(unguarded, picture, strict=True)
    )


@pytest.mark.jack
async def test_live_run_on_jack_hearing_its_own_output_warns_and_drops_the_audio(
    monkeypatch: pytest.MonkeyPatch, caplog
):
    """`moodscore run --mode game --game-audio jack:moodscore:output_*` on a dummy jackd: the
    capture is wired to moodscore's own output ports, the worst routing there is. The music
    plays on, every window the capture hears it is read from the picture alone, and one
    warning says how to route it."""
    from daemon.app import LiveRequest, build_live
    from daemon.engine import BackendChoice
    from daemon.sources import open_source
    from tests.jack import dummy_jackd
    from tests.live import live_config, running

    with dummy_jackd(monkeypatch, "moodscore-game-audio", period=256):
        config = live_config(
            analysis={"mode": "game"},
            game={"audio_device": "jack:moodscore:output_*"},
            engine={"backend": "jack"},
            web={"enabled": False},
        )
        source = open_source(str(FIGHT), config.source, paced=True)
        session = build_live(
            config, LiveRequest(duration=None), source, BackendChoice("jack", "test")
        )
        assert session.analysis is not None
        model = session.analysis._model
        assert isinstance(model, GameModel) and model.audio is not None
        with caplog.at_level(logging.WARNING, logger="moodscore.analysis.game_audio"):
            async with running(session):
                import asyncio

                for _ in range(120):
                    await asyncio.sleep(0.1)
                    if any("own music" in r.getMessage() for r in caplog.records):
                        break
        cues = model.audio
        assert cues.windows >= 3 and not cues.missing
        # Most windows heard it (a quiet stretch of the music has nothing to compare).
        assert cues.feedback_windows >= max(3, 0.5 * cues.windows), (cues.windows, cues.last_match)
        warnings = [r for r in caplog.records if "own music" in r.getMessage()]
        assert len(warnings) == 1
