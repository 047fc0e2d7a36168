"""Per-output delays: each output's ``delay_ms`` against one reference, changeable while playing.

The reference is **the engine's sound as the recording holds it** (audio time). Every output
that acts at a musical time (MIDI, MQTT, OSC, OS2L, the web page's audio and visuals) attaches to
a :class:`~daemon.clock.DelayedClock` view of the engine, whose delay is

    engine.delay_ms + <section>.delay_ms

- ``engine.delay_ms`` is the sound card's own latency (the speakers play that much after the
  engine computes the sound): every other output moves later by as much, so all of them line up
  with what the speakers play. Renders and recordings are never moved.
- ``<section>.delay_ms`` (``midi``, ``mqtt``, ``osc``, ``os2l``, ``web``) moves that output
  later (+) or earlier (-) than the sound, for its own latency (lights over Wi-Fi, a browser
  source in OBS).

:class:`Delays` keeps the views per section, so a ``delay`` command (the panel's calibration
page, MQTT ``cmd/delay``) moves a running output at once; :meth:`Delays.as_dict` is what
``/api/state`` shows under ``delays``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from daemon.clock import DelayedClock, MusicClock

# The outputs with a delay of their own, by config section.
SECTIONS = ("midi", "mqtt", "osc", "os2l", "web")
LIMITS_MS: dict[str, tuple[float, float]] = {
    "engine": (0.0, 2000.0),
    "midi": (-500.0, 500.0),
    "mqtt": (-500.0, 2000.0),
    "osc": (-500.0, 2000.0),
    "os2l": (-500.0, 2000.0),
    "web": (-100.0, 2000.0),
}


class _View(DelayedClock):
    def __init__(self, clock: MusicClock, engine_s: float, own_s: float) -> None:
        super().__init__(clock, engine_s + own_s)
        self.own_s = own_s


class Delays:
    """The delays in force (milliseconds per section, and the engine's), and the clock views
    that carry them.

    Parameters
    ----------
    ms : ``{"engine": ..., "midi": ..., ...}``; a section not named has 0.
    """

    def __init__(self, ms: Mapping[str, float]) -> None:
        unknown = set(ms) - set(LIMITS_MS)
        if unknown:
            raise ValueError(f"no delay for {', '.join(sorted(unknown))}")
        self._ms = {name: float(ms.get(name, 0.0)) for name in LIMITS_MS}
        self._views: dict[str, list[_View]] = {name: [] for name in SECTIONS}
        self._lock = threading.Lock()

    def view(self, clock: MusicClock, section: str, own_s: float) -> MusicClock:
        """``clock`` as an output of ``section`` whose own delay is ``own_s`` (its
        ``delay_s``, normally its section's ``delay_ms``) sees it: that plus the engine's."""
        with self._lock:
            view = _View(clock, self._ms["engine"] / 1000.0, own_s)
            self._views[section].append(view)
        return view

    def set(self, section: str, ms: float) -> None:
        """Set ``section``'s delay (``engine``: the sound card's latency, moving every other
        output); its outputs move at once (what they scheduled already keeps its time).

        Raises
        ------
        ValueError
            An unknown section, or a delay outside its limits.
        """
        if section not in LIMITS_MS:
            raise ValueError(f"no delay for {section!r}; use one of {', '.join(LIMITS_MS)}")
        low, high = LIMITS_MS[section]
        if not low <= ms <= high:
            raise ValueError(f"{section} delay {ms:g} ms is outside {low:g}..{high:g} ms")
        with self._lock:
            self._ms[section] = float(ms)
            engine_s = self._ms["engine"] / 1000.0
            for name, views in self._views.items():
                for view in views:
                    if name == section:
                        view.own_s = ms / 1000.0
                    view.delay_s = engine_s + view.own_s

    def ms(self, section: str) -> float:
        """The delay of ``section`` in milliseconds (its own, without the engine's)."""
        return self._ms[section]

    def as_dict(self) -> dict[str, float]:
        """Every delay in milliseconds, by section (``engine`` first)."""
        return dict(self._ms)


__all__ = ["LIMITS_MS", "SECTIONS", "Delays"]
