"""The visuals drawn and VP8-encoded in a process of their own (``visuals.worker_process``).

Drawing a frame is numpy and OpenCV with Python between the calls, and PyAV's encoder holds the
interpreter's lock for parts of its work; in the daemon's process all of it competes with the
audio thread for that lock, and on a busy machine the audio comes late. In a worker process it
competes for nothing but a core: the daemon sends it each slot's ``(t, state, pts, keyframe)``
(the music clock stays in the daemon) and gets the encoded packets back as bytes.

Not yet the default: :class:`LiveVisuals` uses it when ``visuals.worker_process = true``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

import av

from daemon.visuals import VisualState

# Seconds the worker may take to start (a fresh interpreter imports numpy, OpenCV and PyAV).
START_TIMEOUT_S = 30.0


def _serve(connection: Connection, width: int, height: int, fps: float, transparent: bool) -> None:
    """The worker process: draw and encode each request until told to stop (None)."""
    from daemon.outputs.webrtc.vp8 import (
        VIDEO_TIME_BASE,
        VisualsEncoder,
        stream_bitrate,
        yuv420_frame,
    )
    from daemon.visuals import pack_alpha, render_frame

    frame_width = width * (2 if transparent else 1)
    encoder = VisualsEncoder(
        width=frame_width,
        height=height,
        fps=fps,
        bitrate=stream_bitrate(frame_width, height, fps),
    )
    connection.send("ready")
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        t, state, pts, keyframe = request
        try:
            rgba = render_frame(t, state, width=width, height=height, transparent=transparent)
            frame = yuv420_frame(pack_alpha(rgba) if transparent else rgba)
            frame.pts = pts
            frame.time_base = VIDEO_TIME_BASE
            packets = encoder.encode(frame, keyframe=keyframe)
            connection.send([(bytes(p), p.pts, p.is_keyframe) for p in packets])
        except Exception as exc:
            connection.send(exc)


class VisualsWorker:
    """One stream's drawing and encoding in a worker process.

    Parameters
    ----------
    width, height : the picture's size in pixels (even); a transparent stream is twice as wide.
    fps : frames per second (rate control).
    transparent : colour and alpha side by side.

    Raises
    ------
    RuntimeError
        The worker did not start.
    """

    def __init__(self, *, width: int, height: int, fps: float, transparent: bool) -> None:
        # "spawn": the daemon has threads (pyo, the analysis), which a fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, width, height, fps, transparent),
            name="moodscore-visuals",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._lock = threading.Lock()
        if not self._connection.poll(START_TIMEOUT_S) or self._connection.recv() != "ready":
            self.close()
            raise RuntimeError("the visuals worker process did not start")

    def encode(self, t: float, state: VisualState, *, pts: int, keyframe: bool) -> list[av.Packet]:
        """Draw and encode the frame of audio time ``t``; blocks until the worker answers (call
        it off the event loop)."""
        from daemon.outputs.webrtc.vp8 import VIDEO_TIME_BASE

        with self._lock:
            self._connection.send((t, state, pts, keyframe))
            answer: Any = self._connection.recv()
        if isinstance(answer, Exception):
            raise answer
        packets = []
        for data, packet_pts, is_key in answer:
            packet = av.Packet(data)
            packet.pts = packet.dts = packet_pts
            packet.time_base = VIDEO_TIME_BASE
            packet.is_keyframe = is_key
            packets.append(packet)
        return packets

    def close(self) -> None:
        """Stop the worker (at once if it does not stop by itself)."""
        with contextlib.suppress(OSError, ValueError):
            self._connection.send(None)
        self._process.join(2.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(2.0)
        self._connection.close()


__all__ = ["VisualsWorker"]
