"""Bass, drums, pad and arpeggio for one bar, from its chord and plan.

Each function returns the layer's notes for one bar, offsets and durations in beats from the bar
start. They are pure functions of their arguments (randomness comes in through ``rng``), so the
composer stays deterministic under a seed.
"""

from __future__ import annotations

import numpy as np

from daemon.composer.harmony import scale_pitch_classes
from daemon.messages import CLOSED_HAT, KICK, OPEN_HAT, SNARE, Chord, Layer, NoteEvent, Plan

BASS_LOW, BASS_HIGH = 36, 52
ARP_OCTAVE_UP = 12  # the arpeggio sits one octave above the pad's voicing


def _velocity(value: float) -> int:
    return int(np.clip(round(value), 1, 127))


def energy(plan: Plan) -> float:
    """How busy the rhythm section plays, in [0, 1]: mostly arousal, partly note density."""
    return float(np.clip(0.6 * (plan.arousal + 1.0) / 2.0 + 0.4 * plan.density, 0.0, 1.0))


def bass_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The bass line: the chord root on beat 1; fifths, octaves and a passing note as density
    rises (whole notes -> halves -> quarters -> eighths). Register MIDI 36-52."""
    beats = plan.beats_per_bar
    root = BASS_LOW + chord.root
    fifth = root + 7 if root + 7 <= BASS_HIGH else root - 5
    octave = root + 12 if root + 12 <= BASS_HIGH else root
    # The scale step below the root leads back into it: a passing note at the end of busy bars.
    scale = scale_pitch_classes(plan.tonic, plan.mode)
    below = next((root - s for s in (1, 2, 3) if (root - s) % 12 in scale), root - 2)

    # (offset, duration, pitch) in beats.
    line: list[tuple[float, float, int]]
    if plan.density < 0.25:
        line = [(0.0, float(beats), root)]
    elif plan.density < 0.5:
        half = beats // 2 if beats % 2 == 0 else beats - 1
        line = [(0.0, float(half), root), (float(half), float(beats - half), fifth)]
    elif plan.density < 0.8:
        quarters = (root, fifth, octave, fifth)
        line = [(float(b), 1.0, quarters[b % 4]) for b in range(beats)]
    else:
        eighths = (root, root, fifth, fifth, octave, octave, fifth, fifth)
        line = [(i * 0.5, 0.5, eighths[i % 8]) for i in range(beats * 2)]
        line[-1] = (line[-1][0], 0.5, below)
    notes = []
    for offset, duration, pitch in line:
        accent = 96 if offset == 0 else (86 if offset == int(offset) else 78)
        notes.append(NoteEvent(Layer.BASS, pitch, _velocity(accent), offset, duration))
    return notes


def drum_notes(plan: Plan, rng: np.random.Generator) -> list[NoteEvent]:
    """Kick, snare and hats on a 16th grid, busier with :func:`energy`.

    Low energy plays half-time (kick on 1, snare mid-bar, quarter hats); then a backbeat with 8th
    hats; then syncopated kicks and an open hat; at the top four-on-the-floor with 16th hats and
    a snare fill closing each 4-bar phrase. Velocities accent the downbeat and the backbeat.
    """
    beats = plan.beats_per_bar
    level = energy(plan)
    hits: list[tuple[int, float, float]] = []  # (drum, offset in beats, velocity)
    backbeats = [float(b) for b in range(1, beats, 2)] if beats != 3 else [1.0, 2.0]
    middle = float(beats // 2)

    if level < 0.3:
        hits.append((KICK, 0.0, 100))
        if beats >= 4:
            hits.append((SNARE, middle, 84))
        hits.extend((CLOSED_HAT, float(b), 56) for b in range(beats))
    elif level < 0.55:
        hits.append((KICK, 0.0, 106))
        if beats >= 4:
            hits.append((KICK, middle, 94))
        hits.extend((SNARE, b, 96) for b in backbeats)
        hits.extend((CLOSED_HAT, i * 0.5, 74 if i % 2 == 0 else 58) for i in range(beats * 2))
    elif level < 0.8:
        hits.append((KICK, 0.0, 110))
        if beats >= 4:
            hits.extend(((KICK, middle - 0.5, 88), (KICK, middle, 98)))
        hits.extend((SNARE, b, 102) for b in backbeats)
        hats = [(CLOSED_HAT, i * 0.5, 78 if i % 2 == 0 else 62) for i in range(beats * 2 - 1)]
        hits.extend(hats)
        hits.append((OPEN_HAT, beats - 0.5, 72))
    else:
        hits.extend((KICK, float(b), 112 if b == 0 else 104) for b in range(beats))
        hits.extend((SNARE, b, 108) for b in backbeats)
        for i in range(beats * 4):
            offset = i * 0.25
            if i % 4 == 2:
                hits.append((OPEN_HAT, offset, 74))
            else:
                hits.append((CLOSED_HAT, offset, 82 if i % 4 == 0 else 50))
        if plan.bar % 4 == 3:
            # A fill into the next phrase: 16th snares over the last beat, rising.
            start = float(beats - 1)
            hits = [h for h in hits if not (h[0] == SNARE and h[1] >= start)]
            hits.extend((SNARE, start + i * 0.25, 80 + 10 * i) for i in range(4))

    # A little velocity variation so repeated bars do not sound machine-stamped.
    jitter = rng.integers(-4, 5, size=len(hits))
    notes = [
        NoteEvent(Layer.DRUMS, drum, _velocity(velocity + int(j)), offset, 0.25)
        for (drum, offset, velocity), j in zip(hits, jitter, strict=True)
    ]
    notes.sort(key=lambda n: (n.offset, n.pitch))
    return notes


def pad_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The chord's tones held for the whole bar, softly."""
    velocity = _velocity(38 + 14 * plan.density)
    return [
        NoteEvent(Layer.PAD, pitch, velocity, 0.0, float(plan.beats_per_bar))
        for pitch in chord.pitches
    ]


def arp_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The chord broken up-and-down in 8ths (16ths when dense), an octave above the pad."""
    tones = [p + ARP_OCTAVE_UP for p in chord.pitches]
    tones.append(tones[0] + 12)
    cycle = tones + tones[-2:0:-1]  # up then down, without repeating the ends
    step = 0.25 if plan.density >= 0.6 else 0.5
    count = round(plan.beats_per_bar / step)
    notes = []
    for i in range(count):
        offset = i * step
        on_beat = abs(offset - round(offset)) < 1e-9
        velocity = 66 if on_beat else 54
        notes.append(NoteEvent(Layer.ARP, cycle[i % len(cycle)], velocity, offset, step))
    return notes
