"""The pitched sounds that play chords and strikes: the pads and the two-operator FM keys.

The strings and organ pads hold the harmony; :class:`FMKeys` is one FM voice that the pad, the
lead and the arp each use with their own settings (glass, bell, vibraphone). They are apart from
the line sounds in :mod:`daemon.engine.melodic` only to keep each module readable; the voice pool
they all share is :class:`~daemon.engine.voices.Instrument`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pyo

from daemon.engine.envelopes import Envelope, EnvShape, midi_to_hz, velocity_gain
from daemon.engine.voices import Instrument, PitchedInstrument, Track
from daemon.messages import Layer


def _quicker(shape: EnvShape, duration: float) -> EnvShape:
    """``shape`` for a chord struck within the bar (shorter than a 4/4 bar at 100 bpm): the
    attack of a keyboard stab (20 ms), not a swell, so it lands on its beat."""
    attack = shape.attack if duration >= 2.4 else min(shape.attack, 0.02)
    return shape if attack == shape.attack else dataclasses.replace(shape, attack=attack)


# --------------------------------------------------------------------------- FM keys


class FMKeys(PitchedInstrument):
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
        self.indexes: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 440.0)
            amp = self._amp(voice)
            idx = Track(voice.trig_env(mul=index), sample_rate)
            outs.append(voice.own(pyo.FM(carrier=freq, ratio=ratio, index=idx.env, mul=amp)))
            self.indexes.append(idx)
        self._mono_out(outs, level, pan=pan)

    def shape_for(self, duration: float) -> EnvShape:
        """Slow swells (the glass pad) come in faster on short, re-struck chords."""
        return _quicker(self.shape, duration) if self.layer is Layer.PAD else self.shape

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
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
            amp = voice.trig_env()
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


class OrganPad(PitchedInstrument):
    """A soft drawbar organ: additive harmonics (16', 8', 4', 2 2/3', 2') that speak at once and
    stop at once (with a few ms of key click smoothing), and a slow rotary-speaker tremolo that
    swirls between the channels."""

    layer = Layer.PAD
    shape = EnvShape(attack=0.02, decay=0.1, sustain=0.9, release=0.12)
    tail_s = 0.2
    transpose = -12  # the organ plays the 16' foot an octave below the written chord

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 6) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        # Harmonics relative to the 16' foot: 1, 2, 3, 4, 6, 8 with a soft registration.
        table = pyo.HarmTable([0.7, 1.0, 0.45, 0.5, 0.0, 0.25, 0.0, 0.15]).normalize()
        streams = []
        for voice in self.voices:
            freq = self._freq(voice, 110.0)
            amp = self._amp(voice)
            streams.append(voice.own(pyo.Osc(table, freq=freq, mul=amp)))
        mono = pyo.Mix(streams, voices=1, mul=0.32)
        self.rotor = pyo.Sine(freq=0.8, mul=0.25, add=0.5)
        soft = pyo.Tone(mono, freq=3500.0)
        self.output = pyo.Pan(soft, outs=2, pan=self.rotor, spread=0.3, mul=gain)
        self.shared = [mono, self.rotor, soft, self.output]
        self._finish_build()
