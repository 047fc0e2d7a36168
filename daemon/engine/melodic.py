"""The pitched sounds that play lines: the lead, bass and arp instruments.

Each class is one sound a scene preset can name (see :mod:`daemon.engine.sounds`); what they
share, the voice pool and its bookkeeping, is :class:`~daemon.engine.voices.Instrument`. They are
apart from the chord sounds in :mod:`daemon.engine.keys` only to keep each module readable.
"""

from __future__ import annotations

from typing import Any

import pyo

from daemon.engine.envelopes import (
    Envelope,
    EnvShape,
    Points,
    envelope_points,
    midi_to_hz,
    velocity_gain,
)
from daemon.engine.voices import PAN, SILENT, PitchedInstrument, Track
from daemon.messages import Layer

# --------------------------------------------------------------------------- lead


class Lead(PitchedInstrument):
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
        self.cutoffs: list[Any] = []
        self.vib_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 440.0)
            # 1 + depth * vibrato: the envelope carries the depth, mul/add do the rest.
            vib = voice.trig_env(mul=self.vibrato, add=1.0)
            bent = voice.own(freq * vib)
            osc = voice.own(
                voice.own(pyo.Osc(table, freq=voice.own(bent * 0.996), mul=0.5))
                + voice.own(pyo.Osc(table, freq=voice.own(bent * 1.004), mul=0.5))
            )
            amp = self._amp(voice)
            cutoff = voice.trig_env(mul=cutoff_range, add=cutoff_floor)
            outs.append(voice.own(pyo.MoogLP(osc, freq=cutoff, res=res, mul=amp)))
            self.cutoffs.append(cutoff)
            self.vib_envs.append(vib)
        self._mono_out(outs, level, shared=[self.vibrato])

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        self.cutoffs[index].setList(env.points)
        self.vib_envs[index].setList(_vibrato_points(env))


def _vibrato_points(env: Envelope, *, wait: float = 0.25, rise: float = 0.4) -> Points:
    """Vibrato depth: none for ``wait`` s after the onset, then rising over ``rise`` s."""
    fade_in = env.onset + wait
    if env.end <= fade_in + 0.02:
        return list(SILENT)
    peak_at = min(fade_in + rise, env.end - 0.01)
    return [(0.0, 0.0), (fade_in, 0.0), (peak_at, 1.0), (env.end, 0.0)]


class FluteLead(PitchedInstrument):
    """A soft, breathy lead: a near-sine tone (a little 2nd and 3rd harmonic) with breath noise
    band-passed around the note, a gentle attack and an early, slow vibrato."""

    layer = Layer.LEAD
    shape = EnvShape(attack=0.06, decay=0.2, sustain=0.8, release=0.18)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        table = pyo.HarmTable([1.0, 0.22, 0.12, 0.04, 0.02]).normalize()
        noise = pyo.Noise()
        self.vibrato = pyo.Sine(freq=4.8, mul=0.009)
        self.breath_freqs: list[Any] = []
        self.breaths: list[Any] = []
        self.vib_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 440.0)
            vib = voice.trig_env(mul=self.vibrato, add=1.0)
            amp = self._amp(voice)
            breath_amp = Track(voice.trig_env(mul=0.09), sample_rate)
            tone = voice.own(pyo.Osc(table, freq=voice.own(freq * vib), mul=amp))
            breath_freq = voice.own(pyo.Sig(880.0))
            breath = voice.own(pyo.ButBP(noise, freq=breath_freq, q=3.0, mul=breath_amp.env))
            outs.extend([tone, breath])
            self.breath_freqs.append(breath_freq)
            self.breaths.append(breath_amp)
            self.vib_envs.append(vib)
        self._mono_out(outs, 0.42, shared=[noise, self.vibrato])

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        self.breath_freqs[index].value = min(midi_to_hz(pitch) * 2.0, 9000.0)
        # The breath puffs at the attack, then settles to a whisper under the tone.
        start = env.onset
        breath = [(0.0, 0.0), (max(start, 1e-4), 0.0), (start + 0.03, 1.0), (start + 0.12, 0.35)]
        breath += [(max(env.end - 0.05, start + 0.13), 0.3), (env.end, 0.0)]
        self.breaths[index].set(breath, self._block_start, env.onset)
        self.vib_envs[index].setList(_vibrato_points(env, wait=0.15, rise=0.5))


# --------------------------------------------------------------------------- bass


