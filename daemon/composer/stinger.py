"""Stingers: short phrases played over the music to answer a cue, in the current key and chord.

As game audio middleware does, a stinger lands on a beat (its **landing**: the next beat after
the cue, or the next 8th when the beat is far) and may lead into it (its **pickup**, from the
first 16th after the cue). Every pitch is in the key's natural scale (the chord's tones that
are, then the scale), so a stinger never clashes with the music under it; one that lands on a
bar line takes that bar's chord. Kinds (:data:`daemon.messages.STINGER_KINDS`):

- ``hit``: a chord stab on the landing, the root doubled an octave below;
- ``riser``: chord tones climbing from the pickup, then in 16ths, into the hit;
- ``fill``: a run down the scale from the pickup, then in 16ths, onto the chord's root;
- ``danger``: a half step of the scale (the minor sixth falling to the fifth in minor, the
  leading note rising to the tonic in major) repeated in 8ths for two beats, low;
- ``swell``: a soft, low chord held for two beats (for a fall to calm).

All notes are :attr:`~daemon.messages.Layer.STINGER` notes, placed in beats from the downbeat of
the bar they start in.
"""

from __future__ import annotations

from daemon.composer.harmony import MAJOR_SCALE, NATURAL_MINOR_SCALE
from daemon.messages import Chord, Layer, Mode, NoteEvent

HIGH = (67, 84)  # the stab's register
LOW = (43, 60)


def natural_scale(tonic: int, mode: Mode) -> frozenset[int]:
    """The key's natural scale (no raised seventh): what a listener and music21 call the key."""
    steps = MAJOR_SCALE if mode == "major" else NATURAL_MINOR_SCALE
    return frozenset((tonic + s) % 12 for s in steps)


def write_stinger(
    kind: str,
    *,
    tonic: int,
    mode: Mode,
    chord: Chord,
    landing: float,
    pickup: float,
    strength: float = 1.0,
) -> tuple[NoteEvent, ...]:
    """The notes of one stinger.

    Parameters
    ----------
    kind : one of ``hit``, ``riser``, ``fill``, ``danger``, ``swell``.
    tonic, mode : the key in force where it lands.
    chord : the chord of the bar it lands in.
    landing : where the stinger's accent falls, in beats from the downbeat of the bar the
        stinger is placed in (may be past that bar's end: it then lands on the next bar line).
    pickup : where a riser or fill may start (the first 16th after the cue), same beats;
        ``pickup >= landing`` leaves no room for one (it starts on the landing).
    strength : how big the cue was, in [0, 1]: the louder, the stronger.
    """
    scale = natural_scale(tonic, mode)
    tones = [p % 12 for p in chord.pitches if p % 12 in scale] or [tonic]
    velocity = round(92 + 30 * max(0.0, min(1.0, strength)))
    if kind == "swell":
        return _chord(tones, LOW, landing, 2.0, 58)
    if kind == "danger":
        return _danger(tonic, mode, landing, velocity)
    hit = _chord(tones, HIGH, landing, 1.0, velocity) + _root(tones[0], landing, velocity)
    room = landing - pickup
    if kind == "hit" or room * 4 < 1 - 1e-6:
        return hit
    # The pickup starts at once (the first note where the cue is answered, off the grid if need
    # be), then runs on the 16ths into the landing.
    steps = min(int(room * 4 + 1e-6), 8)
    onsets = [landing - k / 4 for k in range(steps, 0, -1)]
    if onsets[0] - pickup > 0.125:
        onsets = [pickup, *onsets]  # the pickup itself, then the 16ths
    else:
        onsets[0] = pickup  # close enough: the first 16th moves back onto the pickup
    onsets = onsets[-8:]
    count = len(onsets)
    if kind == "riser":
        climb = _ascending(tones, HIGH[0] - 12, count)
        swell = [60 + round((velocity - 60) * (i + 1) / count) for i in range(count)]
        lead_in = tuple(
            NoteEvent(Layer.STINGER, p, v, at, 0.25)
            for p, v, at in zip(climb, swell, onsets, strict=False)
        )
        return lead_in + hit
    # fill: down the scale onto the chord's root
    run = _descending(scale, tones[0], HIGH[0] + 12, count)
    lead_in = tuple(
        NoteEvent(Layer.STINGER, p, velocity - 10, at, 0.25)
        for p, at in zip(run, onsets, strict=False)
    )
    return lead_in + hit


def _chord(
    tones: list[int], register: tuple[int, int], at: float, beats: float, velocity: int
) -> tuple[NoteEvent, ...]:
    low, high = register
    pitches = sorted({_place(pc, low, high) for pc in tones})
    return tuple(NoteEvent(Layer.STINGER, p, velocity, at, beats) for p in pitches)


def _root(pc: int, at: float, velocity: int) -> tuple[NoteEvent, ...]:
    return (NoteEvent(Layer.STINGER, _place(pc, LOW[0], LOW[1]), velocity, at, 1.0),)


def _place(pc: int, low: int, high: int) -> int:
    """The pitch of class ``pc`` in ``[low, high]`` (the lowest one there)."""
    pitch = low + (pc - low) % 12
    return pitch if pitch <= high else pitch - 12


def _ascending(tones: list[int], start: int, count: int) -> list[int]:
    """``count`` chord tones climbing from ``start``."""
    pitches = sorted(p for p in range(start, start + 36) if p % 12 in tones)
    return pitches[:count]


def _descending(scale: frozenset[int], root: int, start: int, count: int) -> list[int]:
    """``count`` scale notes falling from near ``start``, the last one above the chord's root."""
    notes = [p for p in range(start, start - 48, -1) if p % 12 in scale]
    ending = next((i for i, p in enumerate(notes) if p % 12 == root and i >= count), count)
    return notes[ending - count : ending]


def _danger(tonic: int, mode: Mode, at: float, velocity: int) -> tuple[NoteEvent, ...]:
    if mode == "minor":
        upper, lower = (tonic + 8) % 12, (tonic + 7) % 12  # minor sixth -> fifth
    else:
        upper, lower = tonic % 12, (tonic + 11) % 12  # leading note -> tonic, heard low
    high, low = _place(upper, LOW[0], LOW[1]), _place(lower, LOW[0], LOW[1])
    pair = (low, high) if mode == "major" else (high, low)
    return tuple(
        NoteEvent(Layer.STINGER, pair[i % 2], velocity - 15, at + i / 2, 0.45) for i in range(4)
    )
