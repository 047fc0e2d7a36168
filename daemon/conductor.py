"""The conductor: Mood -> Plan, smoothed, with hysteresis, decided bar by bar.

Mapping (documented in the README):

- valence and arousal are smoothed with confidence-weighted exponential filters stepped by each
  window's own timestamps, so a render and a live run of the same windows smooth identically.
  Valence uses ``conductor.smoothing_s``. Arousal moves only when the last two windows agree on
  a direction (both above the level: the lower of them leads; both below: the higher), so a
  blink, a single bright window or a flickering picture moves nothing. A drift follows with
  ``smoothing_s``; a sudden change (``cue_threshold`` or more) is asymmetric: a **rise** follows
  with the short ``attack_s``, a **fall** with the long ``release_s``: a fight starts with the
  picture and fades slowly;
- a window whose (two-window) arousal jumps at least ``cue_threshold`` from the smoothed level is
  a **cue** (``rise``/``fall``; once per change, not again while the level is still catching
  up), as is a confident scene change (``scene``); :meth:`observe`
  returns them, for the planner to answer at once rather than at the next bar line;
- arousal is read as a **level** in [0, 1] across [-0.8, +0.8] (clipped beyond): analysers seldom
  report the extremes, and the full tempo and layer ranges should be reachable;
- **bpm** = bpm_min + level * (bpm_max - bpm_min) of the scene preset, rounded; it changes only
  when the target moves more than ``hysteresis`` of the range away;
- **layers** = layers_min + level * (layers_max - layers_min), rounded; the count changes only
  when that value leaves the current count's band (+-0.5) widened by half the ``hysteresis`` of
  the range;
- **mode** is major above valence +hysteresis, minor below -hysteresis, unchanged between
  (unless the preset fixes it); the tonic is the preset's major or (relative) minor tonic;
- **density** (how busy the notes are) = (arousal + 1) / 2, nudged up a little by valence;
- **scene**: when moods name a scene (``Mood.scene``, from a scene model) that has a preset in
  ``scenes/``, and keep naming it for ``conductor.scene_hold_s`` seconds (``scene_attack_s`` when
  its probability is at least ``scene_confidence``), the conductor switches to that preset; tempo
  and layers then start afresh in the new preset's ranges. Names without a preset are ignored
  (logged once).

Plans are asked for one bar at a time (:meth:`Conductor.plan_for_bar`), so every change lands on
a bar line.

**Overrides** (live control: MQTT, the web panel; see :mod:`daemon.control`) take precedence over
the mood from the next plan on: a held mood (:meth:`Conductor.hold_mood`; released, the smoothed
mood carries on from it, so the music glides back to what the analysis reads), a forced scene
preset (:meth:`Conductor.force_scene`), a fixed tempo, layer count or key. A fixed value is used
as given, outside the preset's ranges if need be; released, the mood decides again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

from daemon.config import ConductorConfig
from daemon.errors import ConfigError
from daemon.messages import Cue, Mode, Mood, Plan
from daemon.scenes import BUILT_IN, PresetLibrary, ScenePreset

log = logging.getLogger(__name__)

AROUSAL_SPAN = 0.8  # arousal in [-0.8, 0.8] spans the whole tempo and layer range


@dataclass(slots=True)
class _Smoothed:
    valence: float
    arousal: float
    time: float
    last_arousal: float | None = None  # the previous window's reading (rises must hold)
    # The sudden change under way ("rise"/"fall"), cued once: a slow release stays sudden for
    # many windows, and each would otherwise be a fresh cue (and a fresh stinger).
    moving: str | None = None


class Conductor:
    """Turns a stream of moods into one Plan per bar.

    Parameters
    ----------
    config : the ``[conductor]`` section.
    preset : the scene preset in force at the start.
    presets : where scene names are looked up (the user's folders, then the built-in ones).
    """

    def __init__(
        self, *, config: ConductorConfig, preset: ScenePreset, presets: PresetLibrary = BUILT_IN
    ) -> None:
        self._config = config
        self._preset = preset
        self.presets = presets
        self._smoothed: _Smoothed | None = None
        self._bpm: float | None = None
        self._layers: int | None = None
        self._mode: Mode | None = None
        # The scene the moods name now, and the source time they began naming it.
        self._candidate: tuple[str, float] | None = None
        self._unknown_scenes: set[str] = set()
        self._bad_file: str | None = None  # the last preset-file problem reported
        self.moods_seen = 0
        # Live-control overrides (None: the mood decides).
        self._held: tuple[float, float] | None = None
        self._hold_until: float | None = None  # audio time a timed hold ends
        self._forced: ScenePreset | None = None
        self._fixed_bpm: float | None = None
        self._followed_bpm: float | None = None  # an outside clock's tempo (MIDI clock in)
        self._fixed_layers: int | None = None
        self._fixed_key: tuple[int, Mode] | None = None

    @property
    def preset(self) -> ScenePreset:
        """The scene preset in force (the next plan uses it): a forced one, else the mood's."""
        return self._forced if self._forced is not None else self._preset

    # -- overrides (live control) ----------------------------------------------------------

    def hold_mood(self, valence: float, arousal: float, *, until: float | None = None) -> None:
        """Plan from this (valence, arousal), whatever is observed, until :meth:`release_mood`
        or, with ``until``, the first plan decided at or after that audio time."""
        self._held = (_clip(valence), _clip(arousal))
        self._hold_until = until

    def release_mood(self) -> None:
        """End a held mood; the smoothed mood carries on from the held one."""
        if self._held is not None:
            self.nudge_mood(*self._held)
        self._held = None
        self._hold_until = None

    def nudge_mood(self, valence: float, arousal: float) -> None:
        """Set the smoothed mood without holding it: the analysis moves it on from here."""
        if self._smoothed is None:
            # No window seen yet: the first one to come replaces this wholly (dt is infinite).
            self._smoothed = _Smoothed(_clip(valence), _clip(arousal), -math.inf)
        else:
            self._smoothed.valence, self._smoothed.arousal = _clip(valence), _clip(arousal)

    def force_scene(self, preset: ScenePreset | None) -> None:
        """Use ``preset`` whatever the analysis names; None gives the choice back to the mood.

        Tempo and layers start afresh in the new preset's ranges when the preset in force
        changes."""
        before = self.preset
        self._forced = preset
        if self.preset != before:
            log.info("scene: %s%s", self.preset.name, " (forced)" if preset else "")
            self._bpm = None
            self._layers = None

    def fix_tempo(self, bpm: float | None) -> None:
        """Play at ``bpm`` from the next plan on; None lets the mood set the tempo again."""
        if bpm is None and self._fixed_bpm is not None:
            self._bpm = None  # the mood's tempo, at once rather than after hysteresis
        self._fixed_bpm = bpm

    def follow_tempo(self, bpm: float | None) -> None:
        """Play at an outside clock's tempo from the next plan on, over a fixed tempo and the
        mood's (the outside clock leads); None when it went away: the fixed or the mood's tempo
        again."""
        self._followed_bpm = bpm

    @property
    def followed_tempo(self) -> float | None:
        """The outside clock's tempo in force, None when none leads."""
        return self._followed_bpm

    def fix_layers(self, layers: int | None) -> None:
        """Play ``layers`` layers from the next plan on; None lets the mood decide again."""
        if layers is None and self._fixed_layers is not None:
            self._layers = None
        self._fixed_layers = layers

    def fix_key(self, key: tuple[int, Mode] | None) -> None:
        """Play in (tonic pitch class, mode) from the next plan on; None releases the key."""
        self._fixed_key = key

    @property
    def overrides(self) -> dict[str, Any]:
        """The overrides in force, by name (``mood``, ``scene``, ``bpm``, ``clock_in_bpm`` (an
        outside clock's tempo, which leads), ``layers``, ``key``); absent names follow the mood."""
        found: dict[str, Any] = {}
        if self._held is not None:
            found["mood"] = {"valence": self._held[0], "arousal": self._held[1]}
            if self._hold_until is not None:
                found["mood"]["until_audio_time"] = round(self._hold_until, 3)
        if self._forced is not None:
            found["scene"] = self._forced.name
        if self._fixed_bpm is not None:
            found["bpm"] = self._fixed_bpm
        if self._followed_bpm is not None:
            found["clock_in_bpm"] = self._followed_bpm
        if self._fixed_layers is not None:
            found["layers"] = self._fixed_layers
        if self._fixed_key is not None:
            found["key"] = {"tonic": self._fixed_key[0], "mode": self._fixed_key[1]}
        return found

    def set_preset(self, preset: ScenePreset) -> None:
        """Switch to ``preset`` from the next plan on; tempo and layers start afresh in its
        ranges (the mode carries over unless the preset fixes it)."""
        if preset == self._preset:
            return
        log.info("scene: %s", preset.name)
        self._preset = preset
        self._bpm = None
        self._layers = None

    def observe(self, mood: Mood) -> list[Cue]:
        """Fold one analysis window into the smoothed mood (and its scene, if it names one);
        the cues it raises (a jump in arousal, a confident scene change), usually none."""
        self.moods_seen += 1
        cues = self._observe_scene(mood)
        if self._smoothed is None:
            self._smoothed = _Smoothed(mood.valence, mood.arousal, mood.t_end, mood.arousal)
            return cues
        s = self._smoothed
        dt = max(0.0, mood.t_end - s.time)
        confidence = max(0.0, min(1.0, mood.confidence))
        s.valence += _alpha(dt, self._config.smoothing_s) * confidence * (mood.valence - s.valence)
        # A sudden change must hold for two windows to lead (a rise: the lower of the two; a
        # fall: the higher): one odd window moves nothing, a new level moves at once (a rise)
        # or slowly (a fall).
        last = s.last_arousal if s.last_arousal is not None else mood.arousal
        rising = min(mood.arousal, last)
        falling = max(mood.arousal, last)
        threshold = self._config.cue_threshold
        sudden = False
        if rising > s.arousal:
            target = rising
            sudden = rising - s.arousal >= threshold
            tau = self._config.attack_s if sudden else self._config.smoothing_s
        elif falling < s.arousal:
            target = falling
            sudden = s.arousal - falling >= threshold
            tau = self._config.release_s if sudden else self._config.smoothing_s
        else:
            # The two windows straddle the level (a wobble, a flicker): it stays.
            target, tau = s.arousal, self._config.smoothing_s
        jump = target - s.arousal
        kind: Literal["rise", "fall"] = "rise" if jump > 0 else "fall"
        if sudden and confidence >= 0.5 and s.moving != kind:
            cues.append(Cue(time=mood.t_end, kind=kind, strength=round(min(1.0, abs(jump)), 3)))
        s.moving = kind if sudden else None
        s.arousal += _alpha(dt, tau) * confidence * (target - s.arousal)
        s.last_arousal = mood.arousal
        s.time = max(s.time, mood.t_end)
        return cues

    def _observe_scene(self, mood: Mood) -> list[Cue]:
        name = mood.scene
        if name is None or name == self._preset.name:
            self._candidate = None
            return []
        if self._candidate is None or self._candidate[0] != name:
            self._candidate = (name, mood.t_start)
        sure = mood.scene_probs.get(name, 0.0) >= self._config.scene_confidence
        hold = self._config.scene_attack_s if sure else self._config.scene_hold_s
        if mood.t_end - self._candidate[1] < hold:
            return []
        try:
            preset = self.presets.get(name)
        except ConfigError as exc:
            if name not in self._unknown_scenes:
                self._unknown_scenes.add(name)
                log.warning(
                    "scene %r has no usable preset; keeping %s (%s)", name, self._preset.name, exc
                )
            return []
        self._candidate = None
        self.set_preset(preset)
        strength = round(mood.scene_probs.get(name, 0.5), 3)
        return [Cue(time=mood.t_end, kind="scene", strength=strength, scene=name)]

    @property
    def mood(self) -> tuple[float, float]:
        """The smoothed (valence, arousal); neutral before the first window."""
        if self._smoothed is None:
            return 0.0, 0.0
        return self._smoothed.valence, self._smoothed.arousal

    def plan_for_bar(self, bar: int, *, at: float | None = None) -> Plan:
        """Decide the plan that governs ``bar`` from the moods observed so far (and the
        overrides in force). ``at`` is the audio time of the decision: a mood held until then
        is released first."""
        if self._hold_until is not None and at is not None and at >= self._hold_until:
            self.release_mood()
        valence, arousal = self._held if self._held is not None else self.mood
        level = _clip01((arousal + AROUSAL_SPAN) / (2 * AROUSAL_SPAN))
        h = self._config.hysteresis
        preset = self._reread_preset()

        bpm_range = preset.bpm_max - preset.bpm_min
        bpm_target = preset.bpm_min + level * bpm_range
        if self._bpm is None or abs(bpm_target - self._bpm) > h * bpm_range:
            self._bpm = float(round(bpm_target))
        self._bpm = min(max(self._bpm, preset.bpm_min), preset.bpm_max)

        layer_range = preset.layers_max - preset.layers_min
        layer_level = preset.layers_min + level * layer_range
        if self._layers is None or abs(layer_level - self._layers) > 0.5 + h * layer_range / 2:
            self._layers = round(layer_level)
        self._layers = min(max(self._layers, preset.layers_min), preset.layers_max)

        if preset.mode in ("major", "minor"):
            self._mode = "major" if preset.mode == "major" else "minor"
        elif self._mode is None:
            self._mode = "major" if valence >= 0 else "minor"
        elif valence > h:
            self._mode = "major"
        elif valence < -h:
            self._mode = "minor"

        density = _clip01(level + 0.15 * _clip(valence))
        tonic = preset.major_tonic if self._mode == "major" else preset.minor_tonic
        mode = self._mode
        if self._fixed_key is not None:
            tonic, mode = self._fixed_key
        return Plan(
            bar=bar,
            bpm=self._tempo(),
            layers=self._layers if self._fixed_layers is None else self._fixed_layers,
            tonic=tonic,
            mode=mode,
            density=density,
            valence=valence,
            arousal=arousal,
            preset=preset,
            beats_per_bar=self._config.beats_per_bar,
        )

    def _tempo(self) -> float:
        if self._followed_bpm is not None:
            return self._followed_bpm
        assert self._bpm is not None
        return self._bpm if self._fixed_bpm is None else float(self._fixed_bpm)

    def _reread_preset(self) -> ScenePreset:
        """The preset in force as its file reads now, so an edit made while the music plays
        reaches the next plan (and through the plan the composer, the engine and MIDI at the
        same bar). A stat per bar; the file is parsed only when it changed. A preset without a
        file (built in code) stays as it is; a file that no longer loads keeps the last good
        preset, with one warning per distinct problem."""
        current = self.preset
        try:
            fresh = self.presets.get(current.name)
        except ConfigError as exc:
            problem = str(exc)
            if not problem.startswith("no scene preset named") and problem != self._bad_file:
                self._bad_file = problem
                log.warning("keeping the last good %s preset: %s", current.name, problem)
            return current
        self._bad_file = None
        if fresh != current:
            if self._forced is not None:
                self._forced = fresh
            else:
                self._preset = fresh
        return fresh


def _alpha(dt: float, tau: float) -> float:
    """How far an exponential filter of time constant ``tau`` moves in ``dt`` (0 tau: all)."""
    return 1.0 if tau <= 0 else 1.0 - math.exp(-dt / tau)


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, x))
