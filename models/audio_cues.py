"""Game-audio cues per analysis window, and how they move the scene model's probabilities.

What a game sounds like says things its picture may not: a voice points to dialogue (a visual
novel's text box looks like a menu to a model that learnt Doom), loud dense transients (shots,
hits, explosions) to combat. Per 0.5 s window of the game's own audio, at 16 kHz mono:

==========  =========================================================================  ======
cue         per window                                                                 range
==========  =========================================================================  ======
speech      Silero VAD's speech probability, mean over the window's 32 ms chunks       0..1
            (run at 8 kHz: speech needs no more, and it is 25% cheaper)
loudness    RMS level, -60 dBFS -> 0 .. -10 dBFS -> 1                                   0..1
onsets      transients per second (spectral-flux peaks 3 median deviations over the    0..1
            last 2 s, 48 ms apart), / :data:`ONSETS_FULL`
low         share of the energy below 150 Hz (rumble, explosions, engines)              0..1
==========  =========================================================================  ======

Fusion (:func:`fuse`) is a likelihood ratio per class, applied to the picture model's
probabilities before its smoothing, then renormalised:

- speech evidence ``e_s = (speech - 0.5) / 0.5`` (0 below 0.5) multiplies ``dialogue`` by
  ``1 + SPEECH_GAIN * e_s * (1 - e_c)`` (a shouted call-out in a fight is not a dialogue);
- combat evidence ``e_c = loudness * min(1, onsets + LOW_WEIGHT * low)``, counted from
  :data:`COMBAT_GATE` and rescaled to 0..1, multiplies ``combat`` by ``1 + COMBAT_GAIN * e_c``;
- a class the picture gives less than :data:`VETO` is never raised (audio alone never names a
  scene the picture flatly contradicts), and below :data:`QUIET_DB` (silence, a muted game) no
  cue speaks and the probabilities pass unchanged.

At full evidence a class the picture gives 0.3 ends at 0.63, one it gives 0.1 at 0.31: audio tips
a close call, it does not overrule the picture.

Feedback (:func:`band_envelopes`, :func:`feedback_match`): moodscore's own music must never
drive the scene. The captured window's log-energy envelopes in six bands (16 ms frames every 10 ms,
100-6000 Hz) are correlated with those of what the engine played, at every delay from 0 to
500 ms; a mean correlation of :data:`FEEDBACK_MATCH` or more means the capture hears the music.

The constants were set by hand on the Ren'Py tutorial's voiced clips and OpenArena's deathmatch
audio, and measured on other clips (``models/SCENE_CARD.md``, "Audio cues").

numpy and torch (the VAD); no I/O. Silero VAD's weights ship inside its wheel.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

RATE = 16_000  # cue analysis rate, samples per second (mono)
VAD_RATE = 8_000
VAD_CHUNK = 256  # Silero VAD's chunk at 8 kHz (32 ms)
N_FFT = 512
HOP = 256
LOW_HZ = 150.0
ONSETS_FULL = 8.0  # transients per second that count as "dense" (1.0)
ONSET_HISTORY = 2 * RATE // HOP  # flux frames the onset threshold adapts over (2 s)
ONSET_GAP = 3  # frames (48 ms) between two counted transients
QUIET_DB = -50.0  # below this RMS level (dBFS) no audio cue speaks

SPEECH_GATE = 0.5
SPEECH_GAIN = 3.0
COMBAT_GATE = 0.4
COMBAT_GAIN = 3.0
LOW_WEIGHT = 0.25
VETO = 0.1
CUE_SPEAKS = 0.5  # an audio cue at least this high is recorded as one that spoke

AUDIO_CUE_NAMES = ("speech", "loudness", "onsets", "low")


@dataclass(frozen=True, slots=True)
class AudioCues:
    """One window's audio cues (see the module docstring); ``level_db`` is the RMS in dBFS."""

    speech: float
    loudness: float
    onsets: float
    low: float
    level_db: float

    @property
    def quiet(self) -> bool:
        return self.level_db < QUIET_DB

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in AUDIO_CUE_NAMES}


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """``samples`` [shape=(n,)] from ``rate_in`` to ``rate_out`` Hz, float32.

    Down: a moving average over one output sample's span (the anti-aliasing of a boxcar: enough
    for band envelopes and a VAD, and far cheaper than a long FIR), then linear interpolation;
    an integer ratio (48 -> 16 kHz) is the average of each group. numpy only: scipy.signal's
    import alone takes seconds.
    """
    x = samples.astype(np.float32)
    if rate_in == rate_out or x.size == 0:
        return x
    ratio = rate_in / rate_out
    if ratio == int(ratio):
        q = int(ratio)
        return x[: x.size // q * q].reshape(-1, q).mean(axis=1)
    if ratio > 1:
        span = round(ratio)
        summed = np.cumsum(np.concatenate([np.zeros(span, np.float32), x]), dtype=np.float64)
        x = ((summed[span:] - summed[:-span]) / span).astype(np.float32)
    count = int(x.size / ratio)
    where = np.arange(count, dtype=np.float64) * ratio
    return np.interp(where, np.arange(x.size), x).astype(np.float32)


def level_db(samples: np.ndarray) -> float:
    """RMS level of ``samples`` [shape=(n,), float in -1..1] in dBFS (-120 for silence)."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * math.log10(max(rms, 1e-6))


class SignalCues:
    """Loudness, transient density and low-frequency share of a stream, window by window.

    Streaming: the spectral flux of a window's first frame is taken against the last frame of
    the window before, and the onset threshold adapts over the last two seconds.
    """

    def __init__(self) -> None:
        self._window = np.hanning(N_FFT).astype(np.float32)
        freqs = np.fft.rfftfreq(N_FFT, 1.0 / RATE)
        self._low_bins = freqs < LOW_HZ
        self.reset()

    def reset(self) -> None:
        self._tail = np.zeros(N_FFT - HOP, dtype=np.float32)
        self._last_mag: np.ndarray | None = None
        self._flux_history: list[float] = []

    def push(self, samples: np.ndarray) -> tuple[float, float, float, float]:
        """(loudness, onsets, low, level_db) of the next window.

        samples : np.ndarray [shape=(n,), dtype=float32] at :data:`RATE`, mono, -1..1.
        """
        level = level_db(samples)
        loudness = min(1.0, max(0.0, (level + 60.0) / 50.0))
        seconds = samples.size / RATE
        joined = np.concatenate([self._tail, samples.astype(np.float32)])
        self._tail = joined[-(N_FFT - HOP) :].copy()
        count = 1 + (joined.size - N_FFT) // HOP if joined.size >= N_FFT else 0
        if count <= 0 or seconds <= 0:
            return loudness, 0.0, 0.0, level
        index = np.arange(N_FFT)[None, :] + HOP * np.arange(count)[:, None]
        frames = joined[index] * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        total = float(power.sum())
        low = float(power[:, self._low_bins].sum()) / total if total > 1e-12 else 0.0
        mag = np.log1p(100.0 * np.sqrt(power))
        previous = mag[:-1]
        if self._last_mag is not None:
            previous = np.vstack([self._last_mag[None, :], previous])
            flux = np.maximum(0.0, mag - previous).mean(axis=1)
        else:
            flux = np.concatenate([[0.0], np.maximum(0.0, mag[1:] - previous).mean(axis=1)])
        self._last_mag = mag[-1]
        onsets = self._count_onsets(flux, frame_db=10.0 * np.log10(power.mean(axis=1) + 1e-12))
        return loudness, min(1.0, onsets / seconds / ONSETS_FULL), min(1.0, low), level

    def _count_onsets(self, flux: np.ndarray, *, frame_db: np.ndarray) -> int:
        history = self._flux_history
        recent = np.asarray(history[-ONSET_HISTORY:] if history else flux)
        median = float(np.median(recent))
        spread = float(np.median(np.abs(recent - median)))
        # A transient stands out of the last two seconds' flux, not just of its neighbours.
        threshold = max(0.15, median + 3.0 * spread + 0.05)
        count = 0
        last = -ONSET_GAP
        for i, value in enumerate(flux):
            before = flux[i - 1] if i > 0 else 0.0
            after = flux[i + 1] if i + 1 < flux.size else 0.0
            peak = value > threshold and value >= before and value > after
            if peak and frame_db[i] > -30.0 and i - last >= ONSET_GAP:
                count += 1
                last = i
        history.extend(float(v) for v in flux)
        del history[: max(0, len(history) - ONSET_HISTORY)]
        return count


class SpeechDetector:
    """Silero VAD over a stream, a speech probability per window (see the module docstring).

    Parameters
    ----------
    threads : torch threads for the VAD (one: it is a small LSTM on 32 ms chunks).

    Raises
    ------
    ImportError
        silero-vad is not installed.
    """

    def __init__(self, *, threads: int = 1) -> None:
        import torch
        from silero_vad import load_silero_vad

        self._torch = torch
        self._threads = threads
        self._model: Any = load_silero_vad(onnx=False)
        self.reset()

    def reset(self) -> None:
        self._model.reset_states()
        self._rest = np.zeros(0, dtype=np.float32)

    def push(self, samples: np.ndarray) -> float:
        """Mean speech probability of the window's 32 ms chunks (0 when none is complete).

        samples : np.ndarray [shape=(n,), dtype=float32] at :data:`RATE`, mono.
        """
        half = resample(samples, RATE, VAD_RATE)
        joined = np.concatenate([self._rest, half])
        count = joined.size // VAD_CHUNK
        self._rest = joined[count * VAD_CHUNK :]
        if count == 0:
            return 0.0
        torch = self._torch
        if torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)
        chunks = torch.from_numpy(joined[: count * VAD_CHUNK].reshape(count, VAD_CHUNK).copy())
        total = 0.0
        with torch.inference_mode():
            for chunk in chunks:
                total += float(self._model(chunk, VAD_RATE))
        return total / count


def fuse(
    classes: tuple[str, ...] | list[str], probs: np.ndarray, cues: AudioCues
) -> tuple[np.ndarray, dict[str, float]]:
    """The picture model's probabilities moved by the audio cues (see the module docstring).

    classes : the model's class names; probs : np.ndarray [shape=(len(classes),)] summing to 1.
    Returns the fused probabilities and the evidence that moved them (``speech``, ``combat``:
    0..1, only those above 0).
    """
    if cues.quiet:
        return probs, {}
    speech = max(0.0, (cues.speech - SPEECH_GATE) / (1.0 - SPEECH_GATE))
    raw = cues.loudness * min(1.0, cues.onsets + LOW_WEIGHT * cues.low)
    combat = max(0.0, (raw - COMBAT_GATE) / (1.0 - COMBAT_GATE))
    gains = np.ones(len(classes), dtype=np.float64)
    moved: dict[str, float] = {}
    if "dialogue" in classes and speech > 0:
        i = list(classes).index("dialogue")
        if probs[i] >= VETO:
            gains[i] = 1.0 + SPEECH_GAIN * speech * (1.0 - combat)
            moved["speech"] = speech * (1.0 - combat)
    if "combat" in classes and combat > 0:
        i = list(classes).index("combat")
        if probs[i] >= VETO:
            gains[i] = 1.0 + COMBAT_GAIN * combat
            moved["combat"] = combat
    if not moved:
        return probs, {}
    fused = probs * gains
    return (fused / fused.sum()).astype(probs.dtype), moved


# --------------------------------------------------------------------------- feedback

ENV_HOP = 160  # 10 ms at RATE
ENV_FFT = 256
BAND_EDGES_HZ = (100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 6000.0)
MAX_DELAY_S = 0.5
FEEDBACK_MATCH = 0.6  # unrelated sounds reach 0.46 in 95% of windows, 0.58 at worst


def band_envelopes(samples: np.ndarray) -> np.ndarray:
    """Log-energy envelopes of ``samples`` [shape=(n,), at RATE] in six bands, 10 ms frames.

    Returns np.ndarray [shape=(frames, 6), dtype=float32].
    """
    x = samples.astype(np.float32)
    if x.size < ENV_FFT:
        return np.zeros((0, len(BAND_EDGES_HZ) - 1), dtype=np.float32)
    count = 1 + (x.size - ENV_FFT) // ENV_HOP
    index = np.arange(ENV_FFT)[None, :] + ENV_HOP * np.arange(count)[:, None]
    power = np.abs(np.fft.rfft(x[index] * np.hanning(ENV_FFT).astype(np.float32), axis=1)) ** 2
    freqs = np.fft.rfftfreq(ENV_FFT, 1.0 / RATE)
    bands = [
        power[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
        for lo, hi in itertools.pairwise(BAND_EDGES_HZ)
    ]
    return np.log10(np.stack(bands, axis=1) + 1e-10).astype(np.float32)


def feedback_match(captured: np.ndarray, played: np.ndarray) -> tuple[float, float]:
    """How well the captured window follows what was played, and at which delay.

    captured : band envelopes of the captured window [shape=(m, 6)] (:func:`band_envelopes`);
    played : band envelopes of what was played, ending when the captured window ends and
    reaching at least :data:`MAX_DELAY_S` further back [shape=(n, 6)], n >= m.
    Returns (best mean correlation over the bands, its delay in seconds); (0, 0) when either
    is flat (silence, a held chord: nothing to compare).
    """
    m = captured.shape[0]
    if m < 10 or played.shape[0] < m:
        return 0.0, 0.0
    c = captured - captured.mean(axis=0)
    c_norm = np.sqrt((c * c).sum(axis=0))
    live = c_norm > 0.5  # bands that move at all in the capture
    if not live.any():
        return 0.0, 0.0
    max_lag = min(played.shape[0] - m, round(MAX_DELAY_S * RATE / ENV_HOP))
    end = played.shape[0]
    # Every delay at once: stretch k of `stretches` is what was played `k` frames before the
    # capture's window [shape=(lags, m, bands)].
    window = played[end - m - max_lag : end]
    stretches = np.lib.stride_tricks.sliding_window_view(window, m, axis=0).transpose(0, 2, 1)
    stretches = stretches[::-1]
    p = stretches - stretches.mean(axis=1, keepdims=True)
    p_norm = np.sqrt((p * p).sum(axis=1))  # [lags, bands]
    use = live[None, :] & (p_norm > 0.5)
    corr = (c[None, :, :] * p).sum(axis=1) / np.maximum(c_norm[None, :] * p_norm, 1e-9)
    # Bands the music leaves still count as no match: a partial match is not the music.
    scores = np.where(use, corr, 0.0).sum(axis=1) / int(live.sum())
    best_lag = int(np.argmax(scores))
    best = max(0.0, float(scores[best_lag]))
    return best, best_lag * ENV_HOP / RATE
