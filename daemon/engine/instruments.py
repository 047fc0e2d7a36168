"""The band: five pyo instruments (lead, bass, drums, pad, arp) and the master bus.

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

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import pyo

from daemon.engine.envelopes import (
    STOP_FADE_S,
    Envelope,
    EnvShape,
    envelope_points,
    level_at,
    midi_to_hz,
    velocity_gain,
)
from daemon.messages import CLOSED_HAT, KICK, LAYER_ORDER, OPEN_HAT, SNARE, Layer, Plan

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
            self.shape,
            peak=velocity_gain(velocity),
            delay=delay,
            duration=duration,
            start_level=voice.level(block_start),
        )
        self._wake(voice)
        self._start(self.voices.index(voice), pitch, velocity, env, duration)
        voice.fire(block_start, env)
        self._note_end(voice)

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        """Set voice ``index``'s pitch and envelopes; the caller then fires its trigger."""
        raise NotImplementedError

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


class Lead(Instrument):
    """Two detuned saws through a Moog ladder whose cutoff follows the amplitude envelope, with a
    vibrato that fades in once the note has sounded for a moment."""

    layer = Layer.LEAD
    shape = EnvShape(attack=0.012, decay=0.25, sustain=0.7, release=0.22)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        saw = pyo.SawTable(order=16).normalize()
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
                voice.own(pyo.Osc(saw, freq=voice.own(bent * 0.996), mul=0.5))
                + voice.own(pyo.Osc(saw, freq=voice.own(bent * 1.004), mul=0.5))
            )
            amp = _env(voice)
            cutoff = _env(voice, mul=4800.0, add=450.0)
            outs.append(voice.own(pyo.MoogLP(osc, freq=cutoff, res=0.3, mul=amp)))
            self.freqs.append(freq)
            self.amps.append(amp)
            self.cutoffs.append(cutoff)
            self.vib_envs.append(vib)
        mono = pyo.Mix(outs, voices=1, mul=0.55)
        self.output = pyo.Pan(mono, outs=2, pan=_PAN[self.layer], mul=gain)
        self.shared = [self.vibrato, mono, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        self.cutoffs[index].setList(env.points)
        fade_in = env.onset + 0.25
        if env.end > fade_in + 0.02:
            peak_at = min(fade_in + 0.4, env.end - 0.01)
            self.vib_envs[index].setList(
                [(0.0, 0.0), (fade_in, 0.0), (peak_at, 1.0), (env.end, 0.0)]
            )
        else:
            self.vib_envs[index].setList(_SILENT)


class Bass(Instrument):
    """A saw through a resonant Moog low-pass with its own snappy filter envelope, plus a sub sine
    an octave down that stays unfiltered for weight."""

    layer = Layer.BASS
    shape = EnvShape(attack=0.006, decay=0.3, sustain=0.8, release=0.09)
    filter_shape = EnvShape(attack=0.004, decay=0.22, sustain=0.25, release=0.09)

    def __init__(self, *, sample_rate: int, gain: Any, voices: int = 2) -> None:
        super().__init__(sample_rate=sample_rate, voices=voices, gain=gain)
        saw = pyo.SawTable(order=32).normalize()
        self.freqs: list[Any] = []
        self.sub_freqs: list[Any] = []
        self.amps: list[Any] = []
        self.filter_envs: list[Any] = []
        outs = []
        for voice in self.voices:
            freq = voice.own(pyo.Sig(55.0))
            sub_freq = voice.own(pyo.Sig(27.5))
            amp = _env(voice)
            fenv = _env(voice, mul=2600.0, add=140.0)
            osc = voice.own(pyo.Osc(saw, freq=freq, mul=1.3))
            filtered = voice.own(pyo.MoogLP(osc, freq=fenv, res=0.35, mul=amp))
            sub = voice.own(pyo.Sine(freq=sub_freq, mul=amp))
            outs.extend([filtered, sub])
            self.freqs.append(freq)
            self.sub_freqs.append(sub_freq)
            self.amps.append(amp)
            self.filter_envs.append(fenv)
        mono = pyo.Mix(outs, voices=1, mul=0.34)
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
        self.filter_envs[index].setList(fenv.points)


class Drums(Instrument):
    """Synthesised kit: kick (sine with a fast pitch drop), snare (band of noise plus a tone),
    closed and open hats (high-passed noise, short and long; a closed hat chokes the open one).

    One voice per drum: a new hit on a drum that still rings retriggers it from its current level.
    """

    layer = Layer.DRUMS
    shape = EnvShape(attack=0.001, decay=0.1, sustain=0.0, release=0.0, percussive=True)
    shapes: ClassVar[dict[int, EnvShape]] = {
        KICK: EnvShape(0.001, 0.42, 0.0, 0.0, True),
        SNARE: EnvShape(0.001, 0.2, 0.0, 0.0, True),
        CLOSED_HAT: EnvShape(0.001, 0.05, 0.0, 0.0, True),
        OPEN_HAT: EnvShape(0.002, 0.38, 0.0, 0.0, True),
    }
    levels: ClassVar[dict[int, float]] = {KICK: 1.0, SNARE: 0.85, CLOSED_HAT: 0.4, OPEN_HAT: 0.3}

    def __init__(self, *, sample_rate: int, gain: Any) -> None:
        super().__init__(sample_rate=sample_rate, voices=4, gain=gain)
        kick_v, snare_v, closed_v, open_v = self.voices
        self.kit = {KICK: kick_v, SNARE: snare_v, CLOSED_HAT: closed_v, OPEN_HAT: open_v}
        noise = pyo.Noise()
        hat_src = pyo.ButHP(noise, freq=7800.0)

        self.kick_amp = _env(kick_v, expo=True)
        self.kick_pitch = _env(kick_v, expo=True, add=47.0)
        kick = kick_v.own(pyo.Sine(freq=self.kick_pitch, mul=self.kick_amp))
        kick_st = kick_v.own(pyo.Pan(kick, outs=2, pan=0.5))

        self.snare_amp = _env(snare_v, expo=True)
        self.snare_tone_amp = _env(snare_v, expo=True)
        snare_noise = snare_v.own(pyo.ButBP(noise, freq=2300.0, q=0.7, mul=self.snare_amp))
        snare_tone = snare_v.own(pyo.Sine(freq=190.0, mul=self.snare_tone_amp))
        snare_st = snare_v.own(pyo.Pan(snare_noise + snare_tone, outs=2, pan=0.45))
        snare_v.own(snare_st.input)  # the `+` above is an object of its own

        self.closed_amp = _env(closed_v, expo=True)
        self.open_amp = _env(open_v, expo=True)
        closed_st = closed_v.own(pyo.Pan(hat_src, outs=2, pan=0.64, mul=self.closed_amp))
        open_st = open_v.own(pyo.Pan(hat_src, outs=2, pan=0.66, mul=self.open_amp))

        self.output = pyo.Mix([kick_st, snare_st, closed_st, open_st], voices=2, mul=gain * 0.85)
        self.shared = [noise, hat_src, self.output]
        self._finish_build()

    @staticmethod
    def drum_for(pitch: int) -> int:
        """Map any General MIDI drum note to one of the four synthesised drums."""
        if pitch in (35, 36):
            return KICK
        if pitch in (37, 38, 39, 40):
            return SNARE
        if pitch in (46, 49, 51, 52, 55, 57, 59):
            return OPEN_HAT
        return CLOSED_HAT

    def note_on(
        self, pitch: int, velocity: int, *, block_start: int, onset: int, duration: float
    ) -> None:
        """Hit the drum for ``pitch`` at absolute sample ``onset`` (duration is ignored)."""
        drum = self.drum_for(pitch)
        voice = self.kit[drum]
        if voice.fired_at == block_start:
            return
        gain = velocity_gain(velocity)
        env = envelope_points(
            self.shapes[drum],
            peak=gain * self.levels[drum],
            delay=(onset - block_start) / self.sample_rate,
            duration=duration,
            start_level=voice.level(block_start),
        )
        self._wake(voice)
        start = env.onset
        if drum == KICK:
            self.kick_amp.setList(env.points)
            # Pitch falls from ~240 Hz (the beater's click) to the body's 47 Hz.
            self.kick_pitch.setList(
                [(0.0, 0.0), (start + 1e-4, 0.0), (start + 2e-4, 190.0), (start + 0.09, 0.0)]
            )
        elif drum == SNARE:
            self.snare_amp.setList(env.points)
            tone = envelope_points(
                EnvShape(0.001, 0.09, 0.0, 0.0, True), peak=gain * 0.5, delay=start, duration=0
            )
            self.snare_tone_amp.setList(tone.points)
        elif drum == CLOSED_HAT:
            self.closed_amp.setList(env.points)
            self._choke_open_hat(block_start, onset)
        else:
            self.open_amp.setList(env.points)
        voice.fire(block_start, env)
        self._note_end(voice)

    def _choke_open_hat(self, block_start: int, onset: int) -> None:
        voice = self.kit[OPEN_HAT]
        level = voice.level(block_start)
        if level <= 1e-4 or voice.fired_at == block_start:
            return
        delay = max((onset - block_start) / self.sample_rate, 1e-4)
        choke = [(0.0, level), (delay, level * 0.9), (delay + 0.01, 0.0)]
        self.open_amp.setList(choke)
        voice.fire(block_start, Envelope(choke, delay, delay + 0.01))


class Pad(Instrument):
    """Detuned saws (one left, one right per voice) with a slow attack, through a stereo low-pass
    whose cutoff drifts with a slow LFO around a brightness set by the chord's velocity."""

    layer = Layer.PAD
    shape = EnvShape(attack=0.55, decay=0.6, sustain=0.8, release=1.1)
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
        mix = pyo.Mix(streams, voices=2, mul=0.15)
        self.output = pyo.MoogLP(mix, freq=self.sweep, res=0.12, mul=gain)
        self.shared = [self.sweep, mix, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        hz = midi_to_hz(pitch)
        left, right = self.freqs[index]
        left.value = hz * 0.9965
        right.value = hz * 1.0035
        self.amps[index].setList(env.points)
        self.brightness.value = 700.0 + 1800.0 * velocity_gain(velocity)


class Arp(Instrument):
    """A plucky square-plus-octave tone through an envelope-following one-pole low-pass, with a
    dotted-eighth echo on the other side of the stereo field that follows the tempo."""

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
        dry = pyo.Mix(outs, voices=1, mul=0.5)
        self.delay_time = pyo.SigTo(0.375, time=0.2)
        echo = pyo.Delay(dry, delay=self.delay_time, feedback=0.38, maxdelay=2.0)
        self.echo = pyo.Tone(echo, freq=3200.0, mul=0.55)
        dry_st = pyo.Pan(dry, outs=2, pan=_PAN[self.layer])
        echo_st = pyo.Pan(self.echo, outs=2, pan=0.78)
        self.output = pyo.Mix([dry_st, echo_st], voices=2, mul=gain)
        self.shared = [dry, echo, self.echo, dry_st, echo_st, self.output]
        self._finish_build()

    def _start(self, index: int, pitch: int, velocity: int, env: Envelope, duration: float) -> None:
        self.freqs[index].value = midi_to_hz(pitch)
        self.amps[index].setList(env.points)
        self.cutoffs[index].setList(env.points)

    def set_tempo(self, bpm: float) -> None:
        """Keep the echo on a dotted eighth of the new tempo."""
        self.delay_time.value = min(0.75 * 60.0 / bpm, 1.9)


class Band:
    """All five layers, their gains, the reverb and the master bus (limiter, then a hard clip).

    Parameters
    ----------
    sample_rate : the server's sample rate in Hz.
    master_gain : output level in [0, 1], applied after the limiter.
    reverb : reverb return level in [0, 1].
    """

    def __init__(self, *, sample_rate: int, master_gain: float, reverb: float) -> None:
        self.sample_rate = sample_rate
        self.gains = {layer: pyo.SigTo(0.0, time=0.5) for layer in LAYER_ORDER}
        g = self.gains
        self.instruments: dict[Layer, Instrument] = {
            Layer.LEAD: Lead(sample_rate=sample_rate, gain=g[Layer.LEAD]),
            Layer.BASS: Bass(sample_rate=sample_rate, gain=g[Layer.BASS]),
            Layer.DRUMS: Drums(sample_rate=sample_rate, gain=g[Layer.DRUMS]),
            Layer.PAD: Pad(sample_rate=sample_rate, gain=g[Layer.PAD]),
            Layer.ARP: Arp(sample_rate=sample_rate, gain=g[Layer.ARP]),
        }
        self._gain_targets = dict.fromkeys(LAYER_ORDER, 0.0)
        self._bpm = 0.0
        outputs = {layer: inst.output for layer, inst in self.instruments.items()}
        dry = pyo.Mix(list(outputs.values()), voices=2)
        # Lead, pad and arp share one reverb send; bass and drums stay dry and upfront.
        send = pyo.Mix([outputs[Layer.LEAD], outputs[Layer.PAD], outputs[Layer.ARP]], voices=2)
        self.reverb = pyo.Freeverb(send, size=0.82, damp=0.55, bal=1.0, mul=reverb * 0.9)
        bus = dry + self.reverb
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
        self._keep = [dry, send, bus, rectified, detector, limited]

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
        self.instruments[layer].note_on(
            pitch, velocity, block_start=block_start, onset=onset, duration=duration
        )

    def bar(self, plan: Plan, *, first: bool) -> None:
        """Apply a bar's plan at its downbeat: layer gains ramp over one beat, tempo effects."""
        beat_s = 60.0 / plan.bpm
        for layer in LAYER_ORDER:
            target = 1.0 if plan.layers >= layer.order else 0.0
            if target != self._gain_targets[layer]:
                gain = self.gains[layer]
                # The very first bar starts at its level: there is nothing to fade from.
                gain.time = 0.0 if first else beat_s
                gain.value = target
                self._gain_targets[layer] = target
        if plan.bpm != self._bpm:
            self._bpm = plan.bpm
            for instrument in self.instruments.values():
                instrument.set_tempo(plan.bpm)

    def housekeeping(self, block_start: int) -> None:
        """Stop computing voices and layers that have gone silent."""
        for instrument in self.instruments.values():
            instrument.housekeeping(block_start)

    def fade_out(self, seconds: float = STOP_FADE_S) -> None:
        """Ramp the master to silence over ``seconds``."""
        self.fader.time = max(seconds, 0.001)
        self.fader.value = 0.0
