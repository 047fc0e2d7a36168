"""The drum kit: one synthesised voice per drum, played from General MIDI drum notes.

The kit is an :class:`~daemon.engine.voices.Instrument` like the pitched sounds, but it is laid
out differently enough to stand alone: one voice per drum instead of a pool, a noise source and
an analogue-style "metal" oscillator bank shared by several drums, the drum style (brushes, an
electronic kick) and the open hat that a closed hat chokes.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyo

from daemon.engine.envelopes import Envelope, EnvShape, Points, envelope_points, velocity_gain
from daemon.engine.voices import Instrument
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
    Layer,
)

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
    # The toms' resting pitch in Hz; each hit starts 60 % above it and drops there.
    _TOM_BASE: ClassVar[dict[int, float]] = {LOW_TOM: 98.0, HIGH_TOM: 147.0}

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
        self.amps[KICK] = kick_v.trig_env(expo=True)
        self.kick_base = kick_v.own(pyo.Sig(47.0))
        self.kick_pitch = kick_v.trig_env(expo=True, add=self.kick_base)
        kick = kick_v.own(pyo.Sine(freq=self.kick_pitch, mul=self.amps[KICK]))
        self.kick_click = kick_v.trig_env(expo=True, mul=0.7)
        click = kick_v.own(pyo.ButHP(noise, freq=1200.0, mul=self.kick_click))
        outs.append(kick_v.own(pyo.Pan(kick_v.own(kick + click), outs=2, pan=0.5)))

        snare_v = self.kit[SNARE]
        self.amps[SNARE] = snare_v.trig_env(expo=True)
        self.snare_tone_amp = snare_v.trig_env(expo=True)
        snare_noise = snare_v.own(pyo.ButBP(noise, freq=2300.0, q=0.7, mul=self.amps[SNARE]))
        overtone = snare_v.own(self.snare_tone_amp * 0.5)
        snare_tone = snare_v.own(pyo.Sine(freq=[185.0, 330.0], mul=[self.snare_tone_amp, overtone]))
        snare_body = snare_v.own(pyo.Mix(snare_tone, voices=1))
        outs.append(snare_v.own(pyo.Pan(snare_v.own(snare_noise + snare_body), outs=2, pan=0.45)))

        brush_v = self.kit[BRUSH]
        self.amps[BRUSH] = brush_v.trig_env()
        brush = brush_v.own(pyo.ButBP(noise, freq=3400.0, q=0.35, mul=self.amps[BRUSH]))
        outs.append(brush_v.own(pyo.Pan(brush, outs=2, pan=0.42)))

        for drum, pan in ((CLOSED_HAT, 0.64), (OPEN_HAT, 0.66)):
            voice = self.kit[drum]
            self.amps[drum] = voice.trig_env(expo=True)
            outs.append(voice.own(pyo.Pan(hat_src, outs=2, pan=pan, mul=self.amps[drum])))

        ride_v = self.kit[RIDE]
        self.amps[RIDE] = ride_v.trig_env(expo=True)
        ride = ride_v.own(pyo.ButBP(hat_src, freq=6200.0, q=0.9, mul=self.amps[RIDE]))
        ping = ride_v.own(pyo.Sine(freq=[3100.0, 4870.0], mul=ride_v.own(self.amps[RIDE] * 0.12)))
        ride_mix = ride_v.own(pyo.Mix([ride, ping], voices=1, mul=2.0))
        outs.append(ride_v.own(pyo.Pan(ride_mix, outs=2, pan=0.3)))

        crash_v = self.kit[CRASH]
        self.amps[CRASH] = crash_v.trig_env(expo=True)
        crash = crash_v.own(pyo.ButHP(cymbal, freq=4200.0, mul=self.amps[CRASH]))
        outs.append(crash_v.own(pyo.Pan(crash, outs=2, pan=0.7, spread=0.4)))

        clap_v = self.kit[CLAP]
        self.amps[CLAP] = clap_v.trig_env()
        clap = clap_v.own(pyo.ButBP(noise, freq=1250.0, q=1.1, mul=self.amps[CLAP]))
        outs.append(clap_v.own(pyo.Pan(clap, outs=2, pan=0.52, spread=0.3)))

        stick_v = self.kit[SIDE_STICK]
        self.amps[SIDE_STICK] = stick_v.trig_env(expo=True)
        stick_tone = stick_v.own(
            pyo.Sine(freq=1720.0, mul=stick_v.own(self.amps[SIDE_STICK] * 0.5))
        )
        stick_noise = stick_v.own(pyo.ButBP(noise, freq=2600.0, q=1.5, mul=self.amps[SIDE_STICK]))
        outs.append(stick_v.own(pyo.Pan(stick_v.own(stick_tone + stick_noise), outs=2, pan=0.44)))

        self.tom_pitch: dict[int, Any] = {}
        for drum, pan in ((LOW_TOM, 0.38), (HIGH_TOM, 0.6)):
            voice = self.kit[drum]
            base = self._TOM_BASE[drum]
            self.amps[drum] = voice.trig_env(expo=True)
            self.tom_pitch[drum] = voice.trig_env(expo=True, add=base)
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
            env = self._envelope(
                voice,
                shape,
                gain * self.levels[drum],
                block_start=block_start,
                onset=onset,
                duration=duration,
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
            base = self._TOM_BASE[drum]
            self.tom_pitch[drum].setList(
                [(0.0, 0.0), (start + 1e-4, 0.0), (start + 2e-4, base * 0.6), (start + 0.2, 0.0)]
            )
        elif drum == CLOSED_HAT:
            self._choke_open_hat(block_start, onset)
        self._fire(voice, block_start, env)

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
