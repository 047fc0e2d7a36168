"""Frame sources on real video files, a fake camera and the demo, as the pipeline reads them."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from daemon.config import SourceConfig
from daemon.errors import EndOfStream, SourceError
from daemon.messages import Frame
from daemon.sources import (
    DemoSource,
    FrameSource,
    VideoFileSource,
    WebcamSource,
    draw_demo_frame,
    open_source,
    probe_video,
)
from tests.clips import write_clip
from tests.hardware import hardware_reason

FPS = 30
SIZE = (320, 180)  # not the config default, so a right size comes from the file


def intense(t: float) -> float:
    return 1.0


def half(t: float) -> float:
    return 0.5


async def read_all(source: FrameSource, *, limit: int = 10_000) -> list[Frame]:
    """Every frame up to EndOfStream (and EndOfStream again on the next call)."""
    out: list[Frame] = []
    with pytest.raises(EndOfStream):
        for _ in range(limit):
            out.append(await source.recv())
    with pytest.raises(EndOfStream):
        await source.recv()
    return out


def faststart(src: Path, dst: Path) -> Path:
    """Remux ``src`` with its index (moov) first, as web-ready MP4s are: damage then hits data."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = copy
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def one_second(clips: Path) -> Path:
    return write_clip(clips / "one.mp4", duration=1.0, size=SIZE, intensity=intense)


@pytest.fixture(scope="module")
def with_audio(clips: Path) -> Path:
    path = clips / "audio.mp4"
    return write_clip(path, duration=1.0, size=SIZE, intensity=half, with_audio=True)


@pytest.fixture(scope="module")
def two_seconds(clips: Path) -> Path:
    return write_clip(clips / "two.mp4", duration=2.0, size=SIZE, intensity=half)


# --- video files ----------------------------------------------------------------------------


async def test_a_clip_reads_back_every_frame_in_order_then_ends(one_second: Path) -> None:
    source = VideoFileSource(one_second, paced=False)
    async with source:
        frames = await read_all(source)
    assert len(frames) == FPS
    assert [f.index for f in frames] == list(range(FPS))
    assert np.allclose(np.diff([f.pts for f in frames]), 1 / FPS)
    assert frames[0].pts == 0.0
    for frame in frames:
        assert frame.image.shape == (SIZE[1], SIZE[0], 3)
        assert frame.image.dtype == np.uint8
    assert source.size == SIZE
    assert source.fps == FPS
    assert source.duration == pytest.approx(1.0)
    assert source.description == "video file one.mp4"


async def test_decoded_frames_are_rgb_and_match_what_was_drawn(one_second: Path) -> None:
    source = VideoFileSource(one_second, paced=False)
    async with source:
        frame = await source.recv()
    drawn = draw_demo_frame(0.0, intensity=1.0, width=SIZE[0], height=SIZE[1])
    error = np.abs(frame.image.astype(np.int16) - drawn.astype(np.int16)).mean(axis=(0, 1))
    assert error.max() < 8, error  # H.264 at crf 23; swapped R and B would be far off
    swapped = np.abs(frame.image.astype(np.int16) - drawn[:, :, ::-1].astype(np.int16)).mean()
    assert swapped > 3 * error.max()


@pytest.mark.parametrize("audio", [False, True])
def test_probe_reports_the_file_headers(one_second: Path, with_audio: Path, audio: bool) -> None:
    info = probe_video(with_audio if audio else one_second)
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.fps == FPS
    assert (info.width, info.height) == SIZE
    assert info.codec == "h264"
    assert info.has_audio is audio


def test_probe_of_a_missing_file_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        probe_video(tmp_path / "gone.mp4")


async def test_a_clip_with_audio_still_delivers_only_its_video(with_audio: Path) -> None:
    source = VideoFileSource(with_audio, paced=False)
    async with source:
        frames = await read_all(source)
    assert len(frames) == FPS


async def test_paced_clip_plays_in_real_time(one_second: Path) -> None:
    source = VideoFileSource(one_second, paced=True)
    async with source:
        start = time.monotonic()
        frames = await read_all(source)
        elapsed = time.monotonic() - start
    assert len(frames) == FPS
    assert elapsed >= 0.9


async def test_a_looping_live_file_keeps_time_running_across_the_loop(one_second: Path) -> None:
    source = open_source(str(one_second), SourceConfig(loop=True), paced=True)
    assert source.duration is None  # endless
    frames: list[Frame] = []
    async with source:
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            frames.append(await source.recv())
    pts = np.array([f.pts for f in frames])
    assert pts[-1] > 1.2
    assert np.allclose(np.diff(pts), 1 / FPS)  # no jump back, no hole at the loop point
    assert [f.index for f in frames] == list(range(len(frames)))
    # The frame after the loop point is the first frame again.
    restart = frames[FPS].image.astype(np.int16)
    assert np.abs(restart - frames[0].image).mean() < 1.0
    assert np.abs(restart - frames[FPS - 1].image).mean() > 1.0


