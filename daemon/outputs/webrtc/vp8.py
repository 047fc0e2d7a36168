"""VP8 of the visuals stream: its clock, its bit rate, RGB to YUV 4:2:0, and the encoder; shared
by the stream in the daemon (:mod:`daemon.outputs.webrtc.video`) and its worker process
(:mod:`daemon.outputs.webrtc.worker`)."""

from __future__ import annotations

import fractions

import av
import cv2
import numpy as np

VIDEO_CLOCK = 90_000  # RTP video clock rate
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)


def stream_bitrate(width: int, height: int, fps: float) -> int:
    """Bits per second of the shared VP8 stream: about 0.08 bit per pixel per frame (the
    visuals are smooth gradients and a few shapes), between 300 kbit/s and 8 Mbit/s; 720p at
    30 fps gets 2.2 Mbit/s."""
    return int(min(max(width * height * fps * 0.08, 300_000), 8_000_000))


def yuv420_frame(image: np.ndarray) -> av.VideoFrame:
    """RGB or RGBA (alpha ignored) [shape=(h, w, 3|4), dtype=uint8], even h and w -> a yuv420p
    frame (BT.601, limited range, as FFmpeg's own conversion; OpenCV's is several times faster).
    """
    code = cv2.COLOR_RGBA2YUV_I420 if image.shape[2] == 4 else cv2.COLOR_RGB2YUV_I420
    yuv: np.ndarray = cv2.cvtColor(image, code).astype(np.uint8, copy=False)
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


class VisualsEncoder:
    """VP8 (libvpx, real-time settings as aiortc's own encoder uses) of one shared stream.

    Parameters
    ----------
    width, height : frame size in pixels (even).
    fps : frame rate (rate control only; timestamps come with the frames).
    bitrate : constant bit rate in bits per second.
    """

    def __init__(self, *, width: int, height: int, fps: float, bitrate: int) -> None:
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(fps).limit_denominator(1001)
        codec.bit_rate = bitrate
        codec.gop_size = 100_000  # keyframes only when asked for (see LiveVisuals)
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(bitrate),
            "cpu-used": "-6",
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "overshoot-pct": "15",
            "undershoot-pct": "100",
            "static-thresh": "1",
            "partitions": "0",
        }
        codec.thread_count = 2 if width * height > 640 * 480 else 1
        self._codec = codec

    def encode(self, frame: av.VideoFrame, *, keyframe: bool) -> list[av.Packet]:
        """Encode one yuv420p frame (its ``pts`` on the 90 kHz clock); a keyframe when asked."""
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        packets = list(self._codec.encode(frame))
        for packet in packets:
            packet.time_base = VIDEO_TIME_BASE
        return packets
