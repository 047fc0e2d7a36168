"""``moodscore bench``: the speed figures, measured on this machine, as JSON.

- :mod:`daemon.bench.core`: :func:`run_bench` and the main figures (analysis, face, scene,
  composer, melody, engine, live ``manual`` session, render); its docstring lists every figure;
- :mod:`daemon.bench.mqtt`: beat lead and command round trip through a real mosquitto;
- :mod:`daemon.bench.web`: the visual renderer's speed and the WebRTC audio latency;
- :mod:`daemon.bench.latency`: the glass-to-glass latency measurement (a click engine, the real
  web server, headless Chromium);
- :mod:`daemon.bench.library`: the music library's scan speed and recommendation quality.

Speed and memory figures live here, not in timed unit tests.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config import Config

# What ``moodscore bench --skip`` names. Each measures one part (``scene``: the picture with its
# audio and text cues; ``engine``: the realtime factor and the core share; ``web``: the visuals
# and the WebRTC latency; ``reaction``: the rendered steps and the live stinger). Here, not in
# :mod:`daemon.bench.core`, so that the command line can name them without importing numpy.
SECTIONS = (
    "analysis", "face", "scene", "composer", "melody", "engine", "live_manual", "mqtt", "web",
    "render", "library", "reaction", "busy_machine",
)  # fmt: skip


def check_sections(names: Collection[str]) -> None:
    """Raise ValueError naming any of ``names`` that is not one of :data:`SECTIONS`."""
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ValueError(
            f"no section {', '.join(map(repr, unknown))}; the sections: {', '.join(SECTIONS)}"
        )


def run_bench(config: Config, *, quick: bool = False, skip: Collection[str] = ()) -> dict[str, Any]:
    """:func:`daemon.bench.core.run_bench`, imported when called; ``skip`` checked first."""
    from daemon.bench.core import run_bench as measure

    check_sections(skip)
    return measure(config, quick=quick, skip=skip)


__all__ = ["SECTIONS", "check_sections", "run_bench"]