async def test_loop_is_ignored_when_not_paced(one_second: Path) -> None:
    source = open_source(str(one_second), SourceConfig(loop=True), paced=False)
    async with source:
        frames = await read_all(source)
    assert len(frames) == FPS


async def test_a_duration_limit_stops_a_file_early(one_second: Path) -> None:
    source = open_source(str(one_second), SourceConfig(), paced=False, duration=0.5)
    assert source.duration == 0.5
    async with source:
        frames = await read_all(source)
    assert len(frames) == 15
    assert frames[-1].pts < 0.5


# --- damaged files --------------------------------------------------------------------------


async def read_damaged(path: Path) -> list[Frame] | None:
    """What a damaged file gives: its frames, or None when it does not even open."""
    try:
        source = VideoFileSource(path, paced=False)
    except SourceError:
        return None
    async with source:
        frames = await read_all(source)
    for frame in frames:
        assert frame.image.shape == (SIZE[1], SIZE[0], 3)
    assert np.all(np.diff([f.pts for f in frames]) > 0)
    return frames


@pytest.mark.parametrize("fill", [b"\xff", b"\x00"], ids=["ones", "zeros"])
@pytest.mark.parametrize("index_first", [False, True], ids=["moov-last", "moov-first"])
async def test_a_clip_overwritten_in_the_middle_still_plays(
    two_seconds: Path, tmp_path: Path, fill: bytes, index_first: bool
) -> None:
    clip = faststart(two_seconds, tmp_path / "fs.mp4") if index_first else two_seconds
    data = bytearray(clip.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2048] = fill * 2048
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    frames = await read_damaged(damaged)
    assert frames is not None
    assert 2 * FPS * 0.8 <= len(frames) <= 2 * FPS  # a glitch, not the rest of the file


async def test_a_truncated_clip_plays_what_it_has(two_seconds: Path, tmp_path: Path) -> None:
    data = faststart(two_seconds, tmp_path / "fs.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    frames = await read_damaged(truncated)
    assert frames is not None
    assert 0.3 * 2 * FPS < len(frames) < 2 * FPS


def test_a_truncated_clip_without_its_index_is_reported_at_open(
    two_seconds: Path, tmp_path: Path
) -> None:
    data = two_seconds.read_bytes()  # PyAV writes the index (moov) at the end
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(SourceError, match="not a video"):
        VideoFileSource(truncated, paced=False)


# --- open_source ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make_spec", "message"),
    [
        (lambda d: str(d / "missing.mp4"), "no such file"),
        (lambda d: str(d / "notes.mp4"), "not a video"),
        (lambda d: str(d), "is a directory"),
        (lambda d: "foo", "unknown source"),
        (lambda d: "webcam:x", "unknown source"),
    ],
    ids=["missing", "text-file", "directory", "no-suffix", "bad-webcam-index"],
)
def test_open_source_explains_what_is_wrong(
    tmp_path: Path, make_spec: Callable[[Path], str], message: str
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video at all\n")
    with pytest.raises(SourceError, match=message) as caught:
        open_source(make_spec(tmp_path), SourceConfig(), paced=False)
    assert re.search(r"; (pass|use) ", str(caught.value))  # and says what to pass instead


@pytest.mark.skipif(
    Path("/dev/video7").exists(),
    reason=hardware_reason("camera", "this machine has a camera 7; the test needs it missing"),
)
def test_open_source_reports_a_missing_camera() -> None:
    with pytest.raises(SourceError, match="no camera at index 7"):
        open_source("webcam:7", SourceConfig(), paced=False)


@pytest.mark.skipif(
    Path("/dev/video0").exists(),
    reason=hardware_reason("camera", "this machine has a camera; the test needs none"),
)
async def test_auto_falls_back_to_the_demo_and_says_so() -> None:
    source = open_source("auto", SourceConfig(width=160, height=90), paced=False, duration=0.2)
    assert isinstance(source, DemoSource)
    assert "demo" in source.description
    assert "no webcam" in source.description
    async with source:
        assert len(await read_all(source)) == 6


async def test_demo_spec_ends_after_its_duration() -> None:
    config = SourceConfig(width=160, height=90)
    source = open_source("demo", config, paced=False, duration=2.0)
    async with source:
        frames = await read_all(source)
    assert len(frames) == 2 * FPS
    assert frames[-1].pts == pytest.approx(2.0 - 1 / FPS)
    assert source.duration == 2.0


# --- closing and the threaded base ----------------------------------------------------------


async def test_close_is_idempotent_and_ends_the_stream(one_second: Path) -> None:
    source = VideoFileSource(one_second, paced=False)
    await source.recv()
    await source.close()
    await source.close()
    with pytest.raises(EndOfStream):
        await source.recv()


async def test_closing_the_demo_ends_it() -> None:
    source = DemoSource(config=SourceConfig(width=64, height=36), paced=False)
    async with source:
        await source.recv()
    with pytest.raises(EndOfStream):
        await source.recv()


async def test_concurrent_receivers_get_each_frame_once_in_order() -> None:
    source = DemoSource(config=SourceConfig(width=64, height=36), paced=False, duration=1.0)
    async with source:
        frames = await asyncio.gather(*(source.recv() for _ in range(20)))
    assert sorted(f.index for f in frames) == list(range(20))
    by_index = sorted(frames, key=lambda f: f.index)
    assert np.allclose([f.pts for f in by_index], np.arange(20) / FPS)


async def test_a_paced_source_catches_up_after_a_stall_without_a_burst() -> None:
    source = DemoSource(config=SourceConfig(width=64, height=36), paced=True, duration=5.0)
    async with source:
        await source.recv()
        await asyncio.sleep(0.6)  # the consumer stalls for 18 frame periods
        start = time.monotonic()
        for _ in range(7):
            await source.recv()
        elapsed = time.monotonic() - start
    # The first frame after the stall comes at once; the next six keep their spacing.
    assert elapsed >= 6 / FPS * 0.8


# --- webcams (fake capture) -----------------------------------------------------------------


class FakeCapture:
    """A stand-in for ``cv2.VideoCapture``: BGR frames from a list, then failed reads."""

    def __init__(
        self, images: list[np.ndarray], *, opened: bool = True, read_delay: float = 0.0
    ) -> None:
        self.images = list(images)
        self.opened = opened
        self.read_delay = read_delay
        self.props: dict[int, float] = {}
        self.released = 0
        self.reading = False
        self.read_started = threading.Event()
        self.released_while_reading = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reading = True
        self.read_started.set()
        try:
            time.sleep(self.read_delay)
            if self.images:
                return True, self.images.pop(0)
            return False, None
        finally:
            self.reading = False

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def release(self) -> None:
        self.released += 1
        self.released_while_reading |= self.reading


def bgr_frames(count: int) -> list[np.ndarray]:
    images = []
    for i in range(count):
        image = np.zeros((36, 64, 3), dtype=np.uint8)
        image[...] = (200, 100, i)  # B, G, R as OpenCV delivers them
        images.append(image)
    return images


def webcam(capture: FakeCapture, config: SourceConfig | None = None) -> WebcamSource:
    return WebcamSource(0, config=config or SourceConfig(), open_capture=lambda device: capture)


async def test_webcam_frames_are_converted_to_rgb_with_rising_pts() -> None:
    capture = FakeCapture(bgr_frames(5))
    source = webcam(capture)
    frames = [await source.recv() for _ in range(5)]
    await source.close()
    assert frames[3].image[0, 0].tolist() == [3, 100, 200]
    assert frames[0].pts == 0.0
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))
    assert source.size == (64, 36)
    assert source.duration is None


