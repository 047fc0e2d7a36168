"""Voices and the instrument base: how one note plays on a pool of pyo voices.

Every sound of the band (the pitched ones in :mod:`daemon.engine.melodic` and
:mod:`daemon.engine.keys`, the kit in :mod:`daemon.engine.drums`) is an :class:`Instrument`: a
pool of :class:`Voice` objects, each with its own trigger and envelopes. This module holds that
bookkeeping once (allocation, stealing, sleeping), apart from what any one sound is made of, so
a new sound only builds its pyo graph and says how a note sets it up.

Build instruments only after the pyo server has booted, in the thread that owns pyo, and call
their methods only from that thread (the engine's per-block tick).

How notes are played. Every voice owns one ``Trig`` and a few trigger-driven envelopes
(``TrigLinseg``/``TrigExpseg``) that all start on that trigger. A ``Trig`` fires on the first
sample of the next block, so each envelope's breakpoint list begins with a hold at zero for the
onset's offset inside the block: notes start on their exact sample, not on the block boundary.
Because the composer gives every note its duration up front, the whole envelope (attack, decay,
sustain for the note's length, release) is one breakpoint list and there are no note-offs to
schedule. Envelopes always start from and return to zero; a voice stolen while it still sounds
first ramps from its current level to zero over a few milliseconds, so nothing clicks.

Velocity is written into the amplitude envelope, and the filters follow a copy of that envelope,
so a harder note is both louder and brighter without a second control that could step mid-note.

Cost. pyo computes every playing object every block whether it is heard or not, so a silent voice
is stopped (``stop()``; pyo then skips it and its output reads as zeros) and woken for its next
note, and a layer's shared effects sleep once its voices have been silent for their tail.
Oscillators read band-limited wavetables (``Osc``), about three times cheaper than ``LFO``, and
arithmetic is folded into ``mul``/``add`` arguments where pyo allows, since every ``a * b``
is one more object to compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyo

from daemon.engine.envelopes import (
    Envelope,
    EnvShape,
    Points,
    envelope_points,
    level_at,
    midi_to_hz,
    velocity_gain,
)
from daemon.messages import Layer

# Stereo placement (pyo Pan: 0 = left, 1 = right).
PAN = {Layer.LEAD: 0.57, Layer.BASS: 0.5, Layer.ARP: 0.3}
# Every envelope's breakpoints before its first note: zero, held.
SILENT = [(0.0, 0.0), (0.001, 0.0)]


class Voice:
    """One voice: its trigger, the objects it computes, and the bookkeeping to allocate it, steal
    it click-free and put it to sleep when it is silent."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.trig = pyo.Trig().stop()  # stopped: fires only when play() is called
        self.objects: list[Any] = []  # everything this voice computes, stopped while asleep
        self.awake = True
        self.busy_until = 0  # absolute sample at which its amplitude envelope is back at zero
        self.fired_at = -1  # block start of its last trigger
        self._points = list(SILENT)
        self._origin = 0

    def own(self, obj: Any) -> Any:
        """Register a pyo object as part of this voice (woken and put to sleep with it)."""
        self.objects.append(obj)
        return obj

    def trig_env(self, *, expo: bool = False, mul: Any = 1.0, add: Any = 0.0) -> Any:
        """A trigger-driven envelope of this voice, silent until its first note."""
        if expo:
            env = pyo.TrigExpseg(self.trig, SILENT, exp=3.0, inverse=True, mul=mul, add=add)
        else:
            env = pyo.TrigLinseg(self.trig, SILENT, mul=mul, add=add)
        return self.own(env)

    def level(self, sample: int) -> float:
        """Estimated amplitude-envelope level at an absolute sample."""
        if sample >= self.busy_until:
            return 0.0
        return level_at(self._points, (sample - self._origin) / self.sample_rate)

    def fire(self, block_start: int, env: Envelope) -> None:
        """Remember the new amplitude envelope and trigger the voice at this block's start.

        The caller has already woken the voice and given its envelopes their breakpoints.
        """
        self._points = env.points
        self._origin = block_start
        self.fired_at = block_start
        self.busy_until = block_start + math.ceil(env.end * self.sample_rate)
        self.trig.play()

    def wake(self) -> None:
        """Start computing again (before a note is set up)."""
        if not self.awake:
            for obj in self.objects:
                obj.play()
            self.awake = True

    def sleep(self) -> None:
        """Stop computing; the voice's output reads as silence."""
        if self.awake:
            for obj in self.objects:
                obj.stop()
            self.awake = False


def allocate(voices: Sequence[Voice], block_start: int) -> Voice | None:
    """A free voice, else the one closest to its end; None if all fired in this very block."""
    candidates = [v for v in voices if v.fired_at != block_start]
    if not candidates:
        return None
    return min(candidates, key=lambda v: v.busy_until)


class Track:
    """A secondary trigger envelope (a filter, an FM index, a breath noise) that remembers its
    breakpoints, so that on a stolen voice it glides from where it is to the new note's start
    while the amplitude fades, instead of jumping under a sounding note. (The band's layer faders
    reuse the memory to ramp from wherever they are.)"""

    def __init__(self, env: Any, sample_rate: int) -> None:
        self.env = env
        self.sample_rate = sample_rate
        self._points: Points = list(SILENT)
        self._origin = 0

    def level(self, block_start: int) -> float:
        """The envelope's level at ``block_start`` (where a new list of points starts from)."""
        return level_at(self._points, (block_start - self._origin) / self.sample_rate)

    def set(self, points: Points, block_start: int, onset: float) -> None:
        """Give the envelope ``points`` (seconds from ``block_start``; the note starts at
        ``onset``)."""
        level = self.level(block_start)
        if onset > 1e-4 and abs(level - points[0][1]) > 1e-6:
            tail = [p for p in points if p[0] > onset + 1e-6]
            points = [(0.0, level), (onset, level_at(points, onset)), *tail]
        self._load(points, block_start)

    def _load(self, points: Points, block_start: int) -> None:
        self.env.setList(points)
        self._points = points
        self._origin = block_start


