"""The built-in demo scene: a drawn, deterministic video that goes calm -> intense -> calm.

It lets moodscore run, and its tests exercise the whole chain, on machines with no camera and no
video file. One cycle (``config.demo_cycle_s``, default 60 s) is: a calm plateau, a rise, an
intense plateau over the middle third, a fall, and calm again (:func:`demo_intensity`).

The picture (:func:`draw_demo_frame`) is built to move the colour/motion features that
:mod:`daemon.analysis.features` measures, so the music audibly follows it:

- calm: a few large soft blobs drifting slowly (periods of 20-40 s) over a dim blue/teal
  background, with little saturation;
- intense: up to 48 sharp red/orange/yellow shapes sweeping across the frame about once a
  second, flashes on a 128 bpm pulse, and a few pixels of camera shake.

Everything is a pure function of its arguments (the seed fixes the shapes' paths and colours),
so a render of the demo is repeatable frame for frame. Cost: the background is drawn at a
quarter of the size and blurred there, then scaled up (and shaken) in one ``warpAffine``;
640x360 takes well under 10 ms a frame.
"""

from __future__ import annotations

import fractions
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daemon.config import SourceConfig
from daemon.sources.base import ThreadedSource

# Phase boundaries of one cycle, as fractions of it: the middle third is the intense plateau.
RISE_START, INTENSE_START, INTENSE_END, FALL_END = 0.2, 1 / 3, 2 / 3, 0.8

CALM_SHAPES = 5
BUSY_SHAPES = 48
PULSE_BPM = 128.0
SHAKE_PX = 6.0
# The background and soft blobs are drawn at 1/BACKGROUND_SCALE of the frame size.
BACKGROUND_SCALE = 4

# RGB palettes. Calm colours are desaturated blue/teal, intense ones saturated warm hues.
CALM_BACKGROUND = np.array([12.0, 28.0, 48.0])
INTENSE_BACKGROUND = np.array([70.0, 18.0, 8.0])
CALM_COLOURS = np.array([[70, 110, 135], [60, 95, 140], [85, 130, 128], [95, 115, 150]], float)
WARM_COLOURS = np.array([[235, 40, 25], [250, 120, 15], [255, 205, 40], [240, 70, 90]], float)
FLASH_COLOUR = np.array([255.0, 235.0, 190.0])


def demo_intensity(t: float, cycle_s: float = 60.0) -> float:
    """How intense the demo scene is at ``t`` seconds: 0 = calm, 1 = intense.

    One cycle of ``cycle_s`` seconds: calm for the first fifth, a smooth rise to the middle
    third, intense over the middle third, a smooth fall, calm for the last fifth; then repeats.
    """
    phase = (t / cycle_s) % 1.0
    if phase < RISE_START or phase >= FALL_END:
        return 0.0
    if phase < INTENSE_START:
        return _smoothstep((phase - RISE_START) / (INTENSE_START - RISE_START))
    if phase < INTENSE_END:
        return 1.0
    return 1.0 - _smoothstep((phase - INTENSE_END) / (FALL_END - INTENSE_END))


