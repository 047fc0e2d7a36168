"""WAV recording of the engine's output, written off the audio thread.

:class:`WavRecorder.write` is an engine audio listener: it only copies the block onto a queue, so
the audio thread never waits on the disk; a writer thread does the file I/O.

Format. 16-bit PCM by default: the engine's master clip keeps every sample within ±0.98, and a
mix that sits around −18 dBFS RMS has ~80 dB between it and 16-bit quantisation noise, far below
anything audible under the reverb. PCM_16 is what every player, browser, ffmpeg and OBS reads,
and it is half the size of 32-bit float. Pass ``subtype="FLOAT"`` for an archival or
post-processing copy.

Long recordings. A WAV file holds at most 4 GiB (about 6 hours of 48 kHz stereo PCM_16), and
plenty of players stop at 2 GiB; so a recording rolls over into a new file before it reaches
``max_file_bytes`` (``record.max_file_mb``): ``take.wav``, then ``take-002.wav``, ... each a
complete WAV whose first sample follows the last sample of the one before (:attr:`parts` says
where each starts on the audio clock; the session writes a timeline per file).

Robustness. The header is rewritten, and the file synced to the disk, after every
``header_interval_s`` (1 s) of audio, so if the daemon dies without :meth:`WavRecorder.close`
(``kill -9``, a power cut) the file is a valid WAV of all but at most the last second. When
writing fails (the disk is full), the recording stops with one error line; the music, which
never waits on the recorder, plays on, and the file keeps what was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from daemon.clock import MusicClock
from daemon.errors import MoodscoreError
from daemon.outputs.base import Output, Stage

log = logging.getLogger(__name__)

# libsndfile's SFC_UPDATE_HEADER_NOW: rewrite the header for the frames written so far.
_SFC_UPDATE_HEADER_NOW = 0x1060
# A jump in audio time larger than this is a clock fault, not a gap worth filling with silence.
_MAX_GAP_S = 10.0
# The largest WAV: its sizes are 32-bit. What a part may hold, less room for the header.
WAV_LIMIT_BYTES = 2**32 - 1
_HEADER_ROOM = 4096
_BYTES_PER_SAMPLE = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


@dataclass(frozen=True, slots=True)
class RecordingPart:
    """One file of a recording: where it is, the audio time of its first sample, its length."""

    path: Path
    start_time: float
    frames: int


def part_path(path: Path, index: int) -> Path:
    """The file of part ``index`` (0 = ``path`` itself, then ``stem-002.wav``, ...)."""
    if index == 0:
        return path
    return path.with_name(f"{path.stem}-{index + 1:03d}{path.suffix}")


class WavRecorder:
    """Record float audio blocks to WAV files on a writer thread.

    Parameters
    ----------
    path : the file to write (its folder is created); an existing file is replaced. Parts after
        the first are named by :func:`part_path`.
    sample_rate : the engine's sample rate in Hz.
    channels : channels per frame (the engine gives 2).
    subtype : libsndfile subtype: ``"PCM_16"`` (default) or ``"FLOAT"``, ``"PCM_24"``.
    header_interval_s : rewrite the header and sync the file after roughly this much audio
        (crash safety).
    max_file_bytes : start a new file before one grows past this many bytes (at most the 4 GiB
        a WAV can hold).

    Raises
    ------
    OSError
        The first file cannot be created (raised here, not later on the writer thread).
    """

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int,
        channels: int = 2,
        subtype: str = "PCM_16",
        header_interval_s: float = 1.0,
        max_file_bytes: int = WAV_LIMIT_BYTES,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self._subtype = subtype
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame_bytes = channels * _BYTES_PER_SAMPLE.get(subtype, 4)
        limit = min(max_file_bytes, WAV_LIMIT_BYTES) - _HEADER_ROOM
        self._part_frames = max(limit // frame_bytes, sample_rate)  # at least a second a file
        self._header_every = max(int(header_interval_s * sample_rate), 1)
        self._file = self._open(self.path)
        self._part_index = 0
        self._part_start = 0  # frames of the whole recording before the current part
        self._finished_parts: list[RecordingPart] = []
        self._queue: queue.SimpleQueue[tuple[np.ndarray, float] | None] = queue.SimpleQueue()
        self._frames = 0  # frames of the whole recording written (writer thread writes it)
        self._start_time: float | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"wav-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()

    def _open(self, path: Path) -> sf.SoundFile:
        try:
            # Our own descriptor, so the writer can fsync it.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}") from exc
        self._fd = fd
        try:
            return sf.SoundFile(
                fd,
                mode="w",
                samplerate=self.sample_rate,
                channels=self.channels,
                subtype=self._subtype,
                format="WAV",
                closefd=True,
            )
        except (sf.LibsndfileError, RuntimeError) as exc:
            os.close(fd)
            raise OSError(f"cannot write {path}: {exc}") from exc

    @property
    def seconds_written(self) -> float:
        """Seconds of audio in the files so far (what the writer thread has written)."""
        return self._frames / self.sample_rate

    @property
    def start_time(self) -> float | None:
        """Audio time of the recording's first sample (the first block's), once one arrived."""
        return self._start_time

    @property
    def failed(self) -> BaseException | None:
        """What stopped the recording early (the disk filled up), or None."""
        return self._error

    @property
    def parts(self) -> list[RecordingPart]:
        """The files of the recording so far, in order (the last one still growing)."""
        start = self._start_time or 0.0
        current = RecordingPart(
            part_path(self.path, self._part_index),
            start + self._part_start / self.sample_rate,
            self._frames - self._part_start,
        )
        return [*self._finished_parts, current]

    def write(self, block: np.ndarray, audio_time: float) -> None:
        """Queue one block; never blocks. Safe to call from the engine's audio thread.

        Parameters
        ----------
        block : np.ndarray [shape=(n, channels)], float samples in [-1, 1] (copied here).
        audio_time : the engine time of the block's first sample. Blocks are placed on that
            clock: a gap is filled with silence, an overlap is dropped.
        """
        if self._closed or self._error is not None:
            return
        frames = np.array(block, dtype=np.float32, copy=True)
        if frames.ndim == 1:
            frames = frames.reshape(-1, 1)
        if frames.shape[1] != self.channels:
            raise ValueError(
                f"block has {frames.shape[1]} channels; this recorder writes {self.channels}"
            )
        self._queue.put((frames, audio_time))

    def close(self) -> None:
        """Write everything queued, finalise the header and close the file. Idempotent.

        A failure on the way (the disk filled up) was logged when it happened and is
        :attr:`failed`; the files hold what was written before it.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        next_header = self._header_every
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if self._error is not None:
                    continue  # drain what was queued before the failure
                block, audio_time = item
                try:
                    self._append(block, audio_time)
                    if self._frames >= next_header:
                        self._update_header()
                        next_header = self._frames + self._header_every
                except Exception as exc:
                    self._fail(exc)
        finally:
            try:
                self._file.close()
            except Exception as exc:
                if self._error is None:
                    self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        self._error = exc
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        with contextlib.suppress(OSError):
            if shutil.disk_usage(self.path.parent).free < 1_000_000:
                reason = "the disk is full"  # libsndfile's own words are vaguer
        log.error(
            "recording stopped at %.1f s: cannot write %s (%s); the music plays on, and the "
            "file keeps what was recorded so far",
            self.seconds_written,
            part_path(self.path, self._part_index),
            reason,
        )

    def _append(self, block: np.ndarray, audio_time: float) -> None:
        if self._start_time is None:
            self._start_time = audio_time
        position = round((audio_time - self._start_time) * self.sample_rate)
        if position > self._frames:
            gap = position - self._frames
            if gap > _MAX_GAP_S * self.sample_rate:
                log.warning("audio time jumped %.1f s; not filling the gap", gap / self.sample_rate)
                self._start_time = audio_time - self._frames / self.sample_rate
            else:
                self._put(np.zeros((gap, self.channels), dtype=np.float32))
        elif position < self._frames:
            block = block[self._frames - position :]
        if len(block):
            # libsndfile wraps float samples beyond ±1 around when converting to PCM; clip.
            self._put(np.clip(block, -1.0, 1.0))

    def _put(self, frames: np.ndarray) -> None:
        """Write ``frames``, rolling over into a new file where the current one is full."""
        while len(frames):
            room = self._part_start + self._part_frames - self._frames
            if room <= 0:
                self._roll_over()
                continue
            head = frames[:room]
            self._file.write(head)
            self._frames += len(head)
            frames = frames[room:]

    def _roll_over(self) -> None:
        done = RecordingPart(
            part_path(self.path, self._part_index),
            (self._start_time or 0.0) + self._part_start / self.sample_rate,
            self._frames - self._part_start,
        )
        self._file.close()
        self._finished_parts.append(done)
        self._part_index += 1
        self._part_start = self._frames
        path = part_path(self.path, self._part_index)
        self._file = self._open(path)
        log.info("recording continues in %s (%s is full)", path.name, done.path.name)

    def _update_header(self) -> None:
        # soundfile has no public call for this; its cffi handles are stable, and a missing
        # attribute only skips the crash-safety update.
        try:
            handle = self._file._file
            sf._snd.sf_command(handle, _SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)
        except AttributeError:
            return
        # On the disk, not only in the page cache: a power cut keeps it too.
        os.fsync(self._fd)