class Instrument:
    """Base of the five layers: a voice pool, a stereo output and the voice/layer sleep logic.

    Subclasses build ``voices`` (registering each voice's objects with :meth:`Voice.own` and
    making its envelopes with :meth:`Voice.trig_env`), the layer's ``shared`` objects and a stereo
    ``output`` whose ``mul`` is the layer ``gain`` (:meth:`_mono_out` for a mono sound), then
    implement :meth:`_start`.
    """

    layer: Layer
    shape: EnvShape
    tail_s = 0.1  # how long shared effects ring after the last voice ends (echoes, filters)

    def __init__(self, *, sample_rate: int, voices: int, gain: Any) -> None:
        self.sample_rate = sample_rate
        self.gain = gain
        self.voices = [Voice(sample_rate) for _ in range(voices)]
        self.shared: list[Any] = []
        self.output: Any = None
        self._shared_awake = True
        self._quiet_from = 0  # sample after which the whole layer is silent
        self._block_start = 0  # of the note being set up, for the Track envelopes

    def _mono_out(
        self,
        outs: list[Any],
        level: float,
        *,
        pan: float | None = None,
        spread: float = 0.5,
        shared: Sequence[Any] = (),
    ) -> None:
        """Finish the build of a mono instrument: mix the voices' ``outs`` at ``level``, place
        them in the stereo field (the layer's place unless ``pan`` is given) at the layer gain,
        and put everything to sleep until the first note. ``shared`` are the layer's other
        always-on objects (an LFO, a noise source)."""
        mono = pyo.Mix(outs, voices=1, mul=level)
        place = PAN[self.layer] if pan is None else pan
        self.output = pyo.Pan(mono, outs=2, pan=place, spread=spread, mul=self.gain)
        self.shared = [*shared, mono, self.output]
        self._finish_build()

    def _finish_build(self) -> None:
        for voice in self.voices:
            voice.sleep()
        self._sleep_shared()

    def note_on(
        self, pitch: int, velocity: int, *, block_start: int, onset: int, duration: float
    ) -> None:
        """Play a note from absolute sample ``onset`` (inside the block at ``block_start``)."""
        voice = allocate(self.voices, block_start)
        if voice is None:
            return
        env = self._envelope(
            voice,
            self.shape_for(duration),
            velocity_gain(velocity),
            block_start=block_start,
            onset=onset,
            duration=duration,
        )
        self._wake(voice)
        self._block_start = block_start
        self._start(self.voices.index(voice), pitch, velocity, env, duration)
        self._fire(voice, block_start, env)

    def _envelope(
        self,
        voice: Voice,
        shape: EnvShape,
        peak: float,
        *,
        block_start: int,
        onset: int,
        duration: float,
    ) -> Envelope:
        """``shape`` at ``peak`` for a note at absolute sample ``onset``, starting from the level
        ``voice`` is at, so a stolen voice fades instead of jumping."""
        return envelope_points(
            shape,
            peak=peak,
            delay=(onset - block_start) / self.sample_rate,
            duration=duration,
            start_level=voice.level(block_start),
        )

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        """Set voice ``index``'s pitch and envelopes; the caller then fires its trigger."""
        raise NotImplementedError

    def shape_for(self, duration: float) -> EnvShape:
        """The amplitude envelope for a note of ``duration`` seconds (most use ``shape``)."""
        return self.shape

    def _wake(self, voice: Voice) -> None:
        voice.wake()
        if not self._shared_awake:
            for obj in self.shared:
                obj.play()
            self._shared_awake = True

    def _fire(self, voice: Voice, block_start: int, env: Envelope) -> None:
        """Trigger ``voice`` and keep the layer's shared effects awake until it and their tail
        have rung out."""
        voice.fire(block_start, env)
        self._quiet_from = max(
            self._quiet_from, voice.busy_until + round(self.tail_s * self.sample_rate)
        )

    def _sleep_shared(self) -> None:
        if self._shared_awake:
            for obj in self.shared:
                obj.stop()
            self._shared_awake = False

    def housekeeping(self, block_start: int) -> None:
        """Put voices that have finished, and a layer that has fallen silent, to sleep."""
        for voice in self.voices:
            if voice.awake and block_start >= voice.busy_until:
                voice.sleep()
        if self._shared_awake and block_start >= self._quiet_from:
            self._sleep_shared()

    def set_tempo(self, bpm: float) -> None:
        """Follow a tempo change (tempo-synced effects); most instruments ignore it."""


class PitchedInstrument(Instrument):
    """An instrument whose voices each have one frequency control and one amplitude envelope,
    made with :meth:`_freq` and :meth:`_amp`; the default :meth:`_start` sets both for a note,
    and a subclass sets its other envelopes after calling it."""

    transpose = 0  # semitones from the written note to the sounding one

    def __init__(self, *, sample_rate: int, voices: int, gain: Any) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        self.freqs: list[Any] = []  # per voice, in Hz
        self.amps: list[Any] = []  # per voice

    def _freq(self, voice: Voice, hz: float) -> Any:
        """``voice``'s frequency control, at ``hz`` until its first note."""
        freq = voice.own(pyo.Sig(hz))
        self.freqs.append(freq)
        return freq

    def _amp(self, voice: Voice, *, expo: bool = False) -> Any:
        """``voice``'s amplitude envelope."""
        amp = voice.trig_env(expo=expo)
        self.amps.append(amp)
        return amp

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch + self.transpose)
        self.amps[index].setList(env.points)