def draw_demo_frame(
    t: float, *, intensity: float, width: int, height: int, seed: int = 0
) -> np.ndarray:
    """Draw the demo scene at time ``t`` (seconds) and ``intensity`` (0 calm .. 1 intense).

    A pure function: the same arguments give the same pixels.

    Returns
    -------
    image : np.ndarray [shape=(height, width, 3), dtype=uint8], RGB.
    """
    k = float(np.clip(intensity, 0.0, 1.0))
    shapes = _shapes(seed)

    # Background and soft blobs at low resolution: the blur is cheap there and the upscale
    # softens them further.
    bw, bh = max(8, width // BACKGROUND_SCALE), max(8, height // BACKGROUND_SCALE)
    background = CALM_BACKGROUND + k * (INTENSE_BACKGROUND - CALM_BACKGROUND)
    shade = np.linspace(1.0, 0.55, bh)[:, None, None]  # darker towards the bottom
    small = np.ascontiguousarray(np.broadcast_to(background * shade, (bh, bw, 3)).astype(np.uint8))
    for i in range(CALM_SHAPES):
        fx, fy, px, py, radius, colour_index = shapes.calm[i]
        x = bw * (0.5 + 0.38 * math.sin(2 * math.pi * fx * t + px))
        y = bh * (0.5 + 0.32 * math.sin(2 * math.pi * fy * t + py))
        colour = CALM_COLOURS[int(colour_index)] * (1 - k) + WARM_COLOURS[int(colour_index)] * k
        colour = colour * (0.55 + 0.35 * k)  # dim when calm
        cv2.circle(small, (int(x), int(y)), max(2, int(radius * bh)), _cv_colour(colour), -1)
    blur = max(3, (bh // 6) | 1)
    small = np.asarray(cv2.GaussianBlur(small, (blur, blur), 0), dtype=np.uint8)

    # Camera shake: a few pixels of jitter from incommensurate sines, growing with intensity.
    shake = SHAKE_PX * k * k
    dx = shake * (math.sin(2 * math.pi * 7.3 * t) + 0.5 * math.sin(2 * math.pi * 13.1 * t + 1.0))
    dy = shake * (math.sin(2 * math.pi * 5.7 * t + 2.0) + 0.5 * math.sin(2 * math.pi * 11.3 * t))
    # Scale up and shift in one step; the scale overshoots a little so the shifted frame keeps
    # no border.
    sx = width / bw * 1.04
    sy = height / bh * 1.04
    matrix = np.array(
        [[sx, 0.0, dx - 0.02 * width], [0.0, sy, dy - 0.02 * height]], dtype=np.float64
    )
    image = cv2.warpAffine(
        small, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )

    # Busy shapes: their number grows with intensity; the last one fades in so the picture
    # changes smoothly as intensity moves.
    count = k * BUSY_SHAPES
    for i in range(math.ceil(count)):
        fx, fy, px, py, size, colour_index, kind = shapes.busy[i]
        fade = min(1.0, count - i)
        x = width * (0.5 + 0.47 * math.sin(2 * math.pi * fx * t + px)) + dx
        y = height * (0.5 + 0.45 * math.sin(2 * math.pi * fy * t + py)) + dy
        r = max(2, int(size * height))
        colour = background + fade * (WARM_COLOURS[int(colour_index)] - background)
        if kind < 0.5:
            cv2.circle(image, (int(x), int(y)), r, _cv_colour(colour), -1)
        else:
            angle = (t * 180.0 * (fx + fy) + px * 57.3) % 360.0
            box = cv2.boxPoints(((x, y), (2.2 * r, 0.9 * r), angle)).astype(np.int32)
            cv2.fillConvexPoly(image, box, _cv_colour(colour))

    # Flashes on the pulse: a short warm-white wash right on each beat.
    beat = 60.0 / PULSE_BPM
    pulse = max(0.0, 1.0 - (t % beat) / (0.35 * beat))
    flash = 0.45 * k * k * pulse * pulse
    if flash > 0.01:
        wash = np.empty_like(image)
        wash[:] = FLASH_COLOUR.astype(np.uint8)
        image = cv2.addWeighted(image, 1.0 - flash, wash, flash, 0.0)
    return image


class DemoSource(ThreadedSource):
    """The demo scene as a frame source, at ``config.fps`` and ``config.width x config.height``.

    Parameters
    ----------
    config : the ``[source]`` section (fps, size, demo_cycle_s).
    paced : deliver frames at config.fps against the wall clock (live); otherwise as fast as
        they can be drawn (render, analyze).
    duration : end the stream after this many seconds; None runs forever.
    seed : fixes the shapes' paths and colours.
    """

    def __init__(
        self, *, config: SourceConfig, paced: bool, duration: float | None = None, seed: int = 0
    ) -> None:
        super().__init__(
            description="built-in demo scene",
            fps=config.fps,
            size=(config.width, config.height),
            duration=duration,
            pace=paced,
            limit=duration,
        )
        self._cycle_s = config.demo_cycle_s
        self._seed = seed
        self._drawn = 0

    def _read(self) -> tuple[float, np.ndarray]:
        # pts from the frame count, not accumulated addition, so it never drifts.
        t = self._drawn / self.fps
        self._drawn += 1
        width, height = self.size
        image = draw_demo_frame(
            t,
            intensity=demo_intensity(t, self._cycle_s),
            width=width,
            height=height,
            seed=self._seed,
        )
        return t, image

    def _release(self) -> None:
        pass


def write_frames_clip(
    path: Path, frames: Sequence[np.ndarray] | np.ndarray, *, fps: float, repeat: int = 1
) -> Path:
    """Write RGB ``frames`` (shown at ``fps``) as an H.264 MP4, each frame ``repeat`` times, so
    footage kept at a model's low rate plays at a capture's rate (a video of real game frames
    whose content, and labels, are known)."""
    import av

    rate = round(fps * repeat)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "18"}
        index = 0
        for image in frames:
            for _ in range(repeat):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = index
                frame.time_base = fractions.Fraction(1, rate)
                index += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_demo_clip(
    path: Path,
    *,
    duration: float,
    intensity: Callable[[float], float],
    fps: int = 30,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    with_audio: bool = False,
) -> Path:
    """Write an H.264 MP4 of the demo scene whose intensity follows ``intensity(t)``.

    Used by ``moodscore bench`` and the tests for real video files with known content;
    ``with_audio`` adds a quiet AAC sine track, as camera footage would carry.
    """
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "23"}
        # Every stream must exist before the first packet is muxed (that writes the header).
        audio = container.add_stream("aac", rate=48000) if with_audio else None
        if audio is not None:
            audio.layout = "stereo"
        for index in range(round(duration * fps)):
            t = index / fps
            image = draw_demo_frame(
                t, intensity=intensity(t), width=width, height=height, seed=seed
            )
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = fractions.Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            samples = round(duration * 48000)
            tone = (0.1 * np.sin(2 * np.pi * 220 * np.arange(samples) / 48000)).astype(np.float32)
            planar = np.ascontiguousarray(np.stack([tone, tone]))
            for start in range(0, samples, 4800):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(planar[:, start : start + 4800]),
                    format="fltp",
                    layout="stereo",
                )
                chunk.sample_rate = 48000
                chunk.pts = start
                for packet in audio.encode(chunk):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