class RecordingOutput(Output):
    """The session's audio to a WAV file: an :class:`~daemon.outputs.base.Output` around a
    :class:`WavRecorder`, finalised after pyo stopped.

    The file is opened on the first audio block, when the clock's real sample rate is known
    (JACK imposes its own); the folder is made (and checked writable) before the music starts.

    Parameters
    ----------
    path : the WAV file to write (a long recording continues in ``stem-002.wav``, ...).
    subtype : as for :class:`WavRecorder`.
    max_file_bytes : as for :class:`WavRecorder`.
    live : a live run: a recording that fails (a full disk) was reported when it failed, and the
        run goes on and ends normally. Otherwise (a render, whose file is the product) closing
        raises the failure.
    """

    stage = Stage.RECORDING
    name = "recording"

    def __init__(
        self,
        path: Path,
        *,
        subtype: str = "PCM_16",
        max_file_bytes: int = WAV_LIMIT_BYTES,
        live: bool = False,
    ) -> None:
        self.path = Path(path)
        self._subtype = subtype
        self._max_file_bytes = max_file_bytes
        self._live = live
        self._open_error: OSError | None = None
        self.recorder: WavRecorder | None = None

    @property
    def seconds_written(self) -> float:
        """Seconds of audio in the files so far."""
        return 0.0 if self.recorder is None else self.recorder.seconds_written

    @property
    def failed(self) -> BaseException | None:
        """What stopped the recording early (a full disk), or None."""
        if self._open_error is not None:
            return self._open_error
        return None if self.recorder is None else self.recorder.failed

    @property
    def parts(self) -> list[RecordingPart]:
        """The recording's files so far (none before the first block)."""
        return [] if self.recorder is None else self.recorder.parts

    async def start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MoodscoreError(
                f"cannot record into {self.path.parent}: {exc.strerror or exc}; pass a writable "
                "folder"
            ) from exc

    def _attach(self, clock: MusicClock) -> None:
        clock.add_audio_listener(self._write)

    def _write(self, block: np.ndarray, audio_time: float) -> None:
        if self.recorder is None:
            if self._open_error is not None:
                return
            # One file open on the audio thread, once, at the very start.
            try:
                self.recorder = WavRecorder(
                    self.path,
                    sample_rate=self.clock.sample_rate,
                    subtype=self._subtype,
                    max_file_bytes=self._max_file_bytes,
                )
            except OSError as exc:
                self._open_error = exc
                log.error("recording failed: %s; the music plays on", exc.strerror or exc)
                return
        self.recorder.write(block, audio_time)

    async def _aclose(self) -> None:
        if self.recorder is not None:
            await asyncio.to_thread(self.recorder.close)
        failed = self.failed
        if failed is not None and not self._live:
            raise MoodscoreError(f"recording to {self.path} failed: {failed}") from failed
