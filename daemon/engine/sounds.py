"""The sound catalogue: which sounds a scene preset may choose for each layer.

A preset names sounds by string (``lead = "flute"``, see :mod:`daemon.scenes`); this is the one
place those names become instruments and where a sound's settings (an FM bell's ratio and index,
a voice count) are chosen. It is apart from the instruments so that adding or retuning a sound
is an edit here, and apart from the band, which only mixes whatever this builds.
"""

from __future__ import annotations

from typing import Any

from daemon.engine.drums import Drums
from daemon.engine.envelopes import EnvShape
from daemon.engine.keys import FMKeys, OrganPad, Pad
from daemon.engine.melodic import Arp, Bass, FluteLead, Lead, Marimba, RoundBass
from daemon.engine.voices import PAN, Instrument
from daemon.messages import Layer


def build_sounds(layer: Layer, sample_rate: int, gain: Any) -> dict[str, Instrument]:
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
                pan=PAN[Layer.LEAD],
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
            pan=PAN[Layer.ARP],
            voices=4,
        ),
        "marimba": Marimba(sample_rate=sr, gain=gain),
    }


def build_stinger(sample_rate: int, gain: Any) -> Instrument:
    """The stingers' sound: a bright brass-like FM stab, quick to speak, that cuts through the
    band without a layer fader of its own (stingers sound at any layer count)."""
    return FMKeys(
        sample_rate=sample_rate,
        gain=gain,
        layer=Layer.STINGER,
        shape=EnvShape(attack=0.004, decay=0.45, sustain=0.35, release=0.35),
        ratio=1.0,
        index=4.0,
        index_decay=0.35,
        index_floor=0.35,
        level=0.5,
        pan=0.0,
        voices=10,
    )
