"""The band: five pyo layers (lead, bass, drums, pad, arp), each in several sounds, and the master
bus.

The scene preset of each bar's plan picks the sound of every layer (``lead = "flute"``, ...) and
the drum style; the notes of a layer go to the instrument of its current sound, and a sound that
is switched away from lets its notes ring out, so a scene change never cuts a note.

Build a :class:`Band` only after the pyo server has booted, in the thread that owns pyo, and call
its methods only from that thread (the engine's per-block tick).

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

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import pyo

from daemon.clock import BarGrid
from daemon.engine.envelopes import (
    STOP_FADE_S,
    Envelope,
    EnvShape,
    Points,
    envelope_points,
    level_at,
    midi_to_hz,
    velocity_gain,
)
from daemon.messages import (
    CLAP,
    CLOSED_HAT,
    CRASH,
    HIGH_TOM,
    KICK,
    LAYER_ORDER,
    LOW_TOM,
    OPEN_HAT,
    RIDE,
    SIDE_STICK,
    SNARE,
    Layer,
    Plan,
)

# Stereo placement (pyo Pan: 0 = left, 1 = right).
_PAN = {Layer.LEAD: 0.57, Layer.BASS: 0.5, Layer.ARP: 0.3}
_SILENT = [(0.0, 0.0), (0.001, 0.0)]


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
        self._points = list(_SILENT)
        self._origin = 0

    def own(self, obj: Any) -> Any:
        """Register a pyo object as part of this voice (woken and put to sleep with it)."""
        self.objects.append(obj)
        return obj

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


class _Track:
    """A secondary trigger envelope (a filter, an FM index, a breath noise) that remembers its
    breakpoints, so that on a stolen voice it glides from where it is to the new note's start
    while the amplitude fades, instead of jumping under a sounding note."""

    def __init__(self, env: Any, sample_rate: int) -> None:
        self.env = env
        self.sample_rate = sample_rate
        self._points: Points = list(_SILENT)
        self._origin = 0

    def set(self, points: Points, block_start: int, onset: float) -> None:
        """Give the envelope ``points`` (seconds from ``block_start``; the note starts at
        ``onset``)."""
        level = level_at(self._points, (block_start - self._origin) / self.sample_rate)
        if onset > 1e-4 and abs(level - points[0][1]) > 1e-6:
            tail = [p for p in points if p[0] > onset + 1e-6]
            points = [(0.0, level), (onset, level_at(points, onset)), *tail]
        self.env.setList(points)
        self._points = points
        self._origin = block_start


def _env(voice: Voice, *, expo: bool = False, mul: Any = 1.0, add: Any = 0.0) -> Any:
    """A trigger-driven envelope of ``voice``, silent until its first note."""
    if expo:
        env = pyo.TrigExpseg(voice.trig, _SILENT, exp=3.0, inverse=True, mul=mul, add=add)
    else:
        env = pyo.TrigLinseg(voice.trig, _SILENT, mul=mul, add=add)
    return voice.own(env)


class Instrument:
    """Base of the five layers: a voice pool, a stereo output and the voice/layer sleep logic.

    Subclasses build ``voices`` (registering each voice's objects with :meth:`Voice.own`), the
    layer's ``shared`` objects and a stereo ``output`` whose ``mul`` is the layer ``gain``.
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
        self._block_start = 0  # of the note being set up, for the _Track envelopes

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
        delay = (onset - block_start) / self.sample_rate
        env = envelope_points(
            self.shape_for(duration),
            peak=velocity_gain(velocity),
            delay=delay,
            duration=duration,
            start_level=voice.level(block_start),
        )
        self._wake(voice)
        self._block_start = block_start
        self._start(self.voices.index(voice), pitch, velocity, env, duration)
        voice.fire(block_start, env)
        self._note_end(voice)

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

    def _note_end(self, voice: Voice) -> None:
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


# --------------------------------------------------------------------------- lead


class Lead(Instrument):
    """A synth lead: two detuned oscillators (a saw, or a square's odd harmonics) through a Moog
    ladder whose cutoff follows the amplitude envelope, with a vibrato that fades in once the
    note has sounded for a moment.

    ``sound`` is ``"saw"`` (bright) or ``"square"`` (hollow, clarinet-like, a darker filter).
    """

    layer = Layer.LEAD
    shape = EnvShape(attack=0.012, decay=0.25, sustain=0.7, release=0.22)

    def __init__(self, *, sample_rate: int, gain: Any, sound: str = "saw", voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        if sound == "square":
            table = pyo.SquareTable(order=15).normalize()
            cutoff_range, cutoff_floor, res, level = 2600.0, 380.0, 0.2, 0.7
        else:
            table = pyo.SawTable(order=16).normalize()
            cutoff_range, cutoff_floor, res, level = 4800.0, 450.0, 0.3, 0.95
        self.vibrato = pyo.Sine(freq=5.3, mul=0.007)
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        self.cutoffs: list[Any] = []
        self.vib_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(440.0))
            # 1 + depth * vibrato: the envelope carries the depth, mul/add do the rest.
            vib = _env(voice, mul=self.vibrato, add=1.0)
            bent = voice.own(freq * vib)
            osc = voice.own(
                voice.own(pyo.Osc(table, freq=voice.own(bent * 0.996), mul=0.5))
                + voice.own(pyo.Osc(table, freq=voice.own(bent * 1.004), mul=0.5))
            )
            amp = _env(voice)
            cutoff = _env(voice, mul=cutoff_range, add=cutoff_floor)
            outs.append(voice.own(pyo.MoogLP(osc, freq=cutoff, res=res, mul=amp)))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.cutoffs.append(cutoff)
            self.vib_envs.append(vib)
        mono = pyo.Mix(outs, voices=1, mul=level)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], mul=gain)
        self.shared = [self.vibrato, mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        self.cutoffs[index].setList(env.points)
        self.vib_envs[index].setList(_vibrato_points(env))


def _vibrato_points(env: Envelope, *, wait: float = 0.25, rise: float = 0.4) -> Points:
    """Vibrato depth: none for ``wait`` s after the onset, then rising over ``rise`` s."""
    fade_in = env.onset + wait
    if env.end <= fade_in + 0.02:
        return list(_SILENT)
    peak_at = min(fade_in + rise, env.end - 0.01)
    return [(0.0, 0.0), (fade_in, 0.0), (peak_at, 1.0), (env.end, 0.0)]


class FluteLead(Instrument):
    """A soft, breathy lead: a near-sine tone (a little 2nd and 3rd harmonic) with breath noise
    band-passed around the note, a gentle attack and an early, slow vibrato."""

    layer = Layer.LEAD
    shape = EnvShape(attack=0.06, decay=0.2, sustain=0.8, release=0.18)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        table = pyo.HarmTable([1.0, 0.22, 0.12, 0.04, 0.02]).normalize()
        noise = pyo.Noise()
        self.vibrato = pyo.Sine(freq=4.8, mul=0.009)
        self.freqs: list[Any] = []
        self.breath_freqs: list[Any] = []
        self.amps: list[Any] = []
        self.breaths: list[Any] = []
        self.vib_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(440.0))
            vib = _env(voice, mul=self.vibrato, add=1.0)
            amp = _env(voice)
            breath_amp = _Track(_env(voice, mul=0.09), sample_rate)
            tone = voice.own(pyo.Osc(table, freq=voice.own(freq * vib), mul=amp))
            breath_freq = voice.own(pyo.Sig(880.0))
            breath = voice.own(pyo.ButBP(noise, freq=breath_freq, q=3.0, mul=breath_amp.env))
            outs.extend([tone, breath])
            self.freqs.append(freq)
            self.breath_freqs.append(breath_freq)
            self.amps.append(amp)
            self.breaths.append(breath_amp)
            self.vib_envs.append(vib)
        mono = pyo.Mix(outs, voices=1, mul=0.42)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], mul=gain)
        self.shared = [noise, self.vibrato, mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        hz = midi_to_hz(pitch)
        self.freqs[index].value = hz
        self.breath_freqs[index].value = min(hz * 2.0, 9000.0)
        self.amps[index].setList(env.points)
        # The breath puffs at the attack, then settles to a whisper under the tone.
        start = env.onset
        breath = [(0.0, 0.0), (max(start, 1e-4), 0.0), (start + 0.03, 1.0), (start + 0.12, 0.35)]
        breath += [(max(env.end - 0.05, start + 0.13), 0.3), (env.end, 0.0)]
        self.breaths[index].set(breath, self._block_start, env.onset)
        self.vib_envs[index].setList(_vibrato_points(env, wait=0.15, rise=0.5))


def _quicker(shape: EnvShape, duration: float) -> EnvShape:
    """``shape`` for a chord struck within the bar (shorter than a 4/4 bar at 100 bpm): the
    attack of a keyboard stab (20 ms), not a swell, so it lands on its beat."""
    attack = shape.attack if duration >= 2.4 else min(shape.attack, 0.02)
    return shape if attack == shape.attack else dataclasses.replace(shape, attack=attack)


class FMKeys(Instrument):
    """Two-operator FM: a bell, an electric piano or a vibraphone depending on the ratio and on
    how the modulation index (brightness) decays.

    Parameters
    ----------
    sample_rate, gain : as for every instrument.
    layer : which layer it plays (lead, pad or arp use it with different settings).
    shape : the amplitude envelope.
    ratio : modulator / carrier frequency (integers sound harmonic, others bell-like).
    index : modulation index at the attack (how bright the strike is).
    index_decay : seconds over which the index falls to ``index_floor`` of its peak.
    level, pan : mix level and stereo place.
    voices : polyphony.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        gain: Any,
        layer: Layer,
        shape: EnvShape,
        ratio: float,
        index: float,
        index_decay: float,
        index_floor: float,
        level: float,
        pan: float,
        voices: int,
    ) -> None:
        self.layer = layer
        self.shape = shape
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        self._index_decay = index_decay
        self._index_floor = index_floor
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        self.indexes: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(440.0))
            amp = _env(voice)
            idx = _Track(_env(voice, mul=index), sample_rate)
            outs.append(voice.own(pyo.FM(carrier=freq, ratio=ratio, index=idx.env, mul=amp)))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.indexes.append(idx)
        mono = pyo.Mix(outs, voices=1, mul=level)
        self.output = pyo.Pan(mono, outs=2, pan=pan, mul=gain)
        self.shared = [mono, self.output]
        self._finish_build()

    def shape_for(self, duration: float) -> EnvShape:
        """Slow swells (the glass pad) come in faster on short, re-struck chords."""
        return _quicker(self.shape, duration) if self.layer is Layer.PAD else self.shape

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        start = env.onset
        peak = 0.4 + 0.6 * velocity_gain(velocity)
        # The index rests at the same low value between notes, so a retriggered voice never
        # jumps in brightness.
        rest = 0.5 * self._index_floor
        points = [(0.0, rest)]
        if start > 1e-4:
            points.append((start, rest))
        points.append((start + 0.002, peak))
        decay_end = start + 0.002 + max(self._index_decay, 1e-3)
        if decay_end < env.end - 1e-3:
            points.append((decay_end, max(peak * self._index_floor, rest)))
        points.append((max(env.end, start + 0.003), rest))
        self.indexes[index].set(points, self._block_start, start)


# --------------------------------------------------------------------------- bass


class Bass(Instrument):
    """A subtractive bass: a saw through a resonant Moog low-pass with its own filter envelope,
    plus a sub sine an octave down that stays unfiltered for weight.

    ``sound`` ``"saw"`` is a held synth bass; ``"pluck"`` a short, woody note whose filter
    closes fast, like a plucked upright.
    """

    layer = Layer.BASS
    shape = EnvShape(attack=0.006, decay=0.3, sustain=0.8, release=0.09)
    filter_shape = EnvShape(attack=0.004, decay=0.22, sustain=0.25, release=0.09)

    def __init__(self, *, sample_rate: int, gain: Any, sound: str = "saw", voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        if sound == "pluck":
            self.shape = EnvShape(attack=0.003, decay=0.45, sustain=0.12, release=0.07)
            self.filter_shape = EnvShape(attack=0.002, decay=0.09, sustain=0.05, release=0.05)
            table = pyo.HarmTable([1.0, 0.5, 0.3, 0.22, 0.15, 0.1, 0.07, 0.05]).normalize()
            filter_range, filter_floor, res, sub_level, level = 3200.0, 180.0, 0.1, 0.5, 0.48
        else:
            table = pyo.SawTable(order=32).normalize()
            filter_range, filter_floor, res, sub_level, level = 2600.0, 140.0, 0.35, 0.55, 0.3
        self.freqs: list[Any] = []
        self.sub_freqs: list[Any] = []
        self.amps: list[Any] = []
        self.filter_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(55.0))
            sub_freq = voice.own(pyo.Sig(27.5))
            amp = _env(voice)
            fenv = _Track(_env(voice, mul=filter_range, add=filter_floor), sample_rate)
            osc = voice.own(pyo.Osc(table, freq=freq, mul=1.3))
            filtered = voice.own(pyo.MoogLP(osc, freq=fenv.env, res=res, mul=amp))
            sub_amp = voice.own(amp * sub_level) if sub_level != 1.0 else amp
            sub = voice.own(pyo.Sine(freq=sub_freq, mul=sub_amp))
            outs.extend([filtered, sub])
            self.freqs.append(freq)
            self.sub_freqs.append(sub_freq)
            self.amps.append(amp)
            self.filter_envs.append(fenv)
        mono = pyo.Mix(outs, voices=1, mul=level)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], mul=gain)
        self.shared = [mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        hz = midi_to_hz(pitch)
        self.freqs[index].value = hz
        self.sub_freqs[index].value = hz * 0.5
        self.amps[index].setList(env.points)
        fenv = envelope_points(
            self.filter_shape,
            peak=0.25 + 0.75 * velocity_gain(velocity),
            delay=env.onset,
            duration=duration,
        )
        self.filter_envs[index].set(fenv.points, self._block_start, env.onset)


class RoundBass(Instrument):
    """A warm, round bass: a sine with a little 2nd and 3rd harmonic, a soft thump of extra
    harmonics at the attack, and no resonance."""

    layer = Layer.BASS
    shape = EnvShape(attack=0.008, decay=0.35, sustain=0.75, release=0.1)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        body = pyo.HarmTable([1.0, 0.32, 0.1, 0.03]).normalize()
        thump = pyo.HarmTable([0.0, 0.6, 0.5, 0.4, 0.3, 0.2]).normalize()
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        self.thumps: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(55.0))
            amp = _env(voice)
            thump_amp = _Track(_env(voice, expo=True, mul=0.35), sample_rate)
            outs.append(voice.own(pyo.Osc(body, freq=freq, mul=amp)))
            outs.append(voice.own(pyo.Osc(thump, freq=freq, mul=thump_amp.env)))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.thumps.append(thump_amp)
        mono = pyo.Mix(outs, voices=1, mul=0.36)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], mul=gain)
        self.shared = [mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        thump = envelope_points(
            EnvShape(0.003, 0.12, 0.0, 0.0, True),
            peak=velocity_gain(velocity),
            delay=env.onset,
            duration=0.0,
        )
        self.thumps[index].set(thump.points, self._block_start, env.onset)


# --------------------------------------------------------------------------- pad


class Pad(Instrument):
    """Detuned saws (one left, one right per voice) with a slow attack, through a stereo low-pass
    whose cutoff drifts with a slow LFO around a brightness set by the chord's velocity."""

    layer = Layer.PAD
    shape = EnvShape(attack=0.35, decay=0.6, sustain=0.8, release=1.1)
    tail_s = 0.2

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 6) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        saw = pyo.SawTable(order=16).normalize()
        self.freqs: list[tuple[Any, Any]] = []
        self.amps: list[Any] = []
        streams = []
        for voice in self.voices:
            left = voice.own(pyo.Sig(220.0))
            right = voice.own(pyo.Sig(220.0))
            amp = _env(voice)
            streams.append(voice.own(pyo.Osc(saw, freq=[left, right], mul=amp)))
            self.freqs.append((left, right))
            self.amps.append(amp)
        # Harder chords open the filter; the change glides so it never steps.
        self.brightness = pyo.SigTo(1400.0, time=0.8)
        self.sweep = pyo.Sine(freq=0.06, mul=550.0, add=self.brightness)
        mix = pyo.Mix(streams, voices=2, mul=0.38)
        self.output = pyo.MoogLP(mix, freq=self.sweep, res=0.12, mul=gain)
        self.shared = [self.brightness, self.sweep, mix, self.output]
        self._finish_build()

    def shape_for(self, duration: float) -> EnvShape:
        """Chords struck again within the bar (a busy band) swell in faster, like a keyboard
        comping, so the pad's entries land on the beat instead of smearing across it."""
        return _quicker(self.shape, duration)

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        hz = midi_to_hz(pitch)
        left, right = self.freqs[index]
        left.value = hz * 0.9965
        right.value = hz * 1.0035
        self.amps[index].setList(env.points)
        self.brightness.value = 700.0 + 1800.0 * velocity_gain(velocity)


