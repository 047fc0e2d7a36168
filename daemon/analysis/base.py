"""The window-model interface: what an analysis mode (frame, face, and later game) implements.

A model sees every frame once, in order, through :meth:`WindowModel.prepare` (the per-frame work
that cannot wait: motion against the previous frame, finding faces), and turns the prepared
frames of one window into one :class:`~daemon.messages.Mood` with :meth:`WindowModel.infer`,
which is where the batched inference happens: one call per window, so a network sees all the
window's faces in one batch. Both run in a worker thread, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar

from daemon.messages import Frame, Mood

Prepared = TypeVar("Prepared")


class WindowModel(ABC, Generic[Prepared]):
    """One analysis mode. Subclasses implement :meth:`prepare` and :meth:`infer`.

    Attributes
    ----------
    name : the mode's name as ``analysis.mode`` and ``--mode`` spell it.
    """

    name: str

    def reset(self) -> None:
        """Forget everything about the previous stream (a new run starts)."""

    def cut(self, time: float) -> None:
        """The picture cut at ``time`` (a cue found in the frames): a model that reads a
        stretch of frames may forget those before it, so the new picture is read on its own."""

    @abstractmethod
    def prepare(self, frame: Frame) -> Prepared:
        """The per-frame work, called for every frame in order; keep what ``infer`` needs."""

    @abstractmethod
    def infer(self, prepared: Sequence[Prepared], t_start: float, t_end: float) -> Mood:
        """The mood of the window ``[t_start, t_end)`` from its prepared frames (never empty)."""

    def close(self) -> None:
        """Release native resources (detectors, devices); the model is not used afterwards."""