class Bass(PitchedInstrument):
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
        self.sub_freqs: list[Any] = []
        self.filter_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 55.0)
            sub_freq = voice.own(pyo.Sig(27.5))
            amp = self._amp(voice)
            fenv = Track(voice.trig_env(mul=filter_range, add=filter_floor), sample_rate)
            osc = voice.own(pyo.Osc(table, freq=freq, mul=1.3))
            filtered = voice.own(pyo.MoogLP(osc, freq=fenv.env, res=res, mul=amp))
            sub_amp = voice.own(amp * sub_level) if sub_level != 1.0 else amp
            sub = voice.own(pyo.Sine(freq=sub_freq, mul=sub_amp))
            outs.extend([filtered, sub])
            self.sub_freqs.append(sub_freq)
            self.filter_envs.append(fenv)
        self._mono_out(outs, level)

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        self.sub_freqs[index].value = midi_to_hz(pitch) * 0.5
        fenv = envelope_points(
            self.filter_shape,
            peak=0.25 + 0.75 * velocity_gain(velocity),
            delay=env.onset,
            duration=duration,
        )
        self.filter_envs[index].set(fenv.points, self._block_start, env.onset)


class RoundBass(PitchedInstrument):
    """A warm, round bass: a sine with a little 2nd and 3rd harmonic, a soft thump of extra
    harmonics at the attack, and no resonance."""

    layer = Layer.BASS
    shape = EnvShape(attack=0.008, decay=0.35, sustain=0.75, release=0.1)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        body = pyo.HarmTable([1.0, 0.32, 0.1, 0.03]).normalize()
        thump = pyo.HarmTable([0.0, 0.6, 0.5, 0.4, 0.3, 0.2]).normalize()
        self.thumps: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 55.0)
            amp = self._amp(voice)
            thump_amp = Track(voice.trig_env(expo=True, mul=0.35), sample_rate)
            outs.append(voice.own(pyo.Osc(body, freq=freq, mul=amp)))
            outs.append(voice.own(pyo.Osc(thump, freq=freq, mul=thump_amp.env)))
            self.thumps.append(thump_amp)
        self._mono_out(outs, 0.36)

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        thump = envelope_points(
            EnvShape(0.003, 0.12, 0.0, 0.0, True),
            peak=velocity_gain(velocity),
            delay=env.onset,
            duration=0.0,
        )
        self.thumps[index].set(thump.points, self._block_start, env.onset)


# --------------------------------------------------------------------------- arp


class Arp(PitchedInstrument):
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
        self.cutoffs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 440.0)
            amp = self._amp(voice, expo=True)
            cutoff = voice.trig_env(expo=True, mul=6500.0, add=350.0)
            osc = voice.own(pyo.Osc(table, freq=freq))
            outs.append(voice.own(pyo.Tone(osc, freq=cutoff, mul=amp)))
            self.cutoffs.append(cutoff)
        dry = pyo.Mix(outs, voices=1, mul=0.7)
        self.delay_time = pyo.SigTo(0.5, time=0.2)
        echo = pyo.Delay(dry, delay=self.delay_time, feedback=0.38, maxdelay=2.0)
        self.echo = pyo.Tone(echo, freq=3200.0, mul=0.55)
        dry_st = pyo.Pan(dry, outs=2, pan=PAN[self.layer])
        echo_st = pyo.Pan(self.echo, outs=2, pan=0.78)
        self.output = pyo.Mix([dry_st, echo_st], voices=2, mul=gain)
        self.shared = [dry, self.delay_time, echo, self.echo, dry_st, echo_st, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        self.cutoffs[index].setList(env.points)

    def set_tempo(self, bpm: float) -> None:
        """Keep the echo on one beat of the new tempo."""
        self.delay_time.value = min(60.0 / bpm, 1.9)


class Marimba(PitchedInstrument):
    """A marimba: a sine fundamental with the bar's tuned 4th partial and a hint of the 10th,
    the upper partials dying much faster than the fundamental (the mallet's knock)."""

    layer = Layer.ARP
    shape = EnvShape(attack=0.002, decay=0.5, sustain=0.0, release=0.0, percussive=True)
    partial_shape = EnvShape(attack=0.001, decay=0.09, sustain=0.0, release=0.0, percussive=True)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 4) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        self.knocks: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = self._freq(voice, 440.0)
            amp = self._amp(voice, expo=True)
            knock = Track(voice.trig_env(expo=True), sample_rate)
            outs.append(voice.own(pyo.Sine(freq=freq, mul=amp)))
            fourth = voice.own(pyo.Sine(freq=voice.own(freq * 4.0), mul=0.3))
            tenth = voice.own(pyo.Sine(freq=voice.own(freq * 9.9), mul=0.08))
            outs.append(voice.own(voice.own(fourth + tenth) * knock.env))
            self.knocks.append(knock)
        self._mono_out(outs, 0.5, spread=0.2)

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        super()._start(index, pitch, velocity, env, duration)
        knock = envelope_points(
            self.partial_shape, peak=velocity_gain(velocity), delay=env.onset, duration=0.0
        )
        self.knocks[index].set(knock.points, self._block_start, env.onset)