async def test_webcam_asks_the_camera_for_the_configured_size_and_rate() -> None:
    import cv2

    capture = FakeCapture(bgr_frames(1))
    source = webcam(capture, SourceConfig(width=1280, height=720, fps=24))
    await source.close()
    assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 1280
    assert capture.props[cv2.CAP_PROP_FRAME_HEIGHT] == 720
    assert source.fps == 24
    assert source.description == "webcam 0"


async def test_a_camera_that_stops_delivering_ends_the_stream() -> None:
    capture = FakeCapture(bgr_frames(2))
    source = webcam(capture)
    frames = await read_all(source)
    assert len(frames) == 2
    await source.close()
    await source.close()
    assert capture.released == 1


def test_a_camera_that_does_not_open_is_reported_and_released() -> None:
    capture = FakeCapture([], opened=False)
    with pytest.raises(SourceError, match="no camera at index 0"):
        webcam(capture)
    assert capture.released == 1


def test_a_camera_that_gives_no_picture_is_reported_and_released() -> None:
    capture = FakeCapture([])
    with pytest.raises(SourceError, match="no picture"):
        webcam(capture)
    assert capture.released == 1


async def test_close_waits_for_a_read_in_progress_before_releasing() -> None:
    capture = FakeCapture(bgr_frames(3))
    source = webcam(capture)
    await source.recv()  # the frame read at open
    capture.read_delay = 0.3
    capture.read_started.clear()
    pending = asyncio.create_task(source.recv())
    assert await asyncio.to_thread(capture.read_started.wait, 5.0)
    await source.close()
    assert capture.released == 1
    assert not capture.released_while_reading
    await pending  # the read that was in flight completes normally
    with pytest.raises(EndOfStream):
        await source.recv()


async def test_camera_reads_run_off_the_event_loop_thread() -> None:
    seen: list[int] = []
    capture = FakeCapture(bgr_frames(3))
    original = capture.read

    def read() -> tuple[bool, np.ndarray | None]:
        seen.append(threading.get_ident())
        return original()

    capture.read = read  # type: ignore[method-assign]
    source = webcam(capture)
    async with source:
        for _ in range(3):
            await source.recv()
    loop_thread = threading.get_ident()
    assert seen[0] == loop_thread  # the check at open, before anything runs
    assert len(seen) == 3 and loop_thread not in seen[1:]
