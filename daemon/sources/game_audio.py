"""The game's own audio, as 16 kHz mono windows: a video file's audio track, or a live capture.

Two kinds, one method: :meth:`GameAudioInput.window` returns the samples of a window of
source time (files) or the newest stretch of that length (live), or None when there is none.

- :class:`FileAudio`: the first audio stream of a video file, decoded with PyAV as the windows
  ask for it (a window's samples are at their pts in the file, against the video's start).
- :func:`open_capture` (live, ``--game-audio DEVICE``):

  ============================  ==========================================================
  DEVICE                        captures
  ============================  ==========================================================
  ``jack:PATTERN``              the JACK output ports matching PATTERN (JACK-Client), e.g.
                                ``jack:Firefox:output_*`` or a game's own ports
  ``pulse:NAME``, ``*.monitor`` a PulseAudio/PipeWire source through ``parec``: a sink's
                                monitor (``alsa_output....monitor``) or an application's
                                null sink (README, "Game audio")
  anything else                 a PortAudio input (sounddevice) by name or index
  ============================  ==========================================================

A live capture keeps the last :data:`KEEP_S` seconds and the ``time.perf_counter()`` at which its
newest sample arrived (the feedback check lines it up with what moodscore played).
"""

from __future__ import annotations

import collections
import fnmatch
import logging
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from daemon.errors import SourceError
from models.audio_cues import resample

log = logging.getLogger("moodscore.sources.game_audio")

RATE = 16_000
KEEP_S = 3.0


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    return resample(samples, rate, RATE)


class GameAudioInput(ABC):
    """Where the game's audio comes from (see the module docstring).

    Attributes
    ----------
    description : human words for logs ("audio of clip.mp4", "JACK ports Firefox:*").
    live : a capture (True) or a file (False).
    """

    description: str
    live: bool

    @abstractmethod
    def window(self, t_start: float, t_end: float) -> np.ndarray | None:
        """The samples [shape=(n,), dtype=float32, 16 kHz mono] of the window (files), or the
        newest ``t_end - t_start`` seconds (live); None when there are none (yet)."""

    @property
    def end_wall(self) -> float | None:
        """``time.perf_counter()`` at which the newest sample arrived (live only)."""
        return None

    def close(self) -> None:  # noqa: B027 - a file or device that holds nothing
        """Release the file or device; safe to call more than once."""


# --------------------------------------------------------------------------- files


