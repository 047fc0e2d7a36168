"""The lead from the melody LSTM, bar by bar: conditioning from the plan, form and motif echoes,
and a guard against stuck loops.

Per bar the plan becomes a :class:`models.melody_sampler.BarSpec`: its key, mode and density (mapped
onto the notes-per-bar labels the model learnt), the configured register, the scale mask when
``composer.scale_constraint`` is on, and the bar's place in its 8-bar phrase. The sampler's hidden
state runs on across bars and mood changes.

Repetition: with a ``composer.structure`` the form decides which bars repeat or vary an earlier
section; without one, bar 2 of a 4-bar phrase may echo bar 0 and bars 4-5 of an 8-bar period may
echo bars 0-1, their endings rewritten. A repeated note that no longer fits (a new key, mode or
register) ends the copy there and the model carries on.

Stuck loops: a bar the model writes that equals both the bar P and the bar 2P before it (P = 1..4)
is written again (up to a few tries), so no 4-bar window plays three times in a row unless the form
asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.composer.form import BarRole, Form, parse_structure
from daemon.composer.harmony import SoundingNote, scale_pitch_classes
from daemon.config import ComposerConfig
from daemon.errors import ConfigError
from daemon.messages import Mode, Plan
from models.melody_codec import PHRASE_BARS, Token, midi_pitch, pitch_id
from models.melody_net import MelodyLSTM
from models.melody_sampler import BarSpec, MelodySampler
from models.ngram import DURATION_SIXTEENTHS

MAX_LEAP = 12  # semitones: a singable line never jumps more than an octave
REPEAT_PROBABILITY = 0.5  # free form: how often an echo bar does echo
ECHO_DENSITY_TOLERANCE = 0.2  # free form: no echo across a bigger change of density
LOOP_PERIODS = (1, 2, 3, 4)
LOOP_RETRIES = 4
MIN_HISTORY_BARS = 16


@dataclass(frozen=True, slots=True)
class _Bar:
    """A written bar, as later bars need it."""

    tokens: tuple[Token, ...]
    tonic: int
    mode: Mode
    beats_per_bar: int
    density: float
    notes: tuple[tuple[int | None, int], ...]  # (MIDI pitch or None, 16ths): what is heard


class LstmMelodyWriter:
    """Writes the lead of each bar with a :class:`MelodySampler`.

    Parameters
    ----------
    model : the trained melody LSTM.
    config : the ``[composer]`` section (temperature, top_p, register, scale constraint, form).
    rng : the melody's random generator (the composer seeds it).

    Raises
    ------
    ConfigError : a structure string or register that cannot be used.
    """

    def __init__(
        self, *, model: MelodyLSTM, config: ComposerConfig, rng: np.random.Generator
    ) -> None:
        low, high = config.register
        if high - low < 12:
            raise ConfigError(
                f"composer.register = [{low}, {high}] must span at least an octave (low < high)"
            )
        try:
            sections = parse_structure(config.structure)
        except ValueError as exc:
            raise ConfigError(f"composer.structure: {exc}") from exc
        self.model = model
        self.config = config
        self.form = Form(sections=sections, section_bars=config.section_bars)
        self._rng = rng
        self._sampler = MelodySampler(
            model, rng=rng, temperature=config.temperature, top_p=config.top_p
        )
        self._history: dict[int, _Bar] = {}
        self._keep = max(MIN_HISTORY_BARS, self.form.bars + 1)

    @property
    def sampler(self) -> MelodySampler:
        """The sampler the melody streams from; feeding it notes primes what comes next."""
        return self._sampler

    def section(self, bar: int) -> str | None:
        """The label of the form's section ``bar`` belongs to (``"A'"``); None in free form."""
        role = self.form.role(bar)
        return None if role is None else role.section.label

    def write(self, plan: Plan) -> tuple[SoundingNote, ...]:
        """The lead of ``plan.bar``: notes and rests filling the bar exactly, offsets in beats."""
        role = self.form.role(plan.bar)
        phrase_bar = (role.bar_in_form if role is not None else plan.bar) % PHRASE_BARS
        spec = BarSpec(
            tonic=plan.tonic,
            mode=plan.mode,
            density=self.model.config.density_for(plan.density),
            register=self.config.register,
            beats_per_bar=plan.beats_per_bar,
            phrase_bar=phrase_bar,
            scale=scale_pitch_classes(plan.tonic, plan.mode)
            if self.config.scale_constraint
            else None,
            max_leap=MAX_LEAP,
        )
        prefix, rhythm, imposed = self._repeat(plan, spec, role)
        before = self._sampler.snapshot()
        tokens = self._sampler.bar(spec, prefix=prefix, rhythm=rhythm)
        if not imposed:
            for _ in range(LOOP_RETRIES):
                if not self._loops(plan.bar, _heard(tokens, plan.tonic)):
                    break
                # Take the bar back and write it afresh, without the copied material.
                self._sampler.restore(before)
                tokens = self._sampler.bar(spec)
        self._remember(plan, tokens)
        melody = []
        offset = 0
        for token in tokens:
            length = DURATION_SIXTEENTHS[token.duration]
            melody.append(SoundingNote(midi_pitch(token.pitch, plan.tonic), offset / 4, length / 4))
            offset += length
        return tuple(melody)

    # -- repetition -------------------------------------------------------------------------

    def _repeat(
        self, plan: Plan, spec: BarSpec, role: BarRole | None
    ) -> tuple[list[Token], list[int] | None, bool]:
        """(notes to copy, rhythm to keep, whether the form imposes an exact repeat)."""
        if role is not None:
            if role.source_bar is None:
                return [], None, False
            source = self._history.get(role.source_bar)
            if source is None or source.beats_per_bar != plan.beats_per_bar:
                return [], None, False
            copied = self._fitting(source, spec)
            rhythm = [t.duration for t in source.tokens]
            variation = role.section.variation
            bars = self.form.section_bars
            if variation == 0:
                mode = "copy"
            elif variation == 1:
                mode = "copy" if role.bar_in_section < (bars + 1) // 2 else "rhythm"
            elif role.bar_in_section == 0:
                mode = "copy"
            else:
                mode = "free" if role.bar_in_section == bars - 1 and bars > 1 else "rhythm"
            if mode == "copy":
                exact = len(copied) == len(source.tokens)
                return copied, rhythm[len(copied) :], exact
            if mode == "rhythm":
                return [], rhythm, False
            return [], None, False
        return self._echo(plan, spec), None, False

    def _echo(self, plan: Plan, spec: BarSpec) -> list[Token]:
        """Free form: notes copied from the bar 2 or 4 back to open this bar, or none."""
        phrase = plan.bar % 8
        back = 2 if phrase in (2, 6) else 4 if phrase in (4, 5) else 0
        if back == 0:
            return []
        # Draw unconditionally so whether a source bar exists never shifts the stream.
        roll = float(self._rng.random())
        beats_kept = int(self._rng.integers(0, 3))
        source = self._history.get(plan.bar - back)
        if (
            roll >= REPEAT_PROBABILITY
            or source is None
            or source.tonic != plan.tonic
            or source.mode != plan.mode
            or source.beats_per_bar != plan.beats_per_bar
            or abs(source.density - plan.density) > ECHO_DENSITY_TOLERANCE
        ):
            return []
        cut = 4 * (plan.beats_per_bar - beats_kept)  # keep notes ending by this 16th
        copied: list[Token] = []
        end = 0
        for token in self._fitting(source, spec):
            end += DURATION_SIXTEENTHS[token.duration]
            if end > cut:
                break
            copied.append(token)
        return copied

    def _fitting(self, source: _Bar, spec: BarSpec) -> list[Token]:
        """The source bar's notes in this bar's key, up to the first that does not fit here."""
        low, high = spec.register
        previous = self._sampler.last_midi
        # In a new key the motif moves by the smaller interval between the tonics.
        shift = (spec.tonic - source.tonic + 6) % 12 - 6
        out: list[Token] = []
        for token in source.tokens:
            midi = midi_pitch(token.pitch, source.tonic)
            if midi is not None:
                midi += shift
                if not low <= midi <= high:
                    break
                if spec.scale is not None and midi % 12 not in spec.scale:
                    break
                if previous is not None and abs(midi - previous) > MAX_LEAP:
                    break
                previous = midi
            out.append(Token(pitch_id(midi, spec.tonic), token.duration))
        return out

    # -- bookkeeping ------------------------------------------------------------------------

    def _loops(self, bar: int, heard: tuple[tuple[int | None, int], ...]) -> bool:
        for period in LOOP_PERIODS:
            one = self._history.get(bar - period)
            two = self._history.get(bar - 2 * period)
            if one is not None and two is not None and one.notes == heard == two.notes:
                return True
        return False

    def _remember(self, plan: Plan, tokens: list[Token]) -> None:
        self._history[plan.bar] = _Bar(
            tokens=tuple(tokens),
            tonic=plan.tonic,
            mode=plan.mode,
            beats_per_bar=plan.beats_per_bar,
            density=plan.density,
            notes=_heard(tokens, plan.tonic),
        )
        for old in [b for b in self._history if b <= plan.bar - self._keep]:
            del self._history[old]


def _heard(tokens: list[Token], tonic: int) -> tuple[tuple[int | None, int], ...]:
    return tuple((midi_pitch(t.pitch, tonic), DURATION_SIXTEENTHS[t.duration]) for t in tokens)
