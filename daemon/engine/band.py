"""The band: five pyo layers (lead, bass, drums, pad, arp), each in several sounds, and the master
bus.

The scene preset of each bar's plan picks the sound of every layer (``lead = "flute"``, ...) and
the drum style; the notes of a layer go to the instrument of its current sound, and a sound that
is switched away from lets its notes ring out, so a scene change never cuts a note.

This module is the mixer: the layer faders that ramp on exact samples, the side-chain pump, the
reverb send, the limiter and the master fade. The sounds themselves come from
:mod:`daemon.engine.sounds`, and how a note plays on them from :mod:`daemon.engine.voices`.

Build a :class:`Band` only after the pyo server has booted, in the thread that owns pyo, and call
its methods only from that thread (the engine's per-block tick).
"""

from __future__ import annotations

import pyo

from daemon.clock import BarGrid
from daemon.engine.drums import Drums
from daemon.engine.envelopes import STOP_FADE_S, Points
from daemon.engine.sounds import build_sounds, build_stinger
from daemon.engine.voices import SILENT, Instrument, Track
from daemon.messages import LAYER_ORDER, Layer, Plan

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


class _Fader(Track):
    """A layer's gain: a trigger-driven ramp that starts on an exact sample (a beat) and holds
    its target afterwards."""

    def __init__(self, sample_rate: int) -> None:
        self.trig = pyo.Trig().stop()
        super().__init__(pyo.TrigLinseg(self.trig, list(SILENT)), sample_rate)
        self.target = 0.0

    def move(self, target: float, *, block_start: int, at: int, seconds: float) -> None:
        """Ramp from the current level to ``target`` over ``seconds``, from absolute sample
        ``at`` (inside the block starting at ``block_start``)."""
        level = self.level(block_start)
        delay = max(at - block_start, 0) / self.sample_rate
        points: Points = [(0.0, level)]
        if delay > 1e-4:
            points.append((delay, level))
        points.append((points[-1][0] + max(seconds, 1e-3), target))
        self._load(points, block_start)
        self.trig.play()
        self.target = target


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
            layer: build_sounds(layer, sample_rate, gains[layer]) for layer in LAYER_ORDER
        }
        self._gains = gains
        self._grid: BarGrid | None = None
        self.current: dict[Layer, Instrument] = {
            layer: next(iter(sounds.values())) for layer, sounds in self.sounds.items()
        }
        drums = self.sounds[Layer.DRUMS]["kit"]
        assert isinstance(drums, Drums)
        self.drums = drums
        # Stingers: made after the five layers (pyo computes objects in the order they were
        # made), at full level whatever the layer count.
        self._stinger_gain = pyo.Sig(1.0)
        self.sounds[Layer.STINGER] = {"stab": build_stinger(sample_rate, self._stinger_gain)}
        self.current[Layer.STINGER] = self.sounds[Layer.STINGER]["stab"]
        # The sounds in force (lead, bass, pad, arp, drum style): every plan carries its preset,
        # so a scene change or an edited preset is a comparison here, never a file read.
        self._sounds: tuple[str, ...] | None = None
        self._bpm = 0.0
        everything = [inst.output for sounds in self.sounds.values() for inst in sounds.values()]
        dry = pyo.Mix(everything, voices=2)
        # Lead, pad and arp share one reverb send; bass and drums stay dry and upfront.
        wet = [
            inst.output
            for layer in (Layer.LEAD, Layer.PAD, Layer.ARP, Layer.STINGER)
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
        beat_s = grid.offset_samples(1) / grid.sample_rate
        self._grid = grid
        self._apply(grid.plan, block_start=block_start, at=grid.start, fade_s=beat_s, first=first)
        if grid.bpm != self._bpm:
            self._bpm = grid.bpm
            for sounds in self.sounds.values():
                for instrument in sounds.values():
                    instrument.set_tempo(grid.bpm)

    def change(self, plan: Plan, *, block_start: int, at: int, fade_s: float) -> None:
        """Take ``plan``'s sounds and layers from sample ``at`` inside a bar (a reaction that
        does not wait for the bar line), layers fading over ``fade_s``; the tempo stays."""
        self._apply(plan, block_start=block_start, at=at, fade_s=fade_s, first=False)

    def _apply(self, plan: Plan, *, block_start: int, at: int, fade_s: float, first: bool) -> None:
        preset = plan.preset
        sounds_wanted = (preset.lead, preset.bass, preset.pad, preset.arp, preset.drums)
        if sounds_wanted != self._sounds:
            self._sounds = sounds_wanted
            for layer in LAYER_ORDER:
                sounds = self.sounds[layer]
                # The old sound's notes ring out on their own; new notes go to the new sound.
                self.current[layer] = sounds.get(preset.sound(layer), next(iter(sounds.values())))
            self.drums.style = preset.drums
        drums = plan.layers >= Layer.DRUMS.order and self.drums.style in _PUMPING_STYLES
        self.pump.depth = pump_depth(plan) if drums else 0.0
        for layer in LAYER_ORDER:
            target = 1.0 if plan.layers >= layer.order else 0.0
            fader = self.faders[layer]
            if first or target != fader.target:
                # The very first bar starts at its level: there is nothing to fade from.
                fader.move(target, block_start=block_start, at=at, seconds=0.0 if first else fade_s)

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