def has_audio(path: str | Path) -> bool:
    """Whether the file is a container with an audio stream (False when it cannot be read)."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        return False


class FileAudio(GameAudioInput):
    """The audio track of a video file, decoded as the windows ask for it.

    Raises
    ------
    SourceError
        The file does not open or has no audio stream.
    """

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"{self.path}: cannot read its audio ({exc})") from exc
        if not self._container.streams.audio:
            self._container.close()
            raise SourceError(f"{self.path} has no audio track; pass --no-game-audio")
        self._stream = self._container.streams.audio[0]
        origin = 0.0
        if self._container.streams.video:
            video = self._container.streams.video[0]
            if video.start_time is not None and video.time_base is not None:
                origin = float(video.start_time * video.time_base)
        self._origin = origin
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        self._frames = self._decode()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start: int | None = None  # sample index of _buffer[0]
        self._ended = False
        self.description = f"audio of {self.path.name}"

    def _decode(self) -> Iterator[tuple[float | None, np.ndarray]]:
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except (av.FFmpegError, OSError):
                    continue  # a damaged packet: a short gap, as a player would
                for frame in decoded:
                    pts = None
                    if frame.pts is not None and frame.time_base is not None:
                        pts = float(frame.pts * frame.time_base) - self._origin
                    for out in self._resampler.resample(frame):
                        yield pts, out.to_ndarray().reshape(-1).astype(np.float32)
                        pts = None
        except (av.FFmpegError, OSError) as exc:
            log.warning("%s: audio reading stopped: %s", self.path, exc)

    def window(self, t_start: float, t_end: float) -> np.ndarray | None:
        first, last = max(0, round(t_start * RATE)), max(0, round(t_end * RATE))
        while not self._ended and (self._start is None or self._start + self._buffer.size < last):
            item = next(self._frames, None)
            if item is None:
                self._ended = True
                break
            pts, samples = item
            if self._start is None:
                at = max(0, round((pts or 0.0) * RATE))
                self._start, self._buffer = 0, np.zeros(at, dtype=np.float32)
            self._buffer = np.concatenate([self._buffer, samples])
        if self._start is None:
            return None
        # Keep a little before the window: a window asked again after a cut reads the same.
        drop = max(0, first - RATE - self._start)
        if drop:
            self._buffer = self._buffer[drop:]
            self._start += drop
        a, b = first - self._start, last - self._start
        if a >= self._buffer.size:
            return None
        out = self._buffer[max(0, a) : b]
        if out.size < last - first:
            out = np.concatenate([out, np.zeros(last - first - out.size, dtype=np.float32)])
        return out

    def close(self) -> None:
        self._container.close()


# --------------------------------------------------------------------------- live


class LiveCapture(GameAudioInput):
    """The bookkeeping of every capture: a ring of the last seconds, filled from a device's
    thread with :meth:`_add` (raw samples at the device's rate), read with :meth:`window`.

    Parameters
    ----------
    description : human words for logs.
    rate : the device's sample rate.
    now : the wall clock that stamps the newest sample (the one :class:`PlayedAudio` uses).
    """

    live = True

    def __init__(
        self, *, description: str, rate: int, now: Callable[[], float] = time.perf_counter
    ) -> None:
        self.description = description
        self.rate = rate
        self._now = now
        self._lock = threading.Lock()
        self._blocks: collections.deque[np.ndarray] = collections.deque()
        self._kept = 0
        self._end_wall: float | None = None

    def _add(self, samples: np.ndarray) -> None:
        with self._lock:
            self._blocks.append(samples)
            self._kept += samples.size
            while self._blocks and self._kept - self._blocks[0].size > KEEP_S * self.rate:
                self._kept -= self._blocks.popleft().size
            self._end_wall = self._now()

    @property
    def end_wall(self) -> float | None:
        return self._end_wall

    def window(self, t_start: float, t_end: float) -> np.ndarray | None:
        want = round((t_end - t_start) * self.rate)
        with self._lock:
            if self._kept < want or want <= 0:
                return None
            joined = np.concatenate(list(self._blocks))
        return _resample(joined[-want:], self.rate)


class JackCapture(LiveCapture):
    """The JACK output ports matching a pattern, mixed to mono (JACK-Client)."""

    def __init__(self, pattern: str) -> None:
        try:
            import jack
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise SourceError("JACK-Client is not installed; pip install JACK-Client") from exc
        try:
            client = jack.Client("moodscore-game-audio", no_start_server=True)
        except jack.JackError as exc:
            raise SourceError(
                f"game audio jack:{pattern}: no JACK server is running; start jackd "
                "or pass another --game-audio device"
            ) from exc
        ports = [p for p in client.get_ports(is_output=True, is_audio=True)]
        matched = [p for p in ports if fnmatch.fnmatch(p.name, pattern) or p.name == pattern]
        if not matched:
            client.close()
            raise SourceError(
                f"game audio jack:{pattern}: no JACK output port matches; jack_lsp lists them"
            )
        super().__init__(description=f"JACK ports {pattern}", rate=client.samplerate)
        inport = client.inports.register("in")

        @client.set_process_callback
        def process(frames: int) -> None:
            self._add(inport.get_array().copy())

        client.activate()
        for port in matched:
            client.connect(port, inport)
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.deactivate()
            self._client.close()
            self._client = None


class PulseCapture(LiveCapture):
    """A PulseAudio/PipeWire source (a sink's monitor) through ``parec``."""

    def __init__(self, name: str) -> None:
        parec = shutil.which("parec")
        if parec is None:
            raise SourceError(
                f"game audio {name}: parec is not installed (apt install pulseaudio-utils)"
            )
        command = [parec, f"--device={name}", "--format=float32le", f"--rate={RATE}"]
        command += ["--channels=1", "--raw", "--latency-msec=40"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        else:
            why = (proc.stderr.read().decode(errors="replace") if proc.stderr else "").strip()
            raise SourceError(
                f"game audio {name}: parec could not record it "
                f"({why.splitlines()[-1] if why else f'exit {proc.returncode}'}); "
                "`pactl list short sources` lists the names"
            )
        super().__init__(description=f"PulseAudio source {name}", rate=RATE)
        self._proc: subprocess.Popen[bytes] | None = proc
        self._thread = threading.Thread(target=self._read, name="game-audio-parec", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            data = stream.read(4 * 320)
            if not data:
                return
            self._add(np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").copy())

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None


class PortAudioCapture(LiveCapture):
    """A PortAudio input device by name or index (sounddevice)."""

    def __init__(self, device: str) -> None:
        try:
            import sounddevice
        except OSError as exc:
            raise SourceError(
                f"game audio {device}: PortAudio is not installed (apt install libportaudio2)"
            ) from exc
        which: Any = int(device) if device.isdigit() else device
        try:
            info = sounddevice.query_devices(which, kind="input")
            rate = int(info["default_samplerate"])
            stream = sounddevice.InputStream(
                device=which,
                channels=1,
                samplerate=rate,
                dtype="float32",
                callback=lambda data, frames, when, status: self._add(data[:, 0].copy()),
            )
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise SourceError(
                f"game audio {device}: no such input device ({exc}); "
                "`python -m sounddevice` lists them"
            ) from exc
        super().__init__(description=f"input device {device}", rate=rate)
        stream.start()
        self._stream: Any = stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


def open_capture(device: str) -> LiveCapture:
    """The live capture ``device`` names (see the module docstring).

    Raises
    ------
    SourceError
        The device, port or server is not there (one line that says what to do).
    """
    if device.startswith("jack:"):
        return JackCapture(device.removeprefix("jack:"))
    if device.startswith("pulse:"):
        return PulseCapture(device.removeprefix("pulse:"))
    if device.endswith(".monitor"):
        return PulseCapture(device)
    return PortAudioCapture(device)
