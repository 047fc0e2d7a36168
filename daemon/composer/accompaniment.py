"""Bass, drums, pad and arpeggio for one bar, from its chord and plan.

Each function returns the layer's notes for one bar, offsets and durations in beats from the bar
start. They are pure functions of their arguments (randomness comes in through ``rng``; the
plan's scene preset, looked up by name and cached, picks the drum style), so the composer stays
deterministic under a seed.
"""

from __future__ import annotations

import numpy as np

from daemon.composer.harmony import scale_pitch_classes, strong_beats
from daemon.messages import (
    CLAP,
    CLOSED_HAT,
    CRASH,
    HIGH_TOM,
    KICK,
    LOW_TOM,
    OPEN_HAT,
    RIDE,
    SIDE_STICK,
    SNARE,
    Chord,
    Layer,
    NoteEvent,
    Plan,
)

Hit = tuple[int, float, float]  # (GM drum note, offset in beats, velocity)

BASS_LOW, BASS_HIGH = 36, 52
ARP_OCTAVE_UP = 12  # the arpeggio sits one octave above the pad's voicing


def _velocity(value: float) -> int:
    return int(np.clip(round(value), 1, 127))


def energy(plan: Plan) -> float:
    """How busy the rhythm section plays, in [0, 1]: mostly arousal, partly note density."""
    return float(np.clip(0.6 * (plan.arousal + 1.0) / 2.0 + 0.4 * plan.density, 0.0, 1.0))


