"""The game's own audio in game mode: cues per window, fused with the scene model, feedback-proof.

:class:`GameAudioCues` is what :class:`~daemon.analysis.game.GameModel` asks once per window
(:meth:`GameAudioCues.fuse`): it takes the window's audio from a
:class:`~daemon.sources.game_audio.GameAudioInput`, measures the cues of
:mod:`models.audio_cues` (speech, loudness, transients, low end) and moves the picture model's
probabilities by them. Nothing happens without audio (no track, a capture not running yet,
silence): the probabilities pass unchanged.

Cost: all of it runs in one worker thread of its own (one torch thread), beside the picture
model, off the window's 10 ms budget: Silero VAD alone takes 5-6 ms per 0.5 s window on one
core, the feedback check about 2 ms, the rest under 1 ms. For a file the next window's audio
goes to the worker while this one is fused (the result is the same as in line: the worker
takes the windows in order); live, a window hands its audio to the worker and reads the
reading of the window before (handed over 0.5 s earlier, so it is ready): the audio is one
window, 0.5 s, behind the picture. Quiet windows skip the VAD.

Feedback: moodscore's own music must never drive the scene. A live capture of the whole desktop
hears the music too; :class:`PlayedAudio` keeps the last seconds of what the engine played (an
audio listener on the engine) and every window's capture is compared with it
(:func:`models.audio_cues.feedback_match`, delays 0-500 ms). A window that matches has its audio
cues dropped (it is read from the picture alone) and is counted (health ``game_audio_feedback``);
once three of the last four windows matched, one warning says how to route the music away from
the capture.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from daemon.errors import SourceError
from daemon.sources.game_audio import GameAudioInput, _resample
from models.audio_cues import (
    CUE_SPEAKS,
    MAX_DELAY_S,
    AudioCues,
    SignalCues,
    SpeechDetector,
    band_envelopes,
    feedback_match,
    fuse,
    level_db,
)
from models.audio_cues import FEEDBACK_MATCH as FEEDBACK_MATCH
from models.audio_cues import QUIET_DB as QUIET_DB

log = logging.getLogger("moodscore.analysis.game_audio")

WARN_AFTER = 3  # matching windows among the last four before the feedback warning

ROUTING_ADVICE = (
    "route moodscore's music to its own device (--device, a JACK port or a PulseAudio null sink) "
    "and capture only the game's application audio (README, 'Game audio')"
)


class PlayedAudio:
    """The last seconds of what the engine played, stamped with the wall clock as they are made.

    :meth:`listen` is an engine audio listener (``engine.add_audio_listener(played.listen)``);
    it only appends, on the audio thread. :meth:`before` returns, at 16 kHz mono, what was played
    up to a wall-clock time.

    Parameters
    ----------
    sample_rate : the engine's sample rate, asked when it is needed (JACK imposes its own once
        the server runs).
    keep_s : seconds kept.
    now : the wall clock that stamps each block (the capture's, ``time.perf_counter``).
    """

    def __init__(
        self,
        *,
        sample_rate: Callable[[], int],
        keep_s: float = 2.0,
        now: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._rate = sample_rate
        self._now = now
        self._keep = keep_s
        self._lock = threading.Lock()
        self._blocks: collections.deque[tuple[float, np.ndarray]] = collections.deque()

    def listen(self, block: np.ndarray, audio_time: float) -> None:
        now = self._now()
        mono = block.mean(axis=1) if block.ndim == 2 else block
        with self._lock:
            self._blocks.append((now, mono.astype(np.float32)))
            while self._blocks and now - self._blocks[0][0] > self._keep:
                self._blocks.popleft()

    def before(self, wall: float, seconds: float) -> np.ndarray | None:
        """What was played in the ``seconds`` up to ``wall`` [shape=(n,), 16 kHz], or None."""
        with self._lock:
            blocks = [b for t, b in self._blocks if t <= wall + 1e-3]
        if not blocks:
            return None
        rate = self._rate()
        joined = np.concatenate(blocks)[-round(seconds * rate) :]
        return _resample(joined, rate)


class Reading(NamedTuple):
    """One window's audio: its cues (None: no audio, or dropped), and whether it was dropped
    because the capture heard moodscore's own music."""

    cues: AudioCues | None
    feedback: bool


class GameAudioCues:
    """The audio side of game mode (see the module docstring).

    Parameters
    ----------
    open_input : makes the audio input; called on the first window (a live capture of the
        engine's own ports only exists once the music runs). A :class:`SourceError` it raises
        is logged once, on one line, and the game is read from the picture alone.
    played : what the engine played, for the feedback check (live captures only).
    speech : run the VAD (False: speech is always 0; for benches and tests of the rest).
    retry_s : a live device that did not open is tried again this often (seconds of source
        time; a game started after moodscore, a port that appears later); None: never.
    """

    def __init__(
        self,
        *,
        open_input: Callable[[], GameAudioInput],
        played: PlayedAudio | None = None,
        speech: bool = True,
        retry_s: float | None = None,
    ) -> None:
        self._open_input = open_input
        self._input: GameAudioInput | None = None
        self._failed = False
        self._retry_s = retry_s
        self._retry_at = 0.0
        self._played = played
        self._signal = SignalCues()
        self._vad = SpeechDetector() if speech else None
        # One worker, so the streaming cues see the windows in order.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="game-audio")
        self._previous: concurrent.futures.Future[Reading] | None = None
        self._ahead: dict[float, concurrent.futures.Future[Reading]] = {}
        self.windows = 0
        """Windows that had audio."""
        self.feedback_windows = 0
        """Windows whose audio cues were dropped because the capture heard moodscore's music."""
        self.missing = False
        """The input did not open (the one-line error was logged); False again once it does."""
        self._warned = False
        self._recent: collections.deque[bool] = collections.deque(maxlen=4)
        self.last_match = (0.0, 0.0)

    @property
    def description(self) -> str:
        return self._input.description if self._input is not None else "game audio"

    def _ensure_input(self, now: float) -> GameAudioInput | None:
        if self._input is not None:
            return self._input
        if self._failed and (self._retry_s is None or now < self._retry_at):
            return None
        try:
            self._input = self._open_input()
        except SourceError as exc:
            if not self._failed:
                again = f", trying again every {self._retry_s:g} s" if self._retry_s else ""
                log.error("%s; game mode reads the picture alone%s", exc, again)
            self._failed = self.missing = True
            self._retry_at = now + (self._retry_s or 0.0)
            return None
        self.missing = False
        log.info("game audio: %s", self._input.description)
        return self._input

    def _work(self, samples: np.ndarray, end_wall: float | None, description: str) -> Reading:
        """One window's measurement, in the worker: the feedback check, then the cues."""
        if self._is_feedback(samples, end_wall, description):
            return Reading(None, feedback=True)
        loudness, onsets, low, level = self._signal.push(samples)
        speech = 0.0
        if self._vad is not None:
            if level < QUIET_DB:
                self._vad.reset()  # silence: the next voice starts a fresh reading
            else:
                speech = self._vad.push(samples)
        cues = AudioCues(speech=speech, loudness=loudness, onsets=onsets, low=low, level_db=level)
        return Reading(cues, feedback=False)

    def measure(self, t_start: float, t_end: float) -> Reading:
        """The window's reading: its audio cues (None without audio, or while the capture
        hears moodscore's music), from the worker (see the module docstring)."""
        source = self._ensure_input(t_end)
        if source is None:
            return Reading(None, feedback=False)
        samples = source.window(t_start, t_end)
        if samples is None or samples.size == 0:
            return Reading(None, feedback=False)
        self.windows += 1
        work = self._worker.submit
        if source.live:
            # This window goes to the worker; the one before, handed over 0.5 s ago, is read.
            future = work(self._work, samples, source.end_wall, source.description)
            previous, self._previous = self._previous, future
            return previous.result() if previous is not None else Reading(None, feedback=False)
        step = t_end - t_start
        queued = self._ahead.get(t_end)
        if queued is None:
            queued = work(self._work, samples, None, "")
        # The next window goes to the worker now, so it is measured beside the picture.
        ahead = source.window(t_end, t_end + step)
        self._ahead = {}
        if ahead is not None and ahead.size:
            self._ahead[t_end + step] = work(self._work, ahead, None, "")
        return queued.result()

    def _is_feedback(self, samples: np.ndarray, end_wall: float | None, description: str) -> bool:
        if self._played is None or end_wall is None:
            return False
        seconds = samples.size / 16_000
        played = self._played.before(end_wall, seconds + MAX_DELAY_S + 0.05)
        if played is None or level_db(samples) < QUIET_DB:
            return False
        score, delay = feedback_match(band_envelopes(samples), band_envelopes(played))
        self.last_match = (score, delay)
        matched = score >= FEEDBACK_MATCH
        self._recent.append(matched)
        if matched:
            # A window that matches is dropped at once (the picture alone reads it, at little
            # cost); the warning waits until it persists, so a chance match stays quiet.
            self.feedback_windows += 1
            if not self._warned and sum(self._recent) >= WARN_AFTER:
                self._warned = True
                log.warning(
                    "game audio (%s) hears moodscore's own music (match %.2f at %d ms): its cues "
                    "are off while it does; %s",
                    description,
                    score,
                    round(delay * 1000),
                    ROUTING_ADVICE,
                )
        return matched

    def fuse(
        self, classes: tuple[str, ...] | list[str], probs: np.ndarray, t_start: float, t_end: float
    ) -> tuple[np.ndarray, dict[str, float]]:
        """The window's probabilities moved by its audio cues, and the features to record:
        ``audio.<cue>`` for the cues at or above :data:`CUE_SPEAKS`, ``audio_to.<class>`` for
        the evidence that moved a class, ``audio_feedback`` 1.0 while the music is heard."""
        reading = self.measure(t_start, t_end)
        cues = reading.cues
        if cues is None:
            return probs, {"audio_feedback": 1.0} if reading.feedback else {}
        fused, moved = fuse(classes, probs, cues)
        features = {f"audio.{k}": round(v, 4) for k, v in cues.as_dict().items() if v >= CUE_SPEAKS}
        names = {"speech": "dialogue", "combat": "combat"}
        features.update((f"audio_to.{names[k]}", round(v, 4)) for k, v in moved.items())
        return fused, features

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        if self._input is not None:
            self._input.close()
