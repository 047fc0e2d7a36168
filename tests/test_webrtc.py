"""The WebRTC media path without a browser: the engine's ring buffer, the per-viewer audio track,
and a real aiortc peer receiving the daemon's stream through the real web server."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from daemon.bench.latency import ClickEngine
from daemon.config import VisualsConfig, WebConfig
from daemon.outputs.webrtc import AudioRing, EngineAudioTrack, to_s16
from daemon.web.server import WebServer

SR = 48000
FRAME = 960  # 20 ms at 48 kHz


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
    track = EngineAudioTrack(ring, lambda: origin)
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
    track = EngineAudioTrack(ring, lambda: origin[0])
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
    track = EngineAudioTrack(ring, lambda: None)
    started = time.perf_counter()
    frames = [await track.recv() for _ in range(6)]
    assert time.perf_counter() - started >= 0.09  # paced, not a burst
    assert all(not f.to_ndarray().any() for f in frames)


async def test_a_browser_peer_receives_the_clicks_and_the_visuals() -> None:
    """A real aiortc peer in place of the browser: signalling over HTTP, then media over UDP."""
    engine = ClickEngine(bpm=120.0)
    session = SimpleNamespace(engine=engine, board=SimpleNamespace(history=[]), control=None)
    server = WebServer(
        session=session,
        web_config=WebConfig(host="127.0.0.1", port=0),
        visuals=VisualsConfig(width=320, height=180, fps=15),
    )
    await server.start()
    engine.start()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        tracks: dict[str, asyncio.Future] = {
            "audio": asyncio.get_running_loop().create_future(),
            "video": asyncio.get_running_loop().create_future(),
        }
        pc.on("track", lambda track: tracks[track.kind].set_result(track))
        await pc.setLocalDescription(await pc.createOffer())
        async with aiohttp.ClientSession() as http:
            offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
            async with http.post(f"http://127.0.0.1:{server.port}/api/offer", json=offer) as r:
                assert r.status == 200
                answer = await r.json()
            await pc.setRemoteDescription(RTCSessionDescription(**answer))
            audio_track = await asyncio.wait_for(tracks["audio"], 5)
            video_track = await asyncio.wait_for(tracks["video"], 5)
            chunks = []
            for _ in range(110):  # 2.2 s
                frame = await asyncio.wait_for(audio_track.recv(), 5)
                chunks.append(frame.to_ndarray().reshape(-1, 2)[:, 0])
            picture = await asyncio.wait_for(video_track.recv(), 5)
            async with http.get(f"http://127.0.0.1:{server.port}/api/state") as r:
                state = await r.json()
            async with http.post(
                f"http://127.0.0.1:{server.port}/api/tempo", json={"bpm": 90}
            ) as r:
                assert r.status == 503  # this stand-in session takes no commands
        # The viewer leaves: the daemon lets go of its connection by itself.
        await pc.close()
        for _ in range(50):
            if server.peers.viewers == 0 and server.visuals.producing == 0:
                break
            await asyncio.sleep(0.1)
        left = server.peers.viewers
        producing = server.visuals.producing
    finally:
        await pc.close()
        engine.stop()
        await server.close()
    heard = np.abs(np.concatenate(chunks).astype(np.float64)) / 32768
    onsets = np.flatnonzero(heard > 0.3)
    clicks = [onsets[0]]
    for onset in onsets[1:]:
        if onset - clicks[-1] > 0.1 * SR:
            clicks.append(onset)
    # A click every beat (0.5 s at 120 bpm), arriving evenly: no gaps, no repeats.
    assert len(clicks) >= 3
    assert np.allclose(np.diff(clicks) / SR, 0.5, atol=0.01)
    assert (picture.width, picture.height) == (320, 180)
    assert state["viewers"] == 1 and state["connections"] == 1
    assert left == 0
    assert producing == 0  # nobody watches: the visuals are no longer drawn