@dataclass(frozen=True, slots=True)
class _Shapes:
    # calm rows: fx, fy, phase x, phase y, radius (fraction of height), colour index
    calm: np.ndarray
    # busy rows: fx, fy, phase x, phase y, size (fraction of height), colour index, kind
    busy: np.ndarray


@functools.lru_cache(maxsize=8)
def _shapes(seed: int) -> _Shapes:
    rng = np.random.default_rng(seed)
    calm = np.column_stack(
        [
            rng.uniform(1 / 40, 1 / 20, CALM_SHAPES),
            rng.uniform(1 / 40, 1 / 20, CALM_SHAPES),
            rng.uniform(0, 2 * np.pi, (CALM_SHAPES, 2)),
            rng.uniform(0.18, 0.32, CALM_SHAPES),
            rng.integers(0, len(CALM_COLOURS), CALM_SHAPES),
        ]
    )
    busy = np.column_stack(
        [
            rng.uniform(0.35, 1.1, BUSY_SHAPES),
            rng.uniform(0.35, 1.1, BUSY_SHAPES),
            rng.uniform(0, 2 * np.pi, (BUSY_SHAPES, 2)),
            rng.uniform(0.025, 0.07, BUSY_SHAPES),
            rng.integers(0, len(WARM_COLOURS), BUSY_SHAPES),
            rng.uniform(0, 1, BUSY_SHAPES),
        ]
    )
    calm.setflags(write=False)
    busy.setflags(write=False)
    return _Shapes(calm=calm, busy=busy)


def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def _cv_colour(colour: np.ndarray) -> tuple[float, float, float]:
    # The canvas is RGB throughout; cv2 only sees three channel values, in canvas order.
    return (float(colour[0]), float(colour[1]), float(colour[2]))
