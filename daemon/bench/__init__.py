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

from daemon.bench.core import run_bench

__all__ = ["run_bench"]
