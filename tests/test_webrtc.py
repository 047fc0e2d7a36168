"""The WebRTC media path without a browser: the engine's ring buffer, the per-viewer audio track,
and a real aiortc peer receiving the live daemon's stream through its web server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from daemon.clock import ScheduledCall, call_on_loop
from daemon.outputs.webrtc import AudioRing, EngineAudioTrack, to_s16
from tests.live import build, live_config, running, web_of

SR = 48000
FRAME = 960  # 20 ms at 48 kHz


class OffsetClock:
    """The music clock's timing half (what a track paces by): audio time 0 is heard at
    ``offset()`` on ``time.perf_counter()``; None before the music starts."""

    def __init__(self, offset: Callable[[], float | None]) -> None:
        self.offset = offset

    def wall_time(self, audio_time: float) -> float | None:
        offset = self.offset()
        return None if offset is None else offset + audio_time

    def call_at(
        self, audio_time: float, fn: Callable[[], object], *, loop: asyncio.AbstractEventLoop
    ) -> ScheduledCall:
        call = ScheduledCall(audio_time, fn)
        call_on_loop(loop, call, self.wall_time)
        return call


def _write_blocks(ring: AudioRing, audio: np.ndarray, start_s: float = 0.0) -> None:
    for first in range(0, len(audio), 256):
        ring.write(audio[first : first + 256], start_s + first / SR)


@pytest.fixture
def audio() -> np.ndarray:
    rng = np.random.default_rng(seed=440)
    return (rng.uniform(-0.9, 0.9, size=(2 * SR, 2))).astype(np.float32)


def test_the_ring_gives_back_what_the_engine_wrote_across_the_wrap(audio: np.ndarray) -> None:
    ring = AudioRing(sample_rate=SR, seconds=0.5)
    _write_blocks(ring, audio)
    assert ring.end == len(audio)
    assert ring.gaps == 0
    newest = ring.read(len(audio) - 3000, 3000)
    assert newest is not None and np.array_equal(newest, audio[-3000:])
    assert ring.read(len(audio) - 100, 200) is None  # not written yet
    assert ring.read(0, 100) is None  # overwritten long ago


async def test_a_viewer_gets_contiguous_20ms_frames_of_the_engine_audio(
    audio: np.ndarray,
) -> None:
    ring = AudioRing(sample_rate=SR)
    _write_blocks(ring, audio)
    origin = time.perf_counter() - 1.0  # audio time 1.0 s is sounding now
    track = EngineAudioTrack(ring, OffsetClock(lambda: origin))  # type: ignore[arg-type]
    frames = [await track.recv() for _ in range(10)]
    assert frames[0].pts is not None
    first = round(frames[0].pts)
    assert [f.pts for f in frames] == [first + k * FRAME for k in range(10)]
    assert all(f.sample_rate == SR and f.samples == FRAME for f in frames)
    received = np.concatenate([f.to_ndarray() for f in frames], axis=1)
    # The cursor started on the sample sounding when the first frame was asked for.
    start = np.flatnonzero(
        [np.array_equal(received[:, :64], to_s16(audio[s : s + 32])) for s in range(SR, SR + 4000)]
    )
    assert len(start) == 1
    expected = to_s16(audio[SR + start[0] : SR + start[0] + 10 * FRAME])
    assert np.array_equal(received, expected)
    assert track.silent == 0


async def test_a_stalled_viewer_skips_to_the_present(audio: np.ndarray) -> None:
    ring = AudioRing(sample_rate=SR)
    _write_blocks(ring, audio)
    origin = [time.perf_counter() - 0.5]
    track = EngineAudioTrack(ring, OffsetClock(lambda: origin[0]))  # type: ignore[arg-type]
    await track.recv()
    origin[0] -= 1.0  # a second passed without the viewer asking
    frame = await track.recv()
    present = (time.perf_counter() - origin[0]) * SR
    assert track.skipped >= 45
    # The frame it got is the audio sounding now, not the audio of a second ago.
    data = frame.to_ndarray()
    found = [
        s for s in range(len(audio) - FRAME) if np.array_equal(data, to_s16(audio[s : s + FRAME]))
    ]
    assert len(found) == 1
    assert abs(found[0] - present) < 0.1 * SR


async def test_before_the_engine_clock_runs_a_viewer_hears_paced_silence() -> None:
    ring = AudioRing(sample_rate=SR)
    track = EngineAudioTrack(ring, OffsetClock(lambda: None))  # type: ignore[arg-type]
    started = time.perf_counter()
    frames = [await track.recv() for _ in range(6)]
    assert time.perf_counter() - started >= 0.09  # paced, not a burst
    assert all(not f.to_ndarray().any() for f in frames)


@pytest.mark.slow
@pytest.mark.parametrize("worker_process", [False, True], ids=["in-process", "worker-process"])
async def test_a_peer_receives_the_live_daemons_music_and_visuals(
    tmp_path: Path, worker_process: bool
) -> None:
    """A real aiortc peer in place of the browser, against ``moodscore run``'s own session:
    signalling over HTTP, then media over UDP; what it hears is the music the daemon records.
    The visuals drawn in this process, and in a worker process (``visuals.worker_process``)."""
    visuals = {"width": 320, "height": 180, "fps": 15, "worker_process": worker_process}
    config = live_config(visuals=visuals)
    session = build(config, seconds=20.0, record_dir=tmp_path)
    server = web_of(session)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    async with running(session):
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        tracks: dict[str, asyncio.Future] = {
            "audio": asyncio.get_running_loop().create_future(),
            "video": asyncio.get_running_loop().create_future(),
        }
        pc.on("track", lambda track: tracks[track.kind].set_result(track))
        await pc.setLocalDescription(await pc.createOffer())
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
            async with http.post(f"{base}/api/offer", json=offer) as r:
                assert r.status == 200
                answer = await r.json()
            await pc.setRemoteDescription(RTCSessionDescription(**answer))
            audio_track = await asyncio.wait_for(tracks["audio"], 5)
            video_track = await asyncio.wait_for(tracks["video"], 5)
            chunks = []
            first_frame_audio_time = session.engine.audio_time
            for _ in range(150):  # 3 s
                frame = await asyncio.wait_for(audio_track.recv(), 5)
                chunks.append(frame.to_ndarray().reshape(-1, 2)[:, 0])
            picture = await asyncio.wait_for(video_track.recv(), 5)
            async with http.get(f"{base}/api/state") as r:
                state = await r.json()
        # The viewer leaves: the daemon lets go of its connection by itself.
        await pc.close()
        for _ in range(50):
            if server.peers.viewers == 0 and server.visuals.producing == 0:
                break
            await asyncio.sleep(0.1)
        left = server.peers.viewers
        producing = server.visuals.producing
        workers = server.visuals.workers_started
    await pc.close()
    heard = np.concatenate(chunks).astype(np.float32) / 32768
    match = await asyncio.to_thread(_best_match, tmp_path, heard, first_frame_audio_time)
    assert match > 0.8, f"the received audio matches the recording at {match:.2f} at best"
    assert np.abs(heard).max() > 0.05  # music, not silence
    assert (picture.width, picture.height) == (320, 180)
    assert state["viewers"] == 1 and state["connections"] == 1
    assert state["bar"] is not None and state["audio_time"] > 0
    assert left == 0 and producing == 0
    assert workers == (1 if worker_process else 0)


def _best_match(folder: Path, heard: np.ndarray, audio_time: float) -> float:
    """How well 1.5 s of what the peer heard (Opus is lossy) matches the daemon's recording
    around the audio time it started listening: the best Pearson correlation over lags."""
    from scipy.signal import fftconvolve

    (recording,) = folder.glob("*.wav")
    recorded, rate = soundfile.read(recording, dtype="float64")
    part = heard[rate // 2 : 2 * rate].astype(np.float64)  # past the decoder's start-up
    start = max(0, round((audio_time - 0.5) * rate))
    reference = recorded[start : start + 4 * rate, 0]
    centred = part - part.mean()
    n = len(centred)
    numerator = fftconvolve(reference, centred[::-1], mode="valid")
    sums = np.concatenate([[0.0], np.cumsum(reference)])
    squares = np.concatenate([[0.0], np.cumsum(reference**2)])
    window_sum = sums[n:] - sums[:-n]
    spread = np.sqrt(np.maximum(squares[n:] - squares[:-n] - window_sum**2 / n, 1e-12))
    return float(np.max(numerator / (spread * np.linalg.norm(centred))))
