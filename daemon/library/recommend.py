"""Recommendations: which indexed tracks suit a mood, a scene preset, a plan or a stretch of video.

Everything is compared in the valence/arousal plane. A track is the distribution of its
per-window moods over its representative segment (see :mod:`daemon.library.features`); a query
(a :class:`Target`) is a set of equally weighted points:

- a mood ``--valence V --arousal A``: that one point;
- a scene preset ``--scene NAME``: its tempo range at five levels (10 %, 30 %, ... 90 %), each
  tempo put on the default preset's arousal scale (66 bpm -0.8 ... 168 bpm +0.8), at valence
  +0.5 if the preset plays major, -0.5 if minor, both when its mode follows valence;
- a conductor plan (the library mode, live): the plan's tempo on that scale, at the plan's
  valence pushed at least 0.3 towards the plan's mode;
- a stretch of video: the moods of its analysis windows.

The distance is the Earth Mover's Distance (as in research seed 001) between the two sets in
that plane with the Euclidean ground distance: the least average distance the query's points
must travel to become the track's. For one query point it is the mean distance to the track's
windows. Sets of uniform weight make it an assignment problem (points repeated to a common
count, solved exactly with the Hungarian method).

Diversity: the seed's retrieval returned the same piece for different scenes. It measures that
with ``sum_k (X_k - J/K)^2`` (:func:`diversity`; ``X_k`` how many of J scenes chose track k of
K). :func:`recommend_set` picks for several targets in turn and adds :data:`REUSE_PENALTY` to a
track's distance for every time it was already picked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.library.index import Track
from daemon.messages import Mood, Plan
from daemon.scenes import ScenePreset

REUSE_PENALTY = 0.15
# The default preset's tempo range and the arousal span the conductor maps onto it.
_DEFAULT_BPM = (66.0, 168.0)
_AROUSAL_SPAN = 0.8
SCENE_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
SCENE_VALENCE = 0.5
PLAN_MIN_VALENCE = 0.3
MAX_TARGET_POINTS = 16


@dataclass(frozen=True, slots=True)
class Target:
    """What to look for: equally weighted (valence, arousal) points.

    label : a readable name (``"valence 0.5, arousal -0.2"``, ``"scene combat"``, ...).
    tempo : the tempo the target implies in bpm, for the nearest-by-tempo baseline.
    """

    points: tuple[tuple[float, float], ...]
    label: str
    tempo: float


@dataclass(frozen=True, slots=True)
class Match:
    """A track and its distance to a target (smaller is closer)."""

    track: Track
    distance: float


def arousal_for_bpm(bpm: float) -> float:
    """A tempo on the default preset's arousal scale: 66 bpm -0.8, 168 bpm +0.8 (clipped to
    [-1, 1])."""
    low, high = _DEFAULT_BPM
    value = -_AROUSAL_SPAN + 2 * _AROUSAL_SPAN * (bpm - low) / (high - low)
    return max(-1.0, min(1.0, value))


def bpm_for_arousal(arousal: float) -> float:
    """Inverse of :func:`arousal_for_bpm` (within the default preset's range)."""
    low, high = _DEFAULT_BPM
    level = (max(-_AROUSAL_SPAN, min(_AROUSAL_SPAN, arousal)) + _AROUSAL_SPAN) / (2 * _AROUSAL_SPAN)
    return low + level * (high - low)


def mood_target(valence: float, arousal: float) -> Target:
    """One mood."""
    return Target(
        points=((valence, arousal),),
        label=f"valence {valence:+.2f}, arousal {arousal:+.2f}",
        tempo=bpm_for_arousal(arousal),
    )


def scene_target(preset: ScenePreset) -> Target:
    """A scene preset's region (see the module docstring)."""
    if preset.mode == "major":
        valences: tuple[float, ...] = (SCENE_VALENCE,)
    elif preset.mode == "minor":
        valences = (-SCENE_VALENCE,)
    else:
        valences = (-SCENE_VALENCE, SCENE_VALENCE)
    points: list[tuple[float, float]] = []
    for level in SCENE_LEVELS:
        bpm = preset.bpm_min + level * (preset.bpm_max - preset.bpm_min)
        points.extend((v, arousal_for_bpm(bpm)) for v in valences)
    return Target(
        points=tuple(points),
        label=f"scene {preset.name}",
        tempo=0.5 * (preset.bpm_min + preset.bpm_max),
    )


def plan_target(plan: Plan) -> Target:
    """What the conductor's plan asks for (see the module docstring)."""
    sign = 1.0 if plan.mode == "major" else -1.0
    valence = sign * max(sign * plan.valence, PLAN_MIN_VALENCE)
    return Target(
        points=((valence, arousal_for_bpm(plan.bpm)),),
        label=f"{plan.scene} at {plan.bpm:g} bpm, {plan.mode}",
        tempo=plan.bpm,
    )


def segment_target(moods: Sequence[Mood], label: str) -> Target:
    """A stretch of analysed video: its windows' moods (thinned evenly to at most 16)."""
    if not moods:
        raise ValueError("a segment needs at least one window")
    chosen = moods
    if len(moods) > MAX_TARGET_POINTS:
        picks = np.linspace(0, len(moods) - 1, MAX_TARGET_POINTS).round().astype(int)
        chosen = [moods[i] for i in picks]
    arousal = float(np.mean([m.arousal for m in moods]))
    return Target(
        points=tuple((m.valence, m.arousal) for m in chosen),
        label=label,
        tempo=bpm_for_arousal(arousal),
    )


def emd(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Earth Mover's Distance between two sets of equally weighted 2-D points (Euclidean)."""
    from scipy.optimize import linear_sum_assignment

    first = np.asarray(a, dtype=np.float64)
    second = np.asarray(b, dtype=np.float64)
    if len(first) == 0 or len(second) == 0:
        raise ValueError("EMD needs points on both sides")
    cost = np.linalg.norm(first[:, None, :] - second[None, :, :], axis=-1)
    if len(first) == 1 or len(second) == 1:
        return float(cost.mean())
    common = math.lcm(len(first), len(second))
    expanded = np.repeat(np.repeat(cost, common // len(first), axis=0), common // len(second), 1)
    rows, cols = linear_sum_assignment(expanded)
    return float(expanded[rows, cols].mean())


def rank(tracks: Sequence[Track], target: Target, *, k: int | None = None) -> list[Match]:
    """Tracks by distance to ``target``, closest first (ties by path); the first ``k``."""
    matches = [Match(track, emd(target.points, track.features.windows)) for track in tracks]
    matches.sort(key=lambda m: (m.distance, str(m.track.path)))
    return matches if k is None else matches[:k]


def recommend_set(
    tracks: Sequence[Track],
    targets: Sequence[Target],
    *,
    k: int = 3,
    reuse_penalty: float = REUSE_PENALTY,
) -> list[list[Match]]:
    """Top ``k`` per target, for several targets in turn: a track already placed first for an
    earlier target counts ``reuse_penalty`` farther per time (the distances shown stay the
    true ones)."""
    used: dict[Path, int] = {}
    out = []
    for target in targets:
        matches = rank(tracks, target)
        matches.sort(
            key=lambda m: (
                m.distance + reuse_penalty * used.get(m.track.path, 0),
                str(m.track.path),
            )
        )
        top = matches[:k]
        if top:
            used[top[0].track.path] = used.get(top[0].track.path, 0) + 1
        out.append(top)
    return out


def nearest_by_tempo(tracks: Sequence[Track], target: Target) -> Track:
    """The baseline: the track whose tempo is nearest the target's (ties by path)."""
    if not tracks:
        raise ValueError("no tracks")
    return min(tracks, key=lambda t: (abs(t.features.tempo - target.tempo), str(t.path)))


def diversity(chosen: Sequence[object], n_tracks: int) -> float:
    """Research seed 001's measure for J choices among K tracks: ``sum_k (X_k - J/K)^2``,
    where ``X_k`` counts how often track k was chosen. 0 is impossible unless J/K is whole;
    lower means the choices are spread more evenly."""
    if n_tracks <= 0:
        raise ValueError("no tracks")
    counts: dict[object, int] = {}
    for item in chosen:
        counts[item] = counts.get(item, 0) + 1
    expected = len(chosen) / n_tracks
    picked = sum((c - expected) ** 2 for c in counts.values())
    return float(picked + (n_tracks - len(counts)) * expected**2)