class OrganPad(Instrument):
    """A soft drawbar organ: additive harmonics (16', 8', 4', 2 2/3', 2') that speak at once and
    stop at once (with a few ms of key click smoothing), and a slow rotary-speaker tremolo that
    swirls between the channels."""

    layer = Layer.PAD
    shape = EnvShape(attack=0.02, decay=0.1, sustain=0.9, release=0.12)
    tail_s = 0.2

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 6) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        # Harmonics relative to the 16' foot: 1, 2, 3, 4, 6, 8 with a soft registration.
        table = pyo.HarmTable([0.7, 1.0, 0.45, 0.5, 0.0, 0.25, 0.0, 0.15]).normalize()
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        streams = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(110.0))
            amp = _env(voice)
            streams.append(voice.own(pyo.Osc(table, freq=freq, mul=amp)))
            self.freqs.append(freq)
            self.amps.append(amp)
        mono = pyo.Mix(streams, voices=1, mul=0.32)
        self.rotor = pyo.Sine(freq=0.8, mul=0.25, add=0.5)
        soft = pyo.Tone(mono, freq=3500.0)
        self.output = pyo.Pan(soft, outs=2, pan=self.rotor, spread=0.3, mul=gain)
        self.shared = [mono, self.rotor, soft, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        # The organ plays the 16' foot an octave below the written chord.
        self.freqs[index].value = midi_to_hz(pitch - 12)
        self.amps[index].setList(env.points)


# --------------------------------------------------------------------------- arp


class Arp(Instrument):
    """A plucky square-plus-octave tone through an envelope-following one-pole low-pass, with a
    quarter-note echo on the other side of the stereo field that follows the tempo.

    A quarter, not the classic dotted eighth: against 16th arpeggios a dotted-eighth echo puts a
    pulse every 1.5 beats that listeners (and beat trackers) hear as a second, slower tempo.
    """

    layer = Layer.ARP
    shape = EnvShape(attack=0.003, decay=0.28, sustain=0.0, release=0.0, percussive=True)
    tail_s = 6.0  # the echo's feedback needs a few seconds to die away

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 4) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        # Odd harmonics (a square) plus a little of the octave's saw: hollow and bright.
        harmonics = [
            (1.0 / n if n % 2 else 0.0) + (0.35 * 2.0 / n if n % 2 == 0 else 0.0)
            for n in range(1, 13)
        ]
        table = pyo.HarmTable(harmonics).normalize()
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        self.cutoffs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(440.0))
            amp = _env(voice, expo=True)
            cutoff = _env(voice, expo=True, mul=6500.0, add=350.0)
            osc = voice.own(pyo.Osc(table, freq=freq))
            outs.append(voice.own(pyo.Tone(osc, freq=cutoff, mul=amp)))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.cutoffs.append(cutoff)
        dry = pyo.Mix(outs, voices=1, mul=0.7)
        self.delay_time = pyo.SigTo(0.5, time=0.2)
        echo = pyo.Delay(dry, delay=self.delay_time, feedback=0.38, maxdelay=2.0)
        self.echo = pyo.Tone(echo, freq=3200.0, mul=0.55)
        dry_st = pyo.Pan(dry, outs=2, pan=_PAN[self.layer])
        echo_st = pyo.Pan(self.echo, outs=2, pan=0.78)
        self.output = pyo.Mix([dry_st, echo_st], voices=2, mul=gain)
        self.shared = [dry, self.delay_time, echo, self.echo, dry_st, echo_st, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        self.cutoffs[index].setList(env.points)

    def set_tempo(self, bpm: float) -> None:
        """Keep the echo on one beat of the new tempo."""
        self.delay_time.value = min(60.0 / bpm, 1.9)


class Marimba(Instrument):
    """A marimba: a sine fundamental with the bar's tuned 4th partial and a hint of the 10th,
    the upper partials dying much faster than the fundamental (the mallet's knock)."""

    layer = Layer.ARP
    shape = EnvShape(attack=0.002, decay=0.5, sustain=0.0, release=0.0, percussive=True)
    partial_shape = EnvShape(attack=0.001, decay=0.09, sustain=0.0, release=0.0, percussive=True)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 4) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        self.freqs: list[Any] = []
        self.amps: list[Any] = []
        self.knocks: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(440.0))
            amp = _env(voice, expo=True)
            knock = _Track(_env(voice, expo=True), sample_rate)
            outs.append(voice.own(pyo.Sine(freq=freq, mul=amp)))
            fourth = voice.own(pyo.Sine(freq=voice.own(freq * 4.0), mul=0.3))
            tenth = voice.own(pyo.Sine(freq=voice.own(freq * 9.9), mul=0.08))
            outs.append(voice.own(voice.own(fourth + tenth) * knock.env))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.knocks.append(knock)
        mono = pyo.Mix(outs, voices=1, mul=0.5)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], spread=0.2, mul=gain)
        self.shared = [mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        hz = midi_to_hz(pitch)
        self.freqs[index].value = hz
        self.amps[index].setList(env.points)
        knock = envelope_points(
            self.partial_shape, peak=velocity_gain(velocity), delay=env.onset, duration=0.0
        )
        self.knocks[index].set(knock.points, self._block_start, env.onset)


# --------------------------------------------------------------------------- drums

BRUSH = -1  # the brush-swish voice (a snare played with brushes; no GM note of its own)
_ELECTRONIC_STYLES = ("four_on_floor", "breakbeat")


class Drums(Instrument):
    """A synthesised kit: kick (a sine with a fast pitch drop and a beater click), snare (a band
    of noise plus a tuned body) or, in the ``brushes`` style, a brush swish; closed and open hats,
    ride and crash (noise over a cluster of square waves at inharmonic ratios, as analogue drum
    machines make their metal); hand clap (three quick bursts of band-passed noise), side stick
    and two toms.

    One voice per drum: a new hit on a drum that still rings retriggers it from its current
    level; a closed hat chokes the open one. The style also sets the kick: long and deep for the
    electronic styles (four_on_floor, breakbeat), short and punchy otherwise.
    """

    layer = Layer.DRUMS
    shape = EnvShape(attack=0.001, decay=0.1, sustain=0.0, release=0.0, percussive=True)
    shapes: ClassVar[dict[int, EnvShape]] = {
        KICK: EnvShape(0.001, 0.42, 0.0, 0.0, True),
        SNARE: EnvShape(0.001, 0.2, 0.0, 0.0, True),
        BRUSH: EnvShape(0.012, 0.26, 0.0, 0.0, True),
        CLOSED_HAT: EnvShape(0.001, 0.05, 0.0, 0.0, True),
        OPEN_HAT: EnvShape(0.002, 0.38, 0.0, 0.0, True),
        RIDE: EnvShape(0.001, 1.1, 0.0, 0.0, True),
        CRASH: EnvShape(0.002, 1.6, 0.0, 0.0, True),
        SIDE_STICK: EnvShape(0.0005, 0.04, 0.0, 0.0, True),
        LOW_TOM: EnvShape(0.001, 0.42, 0.0, 0.0, True),
        HIGH_TOM: EnvShape(0.001, 0.34, 0.0, 0.0, True),
    }
    levels: ClassVar[dict[int, float]] = {
        KICK: 1.0,
        SNARE: 0.85,
        BRUSH: 0.7,
        CLOSED_HAT: 0.4,
        OPEN_HAT: 0.3,
        RIDE: 0.35,
        CRASH: 0.32,
        CLAP: 0.7,
        SIDE_STICK: 0.5,
        LOW_TOM: 0.8,
        HIGH_TOM: 0.75,
    }
    # GM notes not in the kit map to the nearest drum it has.
    _MAP: ClassVar[dict[int, int]] = {
        35: KICK, 36: KICK, 37: SIDE_STICK, 38: SNARE, 39: CLAP, 40: SNARE, 42: CLOSED_HAT,
        44: CLOSED_HAT, 46: OPEN_HAT, 49: CRASH, 52: CRASH, 55: CRASH, 57: CRASH, 51: RIDE,
        53: RIDE, 59: RIDE, 41: LOW_TOM, 43: LOW_TOM, 45: LOW_TOM, 47: HIGH_TOM, 48: HIGH_TOM,
        50: HIGH_TOM,
    }  # fmt: skip

    def __init__(self, *, sample_rate: int, gain: Any) -> None:
        drums = [KICK, SNARE, BRUSH, CLOSED_HAT, OPEN_HAT, RIDE, CRASH, CLAP, SIDE_STICK]
        drums += [LOW_TOM, HIGH_TOM]
        super().__init__(sample_rate=sample_rate, voices=len(drums), gain=gain)
        self.kit = dict(zip(drums, self.voices, strict=True))
        self.style = "backbeat"
        self.amps: dict[int, Any] = {}
        noise = pyo.Noise()
        # Six square waves at the 808's inharmonic ratios: the "metal" of hats and cymbals.
        metal_osc = pyo.Osc(
            pyo.SquareTable(order=7).normalize(),
            freq=[205.3, 304.4, 369.6, 522.7, 540.0, 800.0],
            mul=0.16,
        )
        metal = pyo.Mix(metal_osc, voices=1)
        cymbal = pyo.Mix([noise, metal], voices=1, mul=0.8)
        hat_src = pyo.ButHP(cymbal, freq=7200.0)
        self.shared = [noise, metal_osc, metal, cymbal, hat_src]
        outs = []

        kick_v = self.kit[KICK]
        self.amps[KICK] = _env(kick_v, expo=True)
        self.kick_base = kick_v.own(pyo.Sig(47.0))
        self.kick_pitch = _env(kick_v, expo=True, add=self.kick_base)
        kick = kick_v.own(pyo.Sine(freq=self.kick_pitch, mul=self.amps[KICK]))
        self.kick_click = _env(kick_v, expo=True, mul=0.7)
        click = kick_v.own(pyo.ButHP(noise, freq=1200.0, mul=self.kick_click))
        outs.append(kick_v.own(pyo.Pan(kick_v.own(kick + click), outs=2, pan=0.5)))

        snare_v = self.kit[SNARE]
        self.amps[SNARE] = _env(snare_v, expo=True)
        self.snare_tone_amp = _env(snare_v, expo=True)
        snare_noise = snare_v.own(pyo.ButBP(noise, freq=2300.0, q=0.7, mul=self.amps[SNARE]))
        overtone = snare_v.own(self.snare_tone_amp * 0.5)
        snare_tone = snare_v.own(pyo.Sine(freq=[185.0, 330.0], mul=[self.snare_tone_amp, overtone]))
        snare_body = snare_v.own(pyo.Mix(snare_tone, voices=1))
        outs.append(snare_v.own(pyo.Pan(snare_v.own(snare_noise + snare_body), outs=2, pan=0.45)))

        brush_v = self.kit[BRUSH]
        self.amps[BRUSH] = _env(brush_v)
        brush = brush_v.own(pyo.ButBP(noise, freq=3400.0, q=0.35, mul=self.amps[BRUSH]))
        outs.append(brush_v.own(pyo.Pan(brush, outs=2, pan=0.42)))

        for drum, pan in ((CLOSED_HAT, 0.64), (OPEN_HAT, 0.66)):
            voice = self.kit[drum]
            self.amps[drum] = _env(voice, expo=True)
            outs.append(voice.own(pyo.Pan(hat_src, outs=2, pan=pan, mul=self.amps[drum])))

        ride_v = self.kit[RIDE]
        self.amps[RIDE] = _env(ride_v, expo=True)
        ride = ride_v.own(pyo.ButBP(hat_src, freq=6200.0, q=0.9, mul=self.amps[RIDE]))
        ping = ride_v.own(pyo.Sine(freq=[3100.0, 4870.0], mul=ride_v.own(self.amps[RIDE] * 0.12)))
        ride_mix = ride_v.own(pyo.Mix([ride, ping], voices=1, mul=2.0))
        outs.append(ride_v.own(pyo.Pan(ride_mix, outs=2, pan=0.3)))

        crash_v = self.kit[CRASH]
        self.amps[CRASH] = _env(crash_v, expo=True)
        crash = crash_v.own(pyo.ButHP(cymbal, freq=4200.0, mul=self.amps[CRASH]))
        outs.append(crash_v.own(pyo.Pan(crash, outs=2, pan=0.7, spread=0.4)))

        clap_v = self.kit[CLAP]
        self.amps[CLAP] = _env(clap_v)
        clap = clap_v.own(pyo.ButBP(noise, freq=1250.0, q=1.1, mul=self.amps[CLAP]))
        outs.append(clap_v.own(pyo.Pan(clap, outs=2, pan=0.52, spread=0.3)))

        stick_v = self.kit[SIDE_STICK]
        self.amps[SIDE_STICK] = _env(stick_v, expo=True)
        stick_tone = stick_v.own(
            pyo.Sine(freq=1720.0, mul=stick_v.own(self.amps[SIDE_STICK] * 0.5))
        )
        stick_noise = stick_v.own(pyo.ButBP(noise, freq=2600.0, q=1.5, mul=self.amps[SIDE_STICK]))
        outs.append(stick_v.own(pyo.Pan(stick_v.own(stick_tone + stick_noise), outs=2, pan=0.44)))

        self.tom_pitch: dict[int, Any] = {}
        for drum, base, pan in ((LOW_TOM, 98.0, 0.38), (HIGH_TOM, 147.0, 0.6)):
            voice = self.kit[drum]
            self.amps[drum] = _env(voice, expo=True)
            self.tom_pitch[drum] = _env(voice, expo=True, add=base)
            tom = voice.own(pyo.Sine(freq=self.tom_pitch[drum], mul=self.amps[drum]))
            outs.append(voice.own(pyo.Pan(tom, outs=2, pan=pan)))

        self.output = pyo.Mix(outs, voices=2, mul=gain * 0.85)
        self.shared.append(self.output)
        self._finish_build()

    def drum_for(self, pitch: int) -> int:
        """The kit piece that plays a General MIDI drum note (closed hat for unknown notes; the
        snare is a brush in the ``brushes`` style)."""
        drum = self._MAP.get(pitch, CLOSED_HAT)
        if drum == SNARE and self.style == "brushes":
            return BRUSH
        return drum

    def note_on(
        self, pitch: int, velocity: int, *, block_start: int, onset: int, duration: float
    ) -> None:
        """Hit the drum for ``pitch`` at absolute sample ``onset`` (duration is ignored)."""
        drum = self.drum_for(pitch)
        voice = self.kit[drum]
        if voice.fired_at == block_start:
            return
        gain = velocity_gain(velocity)
        shape = self.shapes.get(drum, self.shape)
        if drum == KICK and self.style in _ELECTRONIC_STYLES:
            shape = EnvShape(0.001, 0.45, 0.0, 0.0, True)
        if drum == CLAP:
            points, start, end = self._clap_points(
                gain * self.levels[drum],
                (onset - block_start) / self.sample_rate,
                voice.level(block_start),
            )
            env = Envelope(points, start, end)
        else:
            env = envelope_points(
                shape,
                peak=gain * self.levels[drum],
                delay=(onset - block_start) / self.sample_rate,
                duration=duration,
                start_level=voice.level(block_start),
            )
        self._wake(voice)
        self.amps[drum].setList(env.points)
        start = env.onset
        if drum == KICK:
            electronic = self.style in _ELECTRONIC_STYLES
            # The pitch falls from the beater's click to the body's fundamental.
            self.kick_base.value = 45.0 if electronic else 54.0
            drop, fall = (150.0, 0.12) if electronic else (200.0, 0.05)
            self.kick_pitch.setList(
                [(0.0, 0.0), (start + 1e-4, 0.0), (start + 2e-4, drop), (start + fall, 0.0)]
            )
            click = 0.4 if electronic else 1.0
            self.kick_click.setList(
                [
                    (0.0, 0.0),
                    (start + 1e-4, 0.0),
                    (start + 6e-4, click * gain),
                    (start + 0.012, 0.0),
                ]
            )
        elif drum == SNARE:
            tone = envelope_points(
                EnvShape(0.001, 0.09, 0.0, 0.0, True), peak=gain * 0.5, delay=start, duration=0
            )
            self.snare_tone_amp.setList(tone.points)
        elif drum in self.tom_pitch:
            base = 98.0 if drum == LOW_TOM else 147.0
            self.tom_pitch[drum].setList(
                [(0.0, 0.0), (start + 1e-4, 0.0), (start + 2e-4, base * 0.6), (start + 0.2, 0.0)]
            )
        elif drum == CLOSED_HAT:
            self._choke_open_hat(block_start, onset)
        voice.fire(block_start, env)
        self._note_end(voice)

    @staticmethod
    def _clap_points(peak: float, delay: float, level: float) -> tuple[Points, float, float]:
        """A hand clap: three quick bursts (several hands), then the room's short decay."""
        points: Points = [(0.0, level)]
        start = max(delay, 0.003) if level > 1e-4 else delay
        if start > 1e-4:
            points.append((start, 0.0))
        t = start
        for burst in (0.9, 0.75, 1.0):
            points += [(t + 0.0008, peak * burst), (t + 0.009, peak * 0.15)]
            t += 0.01
        end = t + 0.18
        points.append((end, 0.0))
        return points, start, end

    def _choke_open_hat(self, block_start: int, onset: int) -> None:
        voice = self.kit[OPEN_HAT]
        level = voice.level(block_start)
        if level <= 1e-4 or voice.fired_at == block_start:
            return
        delay = max((onset - block_start) / self.sample_rate, 1e-4)
        choke = [(0.0, level), (delay, level * 0.9), (delay + 0.01, 0.0)]
        self.amps[OPEN_HAT].setList(choke)
        voice.fire(block_start, Envelope(choke, delay, delay + 0.01))


# --------------------------------------------------------------------------- the band


# Drum styles that drive the band hard enough to pump (not brushes or a march, not none).
_PUMPING_STYLES = ("backbeat", "four_on_floor", "breakbeat")


def pump_depth(plan: Plan) -> float:
    """How far the sustained layers duck on each beat: nothing until the band plays hard
    (arousal above 0.3), then up to 0.4 of their level."""
    return max(0.0, min(1.0, (plan.arousal - 0.3) / 0.6)) * 0.4


class _Pump:
    """A beat-synchronous duck: on each beat the gain drops by ``depth`` in 10 ms and recovers
    over the next 60 % of the beat, so the pad and bass breathe with the kick."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.trig = pyo.Trig().stop()
        self.env = pyo.TrigLinseg(self.trig, [(0.0, 1.0), (0.001, 1.0)])
        self.trig.play()  # a TrigLinseg reads 0 until first triggered: start it at 1
        self.depth = 0.0
        self._next = 0  # the first sample not yet looked at for beats

    def beats(self, grid: BarGrid, block_start: int, frames: int) -> None:
        """Fire the duck for a beat of ``grid`` that falls in this block."""
        end = block_start + frames
        for beat in range(grid.beats):
            sample = grid.sample_at(beat)
            if block_start <= sample < end and sample >= self._next:
                self._next = end
                delay = (sample - block_start) / self.sample_rate
                length = grid.offset_samples(beat + 1) - grid.offset_samples(beat)
                recover = 0.6 * length / self.sample_rate
                low = 1.0 - self.depth
                points: Points = [(0.0, 1.0)]
                if delay > 1e-4:
                    points.append((delay, 1.0))
                t = points[-1][0]
                points += [(t + 0.01, low), (t + 0.01 + recover, 1.0)]
                self.env.setList(points)
                self.trig.play()
                return


class _Fader:
    """A layer's gain: a trigger-driven ramp that starts on an exact sample (a beat) and holds
    its target afterwards."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.trig = pyo.Trig().stop()
        self.env = pyo.TrigLinseg(self.trig, list(_SILENT))
        self.target = 0.0
        self._points: Points = list(_SILENT)
        self._origin = 0

    def move(self, target: float, *, block_start: int, at: int, seconds: float) -> None:
        """Ramp from the current level to ``target`` over ``seconds``, from absolute sample
        ``at`` (inside the block starting at ``block_start``)."""
        level = level_at(self._points, (block_start - self._origin) / self.sample_rate)
        delay = max(at - block_start, 0) / self.sample_rate
        points: Points = [(0.0, level)]
        if delay > 1e-4:
            points.append((delay, level))
        points.append((points[-1][0] + max(seconds, 1e-3), target))
        self.env.setList(points)
        self.trig.play()
        self._points = points
        self._origin = block_start
        self.target = target


def _build_sounds(layer: Layer, sample_rate: int, gain: Any) -> dict[str, Instrument]:
    """Every sound a scene preset may choose for ``layer`` (see daemon.scenes)."""
    sr = sample_rate
    if layer is Layer.LEAD:
        return {
            "saw": Lead(sample_rate=sr, gain=gain, sound="saw"),
            "square": Lead(sample_rate=sr, gain=gain, sound="square"),
            "flute": FluteLead(sample_rate=sr, gain=gain),
            "bell": FMKeys(
                sample_rate=sr,
                gain=gain,
                layer=Layer.LEAD,
                shape=EnvShape(attack=0.002, decay=0.9, sustain=0.35, release=0.35),
                ratio=1.0,
                index=3.2,
                index_decay=0.45,
                index_floor=0.25,
                level=0.42,
                pan=_PAN[Layer.LEAD],
                voices=3,
            ),
        }
    if layer is Layer.BASS:
        return {
            "saw": Bass(sample_rate=sr, gain=gain, sound="saw"),
            "round": RoundBass(sample_rate=sr, gain=gain),
            "pluck": Bass(sample_rate=sr, gain=gain, sound="pluck"),
        }
    if layer is Layer.DRUMS:
        return {"kit": Drums(sample_rate=sr, gain=gain)}
    if layer is Layer.PAD:
        return {
            "strings": Pad(sample_rate=sr, gain=gain),
            "organ": OrganPad(sample_rate=sr, gain=gain),
            "glass": FMKeys(
                sample_rate=sr,
                gain=gain,
                layer=Layer.PAD,
                shape=EnvShape(attack=0.25, decay=0.9, sustain=0.6, release=1.4),
                ratio=3.0,
                index=1.4,
                index_decay=1.2,
                index_floor=0.35,
                level=0.45,
                pan=0.5,
                voices=6,
            ),
        }
    return {
        "pluck": Arp(sample_rate=sr, gain=gain),
        "bell": FMKeys(
            sample_rate=sr,
            gain=gain,
            layer=Layer.ARP,
            shape=EnvShape(attack=0.001, decay=1.1, sustain=0.0, release=0.0, percussive=True),
            ratio=3.5,
            index=2.2,
            index_decay=0.25,
            index_floor=0.15,
            level=0.27,
            pan=_PAN[Layer.ARP],
            voices=4,
        ),
        "marimba": Marimba(sample_rate=sr, gain=gain),
    }


class Band:
    """All five layers in every sound, their gains, the reverb and the master bus (limiter, then
    a hard clip).

    Parameters
    ----------
    sample_rate : the server's sample rate in Hz.
    master_gain : output level in [0, 1], applied after the limiter.
    reverb : reverb return level in [0, 1].
    """

    def __init__(
        self, *, sample_rate: int, master_gain: float, reverb: float, block_size: int = 256
    ) -> None:
        self.sample_rate = sample_rate
        self.block_size = block_size
        self.faders = {layer: _Fader(sample_rate) for layer in LAYER_ORDER}
        # The sustained layers duck a little on every beat when the band plays hard (see
        # _pump_beats): what a producer's side-chain compressor keyed by the kick does.
        self.pump = _Pump(sample_rate)
        gains = {
            layer: self.faders[layer].env * self.pump.env
            if layer in (Layer.PAD, Layer.ARP, Layer.BASS)
            else self.faders[layer].env
            for layer in LAYER_ORDER
        }
        self.sounds: dict[Layer, dict[str, Instrument]] = {
            layer: _build_sounds(layer, sample_rate, gains[layer]) for layer in LAYER_ORDER
        }
        self._gains = gains
        self._grid: BarGrid | None = None
        self.current: dict[Layer, Instrument] = {
            layer: next(iter(sounds.values())) for layer, sounds in self.sounds.items()
        }
        drums = self.sounds[Layer.DRUMS]["kit"]
        assert isinstance(drums, Drums)
        self.drums = drums
        # The sounds in force (lead, bass, pad, arp, drum style): every plan carries its preset,
        # so a scene change or an edited preset is a comparison here, never a file read.
        self._sounds: tuple[str, ...] | None = None
        self._bpm = 0.0
        everything = [inst.output for sounds in self.sounds.values() for inst in sounds.values()]
        dry = pyo.Mix(everything, voices=2)
        # Lead, pad and arp share one reverb send; bass and drums stay dry and upfront.
        wet = [
            inst.output
            for layer in (Layer.LEAD, Layer.PAD, Layer.ARP)
            for inst in self.sounds[layer].values()
        ]
        send = pyo.Mix(wet, voices=2)
        self.reverb = pyo.Freeverb(send, size=0.82, damp=0.55, bal=1.0, mul=reverb * 0.9)
        # Nothing below 28 Hz is music: the high-pass keeps the sub octaves of bass and kick
        # from eating the limiter's headroom.
        mixed = dry + self.reverb
        bus = pyo.ButHP(mixed, freq=28.0)
        # Linked stereo limiter: one gain from the louder channel, applied to both, so the image
        # does not wander. No look-ahead: it would delay the output behind the beat clock, so
        # the fast attack lets a transient's first millisecond through to the clip below.
        rectified = pyo.Abs(bus)
        detector = pyo.Max(pyo.Sig(rectified[0]), pyo.Sig(rectified[1]))
        self.limiter_gain = pyo.Compress(
            detector,
            thresh=-6.0,
            ratio=20.0,
            risetime=0.001,
            falltime=0.15,
            lookahead=0.0,
            knee=0.4,
            outputAmp=True,
        )
        limited = bus * self.limiter_gain
        # Master gain and the stop fade ride on the clip's mul (<= 1), after the hard limit:
        # whatever the limiter lets through, no sample leaves above 0.98.
        self.fader = pyo.SigTo(master_gain, time=STOP_FADE_S)
        self.output = pyo.Clip(limited, min=-0.98, max=0.98, mul=self.fader)
        self.output.out()
        self._keep = [dry, send, mixed, bus, rectified, detector, limited]

    def instrument(self, layer: Layer) -> Instrument:
        """The instrument now playing ``layer`` (its scene's sound)."""
        return self.current[layer]

    def note_on(
        self,
        layer: Layer,
        pitch: int,
        velocity: int,
        *,
        block_start: int,
        onset: int,
        duration: float,
    ) -> None:
        """Play a note of ``layer`` at absolute sample ``onset`` (inside the current block)."""
        self.current[layer].note_on(
            pitch, velocity, block_start=block_start, onset=onset, duration=duration
        )

    def bar(self, grid: BarGrid, *, block_start: int, first: bool) -> None:
        """Apply a bar's plan at its downbeat: the scene's sounds, layer gains ramping over the
        bar's first beat from the downbeat's exact sample, tempo-synced effects."""
        plan = grid.plan
        preset = plan.preset
        sounds_wanted = (preset.lead, preset.bass, preset.pad, preset.arp, preset.drums)
        if sounds_wanted != self._sounds:
            self._sounds = sounds_wanted
            for layer in LAYER_ORDER:
                sounds = self.sounds[layer]
                # The old sound's notes ring out on their own; new notes go to the new sound.
                self.current[layer] = sounds.get(preset.sound(layer), next(iter(sounds.values())))
            self.drums.style = preset.drums
        beat_s = grid.offset_samples(1) / grid.sample_rate
        self._grid = grid
        drums = plan.layers >= Layer.DRUMS.order and self.drums.style in _PUMPING_STYLES
        self.pump.depth = pump_depth(plan) if drums else 0.0
        for layer in LAYER_ORDER:
            target = 1.0 if plan.layers >= layer.order else 0.0
            fader = self.faders[layer]
            if first or target != fader.target:
                # The very first bar starts at its level: there is nothing to fade from.
                fader.move(
                    target,
                    block_start=block_start,
                    at=grid.start,
                    seconds=0.0 if first else beat_s,
                )
        if grid.bpm != self._bpm:
            self._bpm = grid.bpm
            for sounds in self.sounds.values():
                for instrument in sounds.values():
                    instrument.set_tempo(grid.bpm)

    def housekeeping(self, block_start: int) -> None:
        """Stop computing voices and layers that have gone silent; duck on a beat in this block."""
        grid = self._grid
        if grid is not None and self.pump.depth > 0:
            self.pump.beats(grid, block_start, self.block_size)
        for sounds in self.sounds.values():
            for instrument in sounds.values():
                instrument.housekeeping(block_start)

    def fade_out(self, seconds: float = STOP_FADE_S) -> None:
        """Ramp the master to silence over ``seconds``."""
        self.fader.time = max(seconds, 0.001)
        self.fader.value = 0.0
