"""``moodscore library scan DIR``: analyse a folder of audio and MIDI files into the index.

Only new and changed files are analysed (a file is unchanged when its modification time and size
match the index), files that went away are dropped, and files that cannot be read are reported
and remembered (retried once they change). Audio is decoded with soundfile (WAV, FLAC, MP3, OGG
Vorbis/Opus, AIFF; PyAV for what libsndfile cannot read, such as M4A), mixed to mono and
resampled to 22,050 Hz with soxr before the analysis; MIDI files are analysed from their notes.

Several files are analysed side by side in a pool of processes (``library.workers``); the pool
starts only when there is more than one file to analyse, so a re-scan with nothing new imports
neither librosa nor numba and takes a fraction of a second.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from daemon.errors import ConfigError
from daemon.library.features import ANALYSIS_RATE, TrackFeatures
from daemon.library.index import LibraryIndex

log = logging.getLogger("moodscore.library")

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".m4a")
MIDI_SUFFIXES = (".mid", ".midi")
SUFFIXES = AUDIO_SUFFIXES + MIDI_SUFFIXES

Progress = Callable[[int, int, str], None]


@dataclass
class ScanReport:
    """What a scan did.

    found : audio and MIDI files in the folder.
    analysed : files analysed now (new or changed) and stored.
    unchanged : files skipped because the index already holds them as they are.
    removed : index entries dropped because their file is gone.
    failed : (file, reason) for files that could not be analysed now.
    failed_before : unchanged files that could not be analysed in an earlier scan.
    audio_seconds : length of the files analysed now.
    seconds : wall time of the whole scan.
    """

    found: int = 0
    analysed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    failed_before: int = 0
    audio_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def x_realtime(self) -> float | None:
        """Seconds of music analysed per second of wall time (None when nothing was)."""
        if self.analysed == 0 or self.seconds <= 0:
            return None
        return self.audio_seconds / self.seconds


def find_files(directory: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every audio or MIDI file under ``directory`` (recursively, hidden entries skipped) with
    its stat, in path order."""
    stack = [directory]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s (%s); skipped", folder, exc)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
                elif entry.is_file() and Path(entry.name).suffix.lower() in SUFFIXES:
                    yield Path(entry.path), entry.stat()
            except OSError as exc:
                log.warning("cannot read %s (%s); skipped", entry.path, exc)
        stack.extend(reversed(subfolders))


def scan(
    directory: Path,
    index: LibraryIndex,
    *,
    workers: int = 2,
    progress: Progress | None = None,
) -> ScanReport:
    """Bring ``index`` up to date with the audio and MIDI files under ``directory``.

    Parameters
    ----------
    directory : the folder to scan (recursively).
    index : the open index to update.
    workers : processes analysing files side by side (1: in this process).
    progress : called as ``progress(done, total, path)`` after each analysed file.

    Raises
    ------
    ConfigError : ``directory`` is not a folder.
    """
    started = time.perf_counter()
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a folder; pass the folder that holds your music")
    root = directory.resolve()
    report = ScanReport()
    known = index.known()
    prefix = str(root).rstrip(os.sep) + os.sep
    seen: set[str] = set()
    todo: list[tuple[Path, int, int]] = []
    for path, stat in find_files(root):
        key = str(path)
        seen.add(key)
        report.found += 1
        entry = known.get(key)
        if entry is not None and entry[0] == stat.st_mtime_ns and entry[1] == stat.st_size:
            if entry[2]:
                report.unchanged += 1
            else:
                report.failed_before += 1
            continue
        todo.append((path, stat.st_mtime_ns, stat.st_size))
    gone = [key for key in known if key.startswith(prefix) and key not in seen]
    if gone:
        index.remove(gone)
        report.removed = len(gone)
    for done, (path, mtime_ns, size, result) in enumerate(_analyse_all(todo, workers), start=1):
        if isinstance(result, TrackFeatures):
            index.put(path, mtime_ns=mtime_ns, size=size, features=result)
            report.analysed += 1
            report.audio_seconds += result.duration
        else:
            index.put_failure(path, mtime_ns=mtime_ns, size=size, error=result)
            report.failed.append((path, result))
        if progress is not None:
            progress(done, len(todo), str(path))
    report.seconds = time.perf_counter() - started
    return report