def bass_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The bass line: the chord root on beat 1; fifths, octaves and a passing note as density
    rises (whole notes -> halves -> quarters -> eighths). From halves on, the last 8th of the
    bar is a pickup: the scale step below the next root (or the root again), leading into the
    bar line. Register MIDI 36-52."""
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
        line = [(0.0, float(half), root), (float(half), beats - half - 0.5, fifth)]
        line.append((beats - 0.5, 0.5, below))
    elif plan.density < 0.8:
        quarters = (root, fifth, octave, fifth)
        line = [(float(b), 1.0, quarters[b % 4]) for b in range(beats)]
        line[-1] = (beats - 1.0, 0.5, line[-1][2])
        line.append((beats - 0.5, 0.5, below))
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
    """The drum layer's notes for one bar, in the plan's scene's drum style (see
    :data:`daemon.scenes.DRUM_STYLES`), busier with :func:`energy`.

    Every style keeps the downbeat and accents the backbeat; a little velocity jitter (drawn
    from ``rng``) keeps repeated bars from sounding machine-stamped. ``none`` writes no notes.
    """
    style = plan.preset.drums
    if style == "none":
        return []
    pattern = _STYLES.get(style, _backbeat)
    hits = pattern(plan, energy(plan))
    jitter = rng.integers(-4, 5, size=len(hits))
    notes = [
        NoteEvent(Layer.DRUMS, drum, _velocity(velocity + int(j)), offset, 0.25)
        for (drum, offset, velocity), j in zip(hits, jitter, strict=True)
    ]
    notes.sort(key=lambda n: (n.offset, n.pitch))
    return notes


def _tier(level: float) -> int:
    """Four steps of busyness from the energy level."""
    return 0 if level < 0.3 else 1 if level < 0.55 else 2 if level < 0.8 else 3


def _backbeats(beats: int) -> list[float]:
    return [float(b) for b in range(1, beats, 2)] if beats != 3 else [1.0, 2.0]


def _backbeat(plan: Plan, level: float) -> list[Hit]:
    """Pop/rock: half-time when calm; a backbeat with 8th hats; syncopated kicks and an open
    hat; at the top four-on-the-floor with accented 16th hats and a snare fill closing each
    phrase."""
    beats = plan.beats_per_bar
    hits: list[Hit] = []
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
        # 16th hats accented on the beat, less on the "and", least between: the beat stays
        # the strongest pulse (open hats on every "and" would make it ambiguous).
        for i in range(beats * 4 - 2):
            hits.append((CLOSED_HAT, i * 0.25, (86, 44, 62, 44)[i % 4]))
        hits.append((OPEN_HAT, beats - 0.5, 74))
        if plan.bar % 4 == 3:
            # A fill into the next phrase: 16th snares over the last beat, rising.
            start = float(beats - 1)
            hits = [h for h in hits if not (h[0] == SNARE and h[1] >= start)]
            hits.extend((SNARE, start + i * 0.25, 80 + 10 * i) for i in range(4))
    return hits


def _brushes(plan: Plan, level: float) -> list[Hit]:
    """Jazz brushes: a feathered kick, brush snare on the backbeat, a ride that swings (its
    skip note on the last triplet of the beat), ghost taps and a hi-hat foot as energy rises."""
    beats = plan.beats_per_bar
    tier = _tier(level)
    hits: list[Hit] = [(KICK, 0.0, 70 + 6 * tier)]
    if tier >= 1 and beats >= 4:
        hits.append((KICK, float(beats // 2), 60 + 6 * tier))
    hits.extend((SNARE, b, 46 + 8 * tier) for b in _backbeats(beats))
    for b in range(beats):
        hits.append((RIDE, float(b), 52 + 6 * tier if b % 2 == 0 else 46 + 6 * tier))
        if tier >= 1 and b % 2 == 0 and b + 1 < beats:
            hits.append((RIDE, b + 2 / 3, 38 + 6 * tier))  # the swung "let" of "ding ding-a"
    if tier >= 2:
        hits.extend((CLOSED_HAT, b, 40) for b in _backbeats(beats))
        hits.extend((SIDE_STICK, b + 2 / 3, 30 + 4 * tier) for b in range(1, beats, 2))
    if tier >= 3 and plan.bar % 4 == 3:
        hits.extend((SNARE, beats - 1 + i / 3, 50 + 8 * i) for i in range(3))
    return hits


def _four_on_floor(plan: Plan, level: float) -> list[Hit]:
    """Dance: a kick on every beat, hats on the offbeats, claps on the backbeat; open offbeat hats
    and 16th ticks when busy, a crash opening each phrase and a clap build closing it."""
    beats = plan.beats_per_bar
    tier = _tier(level)
    hits: list[Hit] = [(KICK, float(b), 110 if b == 0 else 102) for b in range(beats)]
    hat = OPEN_HAT if tier >= 2 else CLOSED_HAT
    hits.extend((hat, b + 0.5, 66 + 6 * tier) for b in range(beats))
    if tier >= 1:
        hits.extend((CLAP, b, 92) for b in _backbeats(beats))
    if tier >= 2:
        hits.extend((CLOSED_HAT, b + q, 40) for b in range(beats) for q in (0.25, 0.75))
    if tier >= 3:
        if plan.bar % 4 == 0:
            hits.append((CRASH, 0.0, 96))
        if plan.bar % 4 == 3:
            start = float(beats - 1)
            hits = [h for h in hits if not (h[0] == CLAP and h[1] >= start)]
            hits.extend((CLAP, start + i * 0.25, 76 + 10 * i) for i in range(4))
    return hits


def _breakbeat(plan: Plan, level: float) -> list[Hit]:
    """Breakbeat: syncopated kicks against a snare backbeat, ghost snares and 16th hats as energy
    rises, an open hat lifting the end of the bar, toms filling the end of each phrase."""
    beats = plan.beats_per_bar
    tier = _tier(level)
    hits: list[Hit] = []
    for cell in range(0, beats, 2):
        hits.append((KICK, float(cell), 108 if cell == 0 else 98))
        if cell + 1 < beats:
            hits.append((SNARE, cell + 1.0, 100))
            if tier >= 1:
                hits.append((KICK, cell + 1.5, 90))
            if tier >= 2:
                hits.append((SNARE, cell + 1.75, 44))  # ghost notes
                hits.append((SNARE, cell + 0.75, 40))
        if tier >= 1 and cell == 0:
            hits.append((KICK, 0.5, 84))
    step = 0.25 if tier >= 2 else 0.5
    for i in range(round(beats / step)):
        offset = i * step
        accent = abs(offset - round(offset)) < 1e-9
        hits.append((CLOSED_HAT, offset, (76 if accent else 52) + 4 * tier))
    if tier >= 1:
        hits = [h for h in hits if not (h[0] == CLOSED_HAT and h[1] == beats - 0.5)]
        hits.append((OPEN_HAT, beats - 0.5, 70))
    if tier >= 3 and plan.bar % 4 == 3:
        start = float(beats - 1)
        hits = [h for h in hits if h[1] < start or h[0] == KICK]
        toms = (HIGH_TOM, HIGH_TOM, LOW_TOM, LOW_TOM)
        hits.extend((drum, start + i * 0.25, 84 + 6 * i) for i, drum in enumerate(toms))
    return hits


def _march(plan: Plan, level: float) -> list[Hit]:
    """Marching band: the bass drum on 1 and 3, snare on 2 and 4; then snare 8ths with accents,
    16th rudiments (accents on the beat) and, at the top, a crash opening each phrase and a roll
    closing it. No hi-hats."""
    beats = plan.beats_per_bar
    tier = _tier(level)
    hits: list[Hit] = [(KICK, float(b), 104 if b == 0 else 94) for b in range(0, beats, 2)]
    if tier == 0:
        hits.extend((SNARE, b, 84) for b in _backbeats(beats))
    else:
        step = 0.5 if tier == 1 else 0.25
        for i in range(round(beats / step)):
            offset = i * step
            on_beat = abs(offset - round(offset)) < 1e-9
            hits.append((SNARE, offset, 96 if on_beat else 58 + 4 * tier))
    if tier >= 2 and beats >= 4:
        hits.extend((KICK, float(b), 80) for b in range(1, beats, 2) if b != beats - 1)
    if tier >= 3:
        if plan.bar % 4 == 0:
            hits.append((CRASH, 0.0, 90))
        if plan.bar % 4 == 3:
            start = float(beats - 1)
            hits = [h for h in hits if not (h[0] == SNARE and h[1] >= start)]
            hits.extend((SNARE, start + i / 8, 70 + 5 * i) for i in range(8))
    return hits


_STYLES = {
    "backbeat": _backbeat,
    "brushes": _brushes,
    "four_on_floor": _four_on_floor,
    "breakbeat": _breakbeat,
    "march": _march,
}


def pad_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The chord's tones, softly: held for the whole bar, or, when the music is busy (density
    0.65 and up), struck again half a beat before the bar's next strong beat (the pianist's
    "push"), so the harmony moves with the band."""
    velocity = _velocity(38 + 14 * plan.density)
    beats = float(plan.beats_per_bar)
    starts = [0.0]
    if plan.density >= 0.65:
        starts += [b - 0.5 for b in strong_beats(plan.beats_per_bar)[1:]]
    ends = [*starts[1:], beats]
    return [
        NoteEvent(Layer.PAD, pitch, velocity, start, end - start)
        for start, end in zip(starts, ends, strict=True)
        for pitch in chord.pitches
    ]


def arp_notes(chord: Chord, plan: Plan) -> list[NoteEvent]:
    """The chord broken in 8ths (16ths when dense), an octave above the pad: rising through the
    triad and its octave in even bars, falling in odd ones.

    The figure repeats every four notes, so it lines up with the beat; an up-and-down figure of
    six notes would put a dotted-quarter pulse against it that listeners (and beat trackers)
    hear as a second, slower tempo.
    """
    tones = [p + ARP_OCTAVE_UP for p in chord.pitches]
    tones.append(tones[0] + 12)
    cycle = tones if plan.bar % 2 == 0 else tones[::-1]
    step = 0.25 if plan.density >= 0.6 else 0.5
    count = round(plan.beats_per_bar / step)
    notes = []
    for i in range(count):
        offset = i * step
        on_beat = abs(offset - round(offset)) < 1e-9
        velocity = 66 if on_beat else 54
        notes.append(NoteEvent(Layer.ARP, cycle[i % len(cycle)], velocity, offset, step))
    return notes
