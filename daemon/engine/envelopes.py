"""Envelope and pitch arithmetic for the instruments, free of pyo so it is testable alone.

Times are seconds from a voice's trigger, which pyo fires on the first sample of a block; the
breakpoint lists hold at zero until the note's onset inside that block.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

Points = list[tuple[float, float]]

# A stolen voice fades from its current level to zero over this long before its new note.
STEAL_FADE_S = 0.003
# Fade used when the engine stops: long enough not to click, short enough to feel immediate.
STOP_FADE_S = 0.03


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency of a MIDI note number (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def velocity_gain(velocity: int) -> float:
    """Amplitude for a MIDI velocity: a gentle curve, so soft notes stay audible."""
    v = min(max(velocity, 1), 127) / 127.0
    return v**1.6


@dataclass(frozen=True, slots=True)
class EnvShape:
    """An envelope in seconds; ``sustain`` is a fraction of the peak.

    ``percussive`` envelopes ignore the note length: attack, then decay to zero (plucks, drums).
    """

    attack: float
    decay: float
    sustain: float
    release: float
    percussive: bool = False


@dataclass(frozen=True, slots=True)
class Envelope:
    """One note's breakpoints, in seconds from the voice's trigger (the block start).

    ``points`` has strictly increasing times, for ``TrigLinseg``/``TrigExpseg``; ``onset`` is when
    the attack starts and ``end`` when the level is back at zero.
    """

    points: Points
    onset: float
    end: float


def envelope_points(
    shape: EnvShape, *, peak: float, delay: float, duration: float, start_level: float = 0.0
) -> Envelope:
    """Breakpoints for one note.

    Parameters
    ----------
    shape : the instrument's envelope.
    peak : the level at the end of the attack (velocity already applied).
    delay : seconds from the trigger (the block start) to the note's onset.
    duration : the note's length in seconds (ignored by percussive shapes).
    start_level : the voice's level at the trigger; > 0 when a sounding voice is stolen, in
        which case it ramps to zero first (and the onset moves at most ``STEAL_FADE_S`` later).

    Returns
    -------
    The note's :class:`Envelope`.
    """
    eps = 1e-4  # keeps breakpoint times strictly increasing
    points: Points = [(0.0, start_level)]
    if start_level > 1e-4:
        delay = max(delay, STEAL_FADE_S)
        points.append((delay, 0.0))
    elif delay > eps:
        points.append((delay, 0.0))
    else:
        delay = 0.0
    t = delay
    if shape.percussive:
        attack = shape.attack
        points.append((t + attack, peak))
        end = t + attack + shape.decay
        points.append((end, 0.0))
        return Envelope(points, delay, end)
    duration = max(duration, 0.01)
    attack = min(shape.attack, duration * 0.5)
    decay = min(shape.decay, max(duration - attack, eps))
    points.append((t + attack, peak))
    points.append((t + attack + decay, peak * shape.sustain))
    hold_end = t + max(duration, attack + decay + eps)
    points.append((hold_end, peak * shape.sustain))
    # Short notes ring out a little shorter, long ones use the full release.
    release = min(shape.release, max(0.03, duration))
    end = hold_end + release
    points.append((end, 0.0))
    return Envelope(points, delay, end)


def level_at(points: Points, t: float) -> float:
    """The level of a breakpoint list ``t`` seconds after its trigger (linear interpolation)."""
    if t <= points[0][0]:
        return points[0][1]
    for (t0, v0), (t1, v1) in itertools.pairwise(points):
        if t < t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]