def _analyse_all(
    todo: list[tuple[Path, int, int]], workers: int
) -> Iterator[tuple[Path, int, int, TrackFeatures | str]]:
    if workers <= 1 or len(todo) <= 1:
        for path, mtime_ns, size in todo:
            yield path, mtime_ns, size, analyse_file_safely(path)
        return
    _compile_kernels_once()
    # spawn, not fork: the caller may hold threads (pyo, torch) that a fork would copy mid-lock.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=context
    ) as pool:
        futures = {
            pool.submit(analyse_file_safely, path): (path, mtime_ns, size)
            for path, mtime_ns, size in todo
        }
        for future in concurrent.futures.as_completed(futures):
            path, mtime_ns, size = futures[future]
            try:
                result: TrackFeatures | str = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                # A worker died (out of memory, killed): not the file's fault; analyse here.
                result = analyse_file_safely(path)
            yield path, mtime_ns, size, result


def _compile_kernels_once() -> None:
    """Analyse a few seconds of noise here before the workers start.

    librosa's numba kernels are compiled on first use into numba's cache on disk. Workers that
    compile the same kernel at the same moment (a fresh install's first scan) write that cache
    over one another, and every later process that loads it crashes with a segmentation fault
    (seen here: every librosa call of every later run). Compiled once here, the workers only
    read it.
    """
    from daemon.library.features import analyse_audio

    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(4 * ANALYSIS_RATE)).astype(np.float32)
    analyse_audio(noise, ANALYSIS_RATE)


def analyse_file_safely(path: Path) -> TrackFeatures | str:
    """The file's features, or one line saying why it could not be analysed."""
    try:
        return analyse_file(path)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return text[:300]


def analyse_file(path: Path) -> TrackFeatures:
    """Analyse one audio or MIDI file.

    Raises ValueError (or OSError, or a decoder's error) when it cannot be read.
    """
    from daemon.library.features import analyse_audio, analyse_midi

    if path.suffix.lower() in MIDI_SUFFIXES:
        return analyse_midi(path)
    y = load_audio(path, rate=ANALYSIS_RATE)
    return analyse_audio(y, ANALYSIS_RATE)


def load_audio(path: Path, *, rate: int = ANALYSIS_RATE, mono: bool = True) -> np.ndarray:
    """Decode a whole audio file, resampled to ``rate``.

    Returns np.ndarray [shape=(n,), dtype=float32] when ``mono``, else [shape=(n, 2)] (a mono
    file is doubled, channels beyond two are dropped).

    Raises ValueError when neither soundfile nor PyAV can decode the file, or it is empty.
    """
    import soundfile

    try:
        audio, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as first:
        try:
            audio, source_rate = _decode_with_av(path)
        except Exception as exc:
            raise ValueError(f"not a readable audio file ({first})") from exc
    if audio.size == 0:
        raise ValueError("the audio file holds no samples")
    if mono:
        signal = audio.mean(axis=1, dtype=np.float32)
    else:
        signal = audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1)
    if source_rate != rate:
        import soxr  # type: ignore[import-untyped]

        signal = soxr.resample(signal, source_rate, rate)
    return np.ascontiguousarray(signal, dtype=np.float32)


def _decode_with_av(path: Path) -> tuple[np.ndarray, int]:
    """The first audio stream as float32 [shape=(n, channels)] and its rate."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        resampler = av.AudioResampler(format="fltp", rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        raise ValueError("no audio decoded")
    return np.concatenate(chunks, axis=1).T.astype(np.float32), rate
