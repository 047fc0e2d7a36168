"""WAV recording of the engine's output, written off the audio thread.

:class:`WavRecorder.write` is an engine audio listener: it only copies the block onto a queue, so
the audio thread never waits on the disk; a writer thread does the file I/O.

Format. 16-bit PCM by default: the engine's master clip keeps every sample within ±0.98, and a
mix that sits around −18 dBFS RMS has ~80 dB between it and 16-bit quantisation noise, far below
anything audible under the reverb. PCM_16 is what every player, browser, ffmpeg and OBS reads,
and it is half the size of 32-bit float. Pass ``subtype="FLOAT"`` for an archival or
post-processing copy. A WAV file holds at most 4 GiB: about 6 hours of 48 kHz stereo PCM_16.

Robustness. The WAV header is rewritten about once a second, so if the daemon dies without
calling :meth:`WavRecorder.close`, the file is still valid up to roughly the last second.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
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


class WavRecorder:
    """Record float audio blocks to a WAV file on a writer thread.

    Parameters
    ----------
    path : the file to write (its folder is created); an existing file is replaced.
    sample_rate : the engine's sample rate in Hz.
    channels : channels per frame (the engine gives 2).
    subtype : libsndfile subtype: ``"PCM_16"`` (default) or ``"FLOAT"``, ``"PCM_24"``.
    header_interval_s : rewrite the header after roughly this much audio (crash safety).

    Raises
    ------
    OSError
        The file cannot be created (raised here, not later on the writer thread).
    """

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int,
        channels: int = 2,
        subtype: str = "PCM_16",
        header_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = sf.SoundFile(
                self.path,
                mode="w",
                samplerate=sample_rate,
                channels=channels,
                subtype=subtype,
                format="WAV",
            )
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise OSError(f"cannot write {self.path}: {exc}") from exc
        self._header_every = max(int(header_interval_s * sample_rate), 1)
        self._queue: queue.SimpleQueue[tuple[np.ndarray, float] | None] = queue.SimpleQueue()
        self._frames = 0  # frames in the file (writer thread only writes it)
        self._start_time: float | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"wav-recorder:{self.path.name}", daemon=True
        )
        self._thread.start()

    @property
    def seconds_written(self) -> float:
        """Seconds of audio in the file so far (what the writer thread has written)."""
        return self._frames / self.sample_rate

    @property
    def start_time(self) -> float | None:
        """Audio time of the file's first sample (the first block's), once a block arrived."""
        return self._start_time

    def write(self, block: np.ndarray, audio_time: float) -> None:
        """Queue one block; never blocks. Safe to call from the engine's audio thread.

        Parameters
        ----------
        block : np.ndarray [shape=(n, channels)], float samples in [-1, 1] (copied here).
        audio_time : the engine time of the block's first sample. Blocks are placed on that
            clock: a gap is filled with silence, an overlap is dropped.
        """
        if self._closed:
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

        Raises
        ------
        OSError
            Writing failed on the writer thread (for example, the disk is full); the file holds
            what was written before the failure.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise OSError(f"recording to {self.path} failed: {self._error}") from self._error

    def _run(self) -> None:
        next_header = self._header_every
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if self._error is not None:
                    continue  # keep draining so close() returns; the failure is reported there
                block, audio_time = item
                try:
                    self._append(block, audio_time)
                    if self._frames >= next_header:
                        self._update_header()
                        next_header = self._frames + self._header_every
                except Exception as exc:
                    self._error = exc
                    log.error("recording to %s failed: %s", self.path, exc)
        finally:
            try:
                self._file.close()
            except Exception as exc:
                if self._error is None:
                    self._error = exc

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
                self._file.write(np.zeros((gap, self.channels), dtype=np.float32))
                self._frames += gap
        elif position < self._frames:
            block = block[self._frames - position :]
        if len(block) == 0:
            return
        # libsndfile wraps float samples beyond ±1 around when converting to PCM; clip instead.
        self._file.write(np.clip(block, -1.0, 1.0))
        self._frames += len(block)

    def _update_header(self) -> None:
        # soundfile has no public call for this; its cffi handles are stable and the call is
        # only an optimisation for crash safety, so a missing attribute just skips it.
        try:
            handle = self._file._file
            sf._snd.sf_command(handle, _SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)
        except AttributeError:
            return


class RecordingOutput(Output):
    """The session's audio to a WAV file: an :class:`~daemon.outputs.base.Output` around a
    :class:`WavRecorder`, finalised after pyo stopped.

    The file is opened on the first audio block, when the clock's real sample rate is known
    (JACK imposes its own); the folder is made (and checked writable) before the music starts.

    Parameters
    ----------
    path : the WAV file to write.
    subtype : as for :class:`WavRecorder`.
    """

    stage = Stage.RECORDING
    name = "recording"

    def __init__(self, path: Path, *, subtype: str = "PCM_16") -> None:
        self.path = Path(path)
        self._subtype = subtype
        self.recorder: WavRecorder | None = None

    @property
    def seconds_written(self) -> float:
        """Seconds of audio in the file so far."""
        return 0.0 if self.recorder is None else self.recorder.seconds_written

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
        # One file open on the audio thread, once, at the very start.
        if self.recorder is None:
            self.recorder = WavRecorder(
                self.path, sample_rate=self.clock.sample_rate, subtype=self._subtype
            )
        self.recorder.write(block, audio_time)

    async def _aclose(self) -> None:
        if self.recorder is None:
            return
        try:
            await asyncio.to_thread(self.recorder.close)
        except OSError as exc:  # e.g. the disk filled up: the file holds what was written
            raise MoodscoreError(str(exc)) from exc
