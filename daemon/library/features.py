"""What the music library knows about a track: tempo, key, loudness, a representative segment,
chroma and MFCC summaries, and an estimated valence/arousal, from audio or from MIDI notes.

Audio is analysed mono at :data:`ANALYSIS_RATE` (22,050 Hz) from one STFT (2048-point frames, hop
512): a mel spectrogram gives the MFCCs and the onset envelope, the power spectrum the chroma,
the magnitude the loudness and the spectral centroid, the onset envelope the tempo (librosa's
beat tracker) and the onsets.

Representative segment (the method of research seed 001, Hayashi & Kitahara): the track's MFCC
frames are clustered by k-means (4 clusters); the 12 s span holding the most frames of the most
frequent cluster is the segment. Summaries and the mood are measured over it (a track shorter
than 12 s is its own segment). MIDI files are analysed from their notes, without rendering: the
same segment search runs over half-second frames of pitch-class, note-count, pitch and velocity
features, and loudness, brightness and onset rate are estimated from velocities, pitches and
onsets.

Mood (valence and arousal in [-1, 1]), from per-feature terms each clipped to [-1, 1]:

- tempo ``T = (bpm - 120) / 60`` (60 bpm -1, 180 bpm +1);
- onset rate ``O = log2(onsets per second / 2) / 2`` (0.5/s -1, 2/s 0, 8/s +1);
- loudness ``L = (RMS dBFS + 27) / 10`` (-37 dBFS -1, -17 dBFS +1);
- brightness ``B = log2(spectral centroid / 1200 Hz) / 1.5`` (425 Hz -1, 3.4 kHz +1);
- mode ``M = tanh(mode strength / 0.08)``, the strength being how much better the best major
  key profile (Krumhansl-Kessler) fits the chroma than the best minor one (correlations).

``arousal = 0.3 T + 0.4 O + 0.2 L + 0.1 B`` and ``valence = 0.7 M + 0.15 T + 0.15 B``: tempo,
note rate and loudness raise arousal; major mode, and to a lesser degree a quick tempo and a
bright sound, raise valence (the classic cues of music-emotion studies). The mood is measured
per 3 s window (hop 1.5 s) of the segment, with the track's tempo and half-track, half-window
mode; the track's valence/arousal is the mean of its windows, and the windows are the
distribution recommendations compare (see :mod:`daemon.library.recommend`).

Pure numpy/scipy/librosa: no I/O here except reading a MIDI file with mido.

This module stays whole (about 540 lines): the audio and the MIDI analysis share the segment
search and the mood formula above, and a track's features come from one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from daemon.messages import Mode

FEATURES_VERSION = 1
ANALYSIS_RATE = 22050
N_FFT = 2048
HOP = 512
N_MELS = 64
N_MFCC = 13
LOW_BANDS = 12  # mel bands below ~600 Hz
SEGMENT_S = 12.0
CLUSTERS = 4
WINDOW_S = 3.0
WINDOW_HOP_S = 1.5
MIDI_FRAME_S = 0.5
# MIDI estimates: the level of one note at velocity 100, and the centroid as a multiple of the
# mean pitch's fundamental (moodscore's own renders of its MIDI files read back at these).
MIDI_LOUDNESS_DB = -28.0
MIDI_BRIGHTNESS = 2.5
# Silence floor for loudness: a digital-silence file reads as -90 dBFS, not -inf.
SILENCE_DB = -90.0

Kind = Literal["audio", "midi"]

# Krumhansl-Kessler key profiles (C major, C minor), rotated per tonic.
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _standardise(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean(axis=-1, keepdims=True)
    return centred / (centred.std(axis=-1, keepdims=True) + 1e-9)


_PROFILES = np.stack(
    [np.stack([np.roll(_standardise(p), k) for k in range(12)]) for p in (_MAJOR, _MINOR)]
)  # [2 modes, 12 tonics, 12 pitch classes]


@dataclass(frozen=True, slots=True)
class TrackFeatures:
    """One track's analysis.

    kind : ``"audio"`` or ``"midi"``.
    duration : seconds.
    tempo : beats per minute (the beat tracker's, or the MIDI file's first tempo).
    tonic, mode : the best-fitting key (tonic pitch class 0-11, 0 = C).
    mode_strength : best major key correlation minus best minor one (> 0 leans major).
    loudness_db : RMS level of the segment in dBFS (MIDI: estimated from velocities and
        polyphony).
    onset_rate : note onsets per second in the segment.
    centroid_hz : spectral centroid of the segment (MIDI: estimated from the pitches).
    segment : (start, end) of the representative segment, seconds; ``start`` is on a beat
        where the beat tracker found one.
    valence, arousal : the mean of ``windows``.
    windows : per-window (valence, arousal) across the segment, in time order.
    chroma_mean, chroma_std : 12 values each, the segment's chroma (energy-normalised).
    mfcc_mean, mfcc_std : 13 values each for audio; empty for MIDI.
    """

    kind: Kind
    duration: float
    tempo: float
    tonic: int
    mode: Mode
    mode_strength: float
    loudness_db: float
    onset_rate: float
    centroid_hz: float
    segment: tuple[float, float]
    valence: float
    arousal: float
    windows: tuple[tuple[float, float], ...]
    chroma_mean: tuple[float, ...]
    chroma_std: tuple[float, ...]
    mfcc_mean: tuple[float, ...] = ()
    mfcc_std: tuple[float, ...] = ()


# -- the documented mood mapping --------------------------------------------------------------


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def tempo_term(bpm: float) -> float:
    """-1 at 60 bpm, +1 at 180 bpm, linear between."""
    return _clip((bpm - 120.0) / 60.0)


def mood_from_measures(
    *,
    tempo: float,
    onset_rate: float,
    loudness_db: float,
    centroid_hz: float,
    mode_strength: float,
) -> tuple[float, float]:
    """(valence, arousal) in [-1, 1] from the measures (see the module docstring)."""
    t = tempo_term(tempo)
    o = _clip(math.log2(max(onset_rate, 1e-3) / 2.0) / 2.0)
    loud = _clip((loudness_db + 27.0) / 10.0)
    b = _clip(math.log2(max(centroid_hz, 1.0) / 1200.0) / 1.5)
    m = math.tanh(mode_strength / 0.08)
    arousal = 0.3 * t + 0.4 * o + 0.2 * loud + 0.1 * b
    valence = 0.7 * m + 0.15 * t + 0.15 * b
    return _clip(valence), _clip(arousal)


def key_from_chroma(chroma: np.ndarray) -> tuple[int, Mode, float]:
    """(tonic, mode, mode strength) of a 12-bin pitch-class profile by Krumhansl-Kessler
    correlation; the strength is the best major correlation minus the best minor one."""
    profile = np.asarray(chroma, dtype=np.float64)
    if not np.any(profile > 0) or np.ptp(profile) <= 1e-12:
        return 0, "major", 0.0
    scores = _PROFILES @ _standardise(profile) / 12.0  # [2, 12] correlations
    mode_index, tonic = np.unravel_index(int(np.argmax(scores)), scores.shape)
    strength = float(scores[0].max() - scores[1].max())
    return int(tonic), "major" if mode_index == 0 else "minor", strength


# -- the representative segment (seed 001) ---------------------------------------------------


def representative_span(frames: np.ndarray, *, span: int, seed: int = 0) -> tuple[int, int]:
    """[start, end) frame indices of the ``span``-frame stretch with the most frames of the most
    frequent k-means cluster.

    frames : np.ndarray [shape=(n_frames, n_features)], one row per analysis frame.
    """
    from scipy.cluster.vq import kmeans2

    n = len(frames)
    if n <= span or n < 2 * CLUSTERS:
        return 0, n
    data = np.asarray(frames, dtype=np.float64)
    data = (data - data.mean(axis=0)) / (data.std(axis=0) + 1e-9)
    _, labels = kmeans2(data, CLUSTERS, minit="++", seed=np.random.default_rng(seed))
    mode_cluster = int(np.bincount(labels, minlength=CLUSTERS).argmax())
    hits = np.concatenate(([0], np.cumsum(labels == mode_cluster)))
    counts = hits[span:] - hits[:-span]
    start = int(np.argmax(counts))  # the earliest of equally good spans
    return start, start + span


# -- audio -------------------------------------------------------------------------------------


def analyse_audio(y: np.ndarray, sr: int = ANALYSIS_RATE) -> TrackFeatures:
    """Analyse a mono signal.

    y : np.ndarray [shape=(n,), dtype=float32], mono, at ``sr`` (use :data:`ANALYSIS_RATE`).

    Raises ValueError when the signal is shorter than one analysis frame.
    """
    import librosa

    if len(y) < N_FFT:
        raise ValueError(f"too short to analyse ({len(y) / sr:.2f} s)")
    duration = len(y) / sr
    magnitude = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    power = magnitude**2
    mel_db = librosa.power_to_db(
        librosa.feature.melspectrogram(S=power, sr=sr, n_mels=N_MELS), ref=1.0, top_db=None
    )
    mfcc = librosa.feature.mfcc(S=mel_db, n_mfcc=N_MFCC)
    chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=N_FFT)
    envelope = librosa.onset.onset_strength(S=mel_db, sr=sr, hop_length=HOP)
    # The beat is tracked in the low bands, where kick and bass keep time: over all bands, busy
    # hi-hats and arpeggios pull the tracker to 2/3 or 1/2 of the tempo.
    low = librosa.onset.onset_strength(S=mel_db[:LOW_BANDS], sr=sr, hop_length=HOP)
    beat_envelope = low if low.max() > 0.05 * max(float(envelope.max()), 1e-9) else envelope
    tempo_value, beats = librosa.beat.beat_track(
        onset_envelope=beat_envelope, sr=sr, hop_length=HOP
    )
    tempo = float(np.atleast_1d(tempo_value)[0]) or 120.0
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sr, hop_length=HOP)
    # RMS per frame from the spectrum (Parseval, Hann window): matches librosa.feature.rms(S=).
    rms = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0]
    centroid = librosa.feature.spectral_centroid(S=magnitude, sr=sr)[0]

    n_frames = mfcc.shape[1]
    frame_s = HOP / sr
    span = round(SEGMENT_S / frame_s)
    start, end = representative_span(mfcc.T, span=span)
    beat_frames = np.asarray(beats, dtype=np.int64)
    if len(beat_frames) and end - start < n_frames:
        # Start the segment on the nearest beat, so playing it from there starts on the beat.
        nearest = int(beat_frames[np.argmin(np.abs(beat_frames - start))])
        shift = min(max(nearest, 0), n_frames - (end - start)) - start
        start, end = start + shift, end + shift
    seg = slice(start, end)

    energy = rms[seg] ** 2
    weights = energy / energy.sum() if energy.sum() > 0 else np.full(end - start, 1 / (end - start))
    chroma_seg = chroma[:, seg]
    tonic, mode, strength = key_from_chroma((chroma * rms**2).sum(axis=1))

    windows = []
    window = max(1, round(WINDOW_S / frame_s))
    step = max(1, round(WINDOW_HOP_S / frame_s))
    firsts = list(range(start, max(start + 1, end - window + 1), step))
    for first in firsts:
        last = min(first + window, end)
        w_rms = rms[first:last]
        w_energy = w_rms**2
        w_onsets = int(np.count_nonzero((onsets >= first) & (onsets < last)))
        w_seconds = (last - first) * frame_s
        _, _, w_strength = key_from_chroma((chroma[:, first:last] * w_energy).sum(axis=1))
        windows.append(
            mood_from_measures(
                tempo=tempo,
                onset_rate=w_onsets / w_seconds,
                loudness_db=_db(float(w_energy.mean())),
                centroid_hz=_weighted_mean(centroid[first:last], w_energy),
                mode_strength=0.5 * strength + 0.5 * w_strength,
            )
        )
    seg_seconds = (end - start) * frame_s
    onset_rate = int(np.count_nonzero((onsets >= start) & (onsets < end))) / seg_seconds
    return _finish(
        kind="audio",
        duration=duration,
        tempo=tempo,
        tonic=tonic,
        mode=mode,
        strength=strength,
        loudness_db=_db(float(energy.mean())),
        onset_rate=onset_rate,
        centroid_hz=_weighted_mean(centroid[seg], weights),
        segment=(start * frame_s, min(end * frame_s, duration)),
        windows=windows,
        chroma=chroma_seg,
        mfcc=mfcc[:, seg],
    )


def _db(power: float) -> float:
    return max(SILENCE_DB, 10.0 * math.log10(power)) if power > 0 else SILENCE_DB


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    total = float(np.sum(weights))
    if total <= 0:
        return float(np.mean(values)) if len(values) else 0.0
    return float(np.sum(values * weights) / total)


def _finish(
    *,
    kind: Kind,
    duration: float,
    tempo: float,
    tonic: int,
    mode: Mode,
    strength: float,
    loudness_db: float,
    onset_rate: float,
    centroid_hz: float,
    segment: tuple[float, float],
    windows: Sequence[tuple[float, float]],
    chroma: np.ndarray,
    mfcc: np.ndarray | None,
) -> TrackFeatures:
    if not windows:
        windows = [
            mood_from_measures(
                tempo=tempo,
                onset_rate=onset_rate,
                loudness_db=loudness_db,
                centroid_hz=centroid_hz,
                mode_strength=strength,
            )
        ]
    points = np.array(windows, dtype=np.float64)
    # Chroma frames normalised to their own energy, so loud passages do not dominate the shape.
    norm = chroma / (chroma.sum(axis=0, keepdims=True) + 1e-9)

    def rounded(values: np.ndarray) -> tuple[float, ...]:
        return tuple(round(float(v), 4) for v in values)

    return TrackFeatures(
        kind=kind,
        duration=round(duration, 3),
        tempo=round(tempo, 2),
        tonic=tonic,
        mode=mode,
        mode_strength=round(strength, 4),
        loudness_db=round(loudness_db, 2),
        onset_rate=round(onset_rate, 3),
        centroid_hz=round(centroid_hz, 1),
        segment=(round(segment[0], 3), round(segment[1], 3)),
        valence=round(float(points[:, 0].mean()), 4),
        arousal=round(float(points[:, 1].mean()), 4),
        windows=tuple((round(float(v), 4), round(float(a), 4)) for v, a in points),
        chroma_mean=rounded(norm.mean(axis=1)),
        chroma_std=rounded(norm.std(axis=1)),
        mfcc_mean=() if mfcc is None else rounded(mfcc.mean(axis=1)),
        mfcc_std=() if mfcc is None else rounded(mfcc.std(axis=1)),
    )


# -- MIDI --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MidiNote:
    """A note of a MIDI file in seconds; ``drum`` for channel 10."""

    start: float
    end: float
    pitch: int
    velocity: int
    drum: bool


def read_midi_notes(path: Path) -> tuple[list[MidiNote], float, float]:
    """(notes, first tempo in bpm, length in seconds) of a Standard MIDI File.

    Raises ValueError (or OSError) when the file does not parse.
    """
    import mido

    try:
        midi = mido.MidiFile(path)
    except (EOFError, KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not a readable MIDI file ({exc})") from exc
    tempo: float | None = None
    now = 0.0
    sounding: dict[tuple[int, int], tuple[float, int]] = {}
    notes: list[MidiNote] = []
    for message in midi:  # delta times in seconds, tempo changes applied
        now += message.time
        if message.type == "set_tempo" and tempo is None:
            tempo = float(mido.tempo2bpm(message.tempo))
        elif message.type == "note_on" and message.velocity > 0:
            sounding.setdefault((message.channel, message.note), (now, message.velocity))
        elif message.type in ("note_on", "note_off"):
            begun = sounding.pop((message.channel, message.note), None)
            if begun is not None:
                notes.append(
                    MidiNote(begun[0], now, message.note, begun[1], drum=message.channel == 9)
                )
    for (channel, pitch), (start, velocity) in sounding.items():
        notes.append(MidiNote(start, now, pitch, velocity, drum=channel == 9))
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes, tempo or 120.0, now


def analyse_midi(path: Path) -> TrackFeatures:
    """Analyse a MIDI file from its notes (no rendering).

    Estimates: loudness ``-28 + 20 log10(mean velocity / 100) + 10 log10(mean polyphony)`` dB;
    centroid 2.5 times the fundamental of the velocity-weighted mean pitch of the notes (a
    typical share of harmonics); onsets are distinct note starts 30 ms apart or more.

    Raises ValueError when the file does not parse or has no notes.
    """
    notes, tempo, length = read_midi_notes(path)
    if not notes:
        raise ValueError("the MIDI file has no notes")
    duration = max(length, max(n.end for n in notes))
    n_frames = max(1, math.ceil(duration / MIDI_FRAME_S))
    chroma = np.zeros((12, n_frames))
    count = np.zeros(n_frames)
    pitch_sum = np.zeros(n_frames)
    velocity_sum = np.zeros(n_frames)
    weight = np.zeros(n_frames)
    sounding_time = np.zeros(n_frames)  # note-seconds per frame, for polyphony
    onset_times: list[float] = []
    for note in notes:
        first = min(int(note.start / MIDI_FRAME_S), n_frames - 1)
        count[first] += 1
        velocity_sum[first] += note.velocity
        onset_times.append(note.start)
        if note.drum:
            continue
        # Pitch per note (not per second): long pad and bass notes would pull it down.
        pitch_sum[first] += note.pitch * note.velocity
        weight[first] += note.velocity
        last = min(int(max(note.end - 1e-6, note.start) / MIDI_FRAME_S), n_frames - 1)
        for frame in range(first, last + 1):
            lo = max(note.start, frame * MIDI_FRAME_S)
            hi = min(note.end, (frame + 1) * MIDI_FRAME_S)
            chroma[note.pitch % 12, frame] += max(hi - lo, 0.0) * note.velocity / 127.0
            sounding_time[frame] += max(hi - lo, 0.0)
    onsets = _distinct(sorted(onset_times), gap=0.03)
    frame_features = np.column_stack(
        (
            (chroma / (chroma.sum(axis=0, keepdims=True) + 1e-9)).T,
            count,
            np.divide(pitch_sum, weight, out=np.zeros(n_frames), where=weight > 0) / 12.0,
            np.divide(velocity_sum, count, out=np.zeros(n_frames), where=count > 0) / 127.0,
        )
    )
    span = max(1, round(SEGMENT_S / MIDI_FRAME_S))
    start, end = representative_span(frame_features, span=span)
    tonic, mode, strength = key_from_chroma(chroma.sum(axis=1))

    def measures(first: int, last: int) -> dict[str, float]:
        seconds = (last - first) * MIDI_FRAME_S
        n = float(count[first:last].sum())
        w = float(weight[first:last].sum())
        velocity = float(velocity_sum[first:last].sum()) / n if n else 0.0
        polyphony = float(sounding_time[first:last].sum()) / seconds
        pitch = float(pitch_sum[first:last].sum()) / w if w else 60.0
        t0, t1 = first * MIDI_FRAME_S, last * MIDI_FRAME_S
        rate = sum(1 for t in onsets if t0 <= t < t1) / seconds
        loud = (
            MIDI_LOUDNESS_DB + 20.0 * math.log10(max(velocity, 1.0) / 100.0)
            + 10.0 * math.log10(max(polyphony, 0.05))
        )  # fmt: skip
        centroid = MIDI_BRIGHTNESS * 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
        return {"onset_rate": rate, "loudness_db": loud, "centroid_hz": centroid}

    window = max(1, round(WINDOW_S / MIDI_FRAME_S))
    step = max(1, round(WINDOW_HOP_S / MIDI_FRAME_S))
    windows = []
    for first in range(start, max(start + 1, end - window + 1), step):
        last = min(first + window, end)
        _, _, w_strength = key_from_chroma(chroma[:, first:last].sum(axis=1))
        windows.append(
            mood_from_measures(
                tempo=tempo,
                mode_strength=0.5 * strength + 0.5 * w_strength,
                **measures(first, last),
            )
        )
    whole = measures(start, end)
    return _finish(
        kind="midi",
        duration=duration,
        tempo=tempo,
        tonic=tonic,
        mode=mode,
        strength=strength,
        loudness_db=whole["loudness_db"],
        onset_rate=whole["onset_rate"],
        centroid_hz=whole["centroid_hz"],
        segment=(start * MIDI_FRAME_S, min(end * MIDI_FRAME_S, duration)),
        windows=windows,
        chroma=chroma[:, start:end],
        mfcc=None,
    )


def _distinct(times: list[float], *, gap: float) -> list[float]:
    out: list[float] = []
    for t in times:
        if not out or t - out[-1] >= gap:
            out.append(t)
    return out


def features_to_json(features: TrackFeatures) -> dict[str, Any]:
    """Plain JSON values for an index row or ``recommend --json``."""
    return {
        "kind": features.kind,
        "duration": features.duration,
        "tempo": features.tempo,
        "tonic": features.tonic,
        "mode": features.mode,
        "mode_strength": features.mode_strength,
        "loudness_db": features.loudness_db,
        "onset_rate": features.onset_rate,
        "centroid_hz": features.centroid_hz,
        "segment": list(features.segment),
        "valence": features.valence,
        "arousal": features.arousal,
        "windows": [list(w) for w in features.windows],
        "chroma_mean": list(features.chroma_mean),
        "chroma_std": list(features.chroma_std),
        "mfcc_mean": list(features.mfcc_mean),
        "mfcc_std": list(features.mfcc_std),
    }


def features_from_json(data: dict[str, Any]) -> TrackFeatures:
    """Inverse of :func:`features_to_json`."""
    return TrackFeatures(
        kind=data["kind"],
        duration=float(data["duration"]),
        tempo=float(data["tempo"]),
        tonic=int(data["tonic"]),
        mode=data["mode"],
        mode_strength=float(data["mode_strength"]),
        loudness_db=float(data["loudness_db"]),
        onset_rate=float(data["onset_rate"]),
        centroid_hz=float(data["centroid_hz"]),
        segment=(float(data["segment"][0]), float(data["segment"][1])),
        valence=float(data["valence"]),
        arousal=float(data["arousal"]),
        windows=tuple((float(v), float(a)) for v, a in data["windows"]),
        chroma_mean=tuple(float(x) for x in data["chroma_mean"]),
        chroma_std=tuple(float(x) for x in data["chroma_std"]),
        mfcc_mean=tuple(float(x) for x in data["mfcc_mean"]),
        mfcc_std=tuple(float(x) for x in data["mfcc_std"]),
    )
