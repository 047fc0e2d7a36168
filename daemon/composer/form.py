"""Imposed musical form: a structure string such as ``"AABA"`` or ``"A B A' C A''"``.

Each letter is a section of ``section_bars`` bars. The first time a letter appears in a pass
through the form, its bars are written afresh; a later plain letter repeats them; a letter with
primes varies them (``'`` keeps the first half and re-pitches the rest on the same rhythm, ``''``
keeps only the opening bar and frees the closing one). When the form ends it starts again with new
material, so a long session never loops one tune.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"([A-Za-z])('*)")


@dataclass(frozen=True, slots=True)
class Section:
    """One letter of the form: its name (upper case) and how many primes it carries."""

    letter: str
    variation: int

    @property
    def label(self) -> str:
        """The section as written in the structure: ``"A"``, ``"A'"``, ``"A''"``."""
        return self.letter + "'" * self.variation


@dataclass(frozen=True, slots=True)
class BarRole:
    """What the form asks of one bar.

    section : the section the bar belongs to.
    bar_in_section : 0 .. section_bars - 1.
    bar_in_form : the bar's place in the current pass through the form (0 at its start).
    source_bar : the absolute bar number of the same bar in the letter's first appearance in
        this pass, or None when the bar is new material.
    """

    section: Section
    bar_in_section: int
    bar_in_form: int
    source_bar: int | None


def parse_structure(text: str) -> tuple[Section, ...]:
    """The sections of a structure string; spaces are optional, letters are case-insensitive.

    Raises
    ------
    ValueError : anything but letters, primes and spaces, or a prime with no letter before it.
    """
    compact = "".join(text.split())
    sections: list[Section] = []
    position = 0
    while position < len(compact):
        match = _TOKEN.match(compact, position)
        if match is None:
            raise ValueError(
                f"structure {text!r}: unexpected {compact[position]!r}; use letters with optional "
                'primes, e.g. "AABA" or "A B A\' C A\'\'"'
            )
        sections.append(Section(match.group(1).upper(), len(match.group(2))))
        position = match.end()
    return tuple(sections)


class Form:
    """Maps bar numbers onto a repeating structure.

    Parameters
    ----------
    sections : from :func:`parse_structure`; empty means free form (every bar is new).
    section_bars : bars per section, >= 1.
    """

    def __init__(self, *, sections: tuple[Section, ...], section_bars: int) -> None:
        if section_bars < 1:
            raise ValueError(f"section_bars must be >= 1, got {section_bars}")
        self.sections = sections
        self.section_bars = section_bars
        # Index of each letter's first section in the form.
        self._first: dict[str, int] = {}
        for index, section in enumerate(sections):
            self._first.setdefault(section.letter, index)

    @property
    def free(self) -> bool:
        """True when no structure is imposed."""
        return not self.sections

    @property
    def bars(self) -> int:
        """Bars in one pass through the form (0 when free)."""
        return len(self.sections) * self.section_bars

    def role(self, bar: int) -> BarRole | None:
        """The role of absolute bar ``bar`` (>= 0), or None in free form."""
        if self.free:
            return None
        bar_in_form = bar % self.bars
        index, bar_in_section = divmod(bar_in_form, self.section_bars)
        section = self.sections[index]
        first = self._first[section.letter]
        source = None
        if first != index:
            source = bar - (index - first) * self.section_bars
        return BarRole(
            section=section,
            bar_in_section=bar_in_section,
            bar_in_form=bar_in_form,
            source_bar=source,
        )
