"""The timeline JSON of ``analyze`` and ``render --timeline`` (a public contract), and its plot.

Schema (version 1)::

    {
      "format": "moodscore-timeline", "version": 1,
      "source": "video file clip.mp4", "mode": "frame", "window_s": 0.5,
      "duration": 60.0, "seed": 0,                  # seed only for renders
      "windows": [
        {"t_start": 0.0, "t_end": 0.5, "valence": 0.12, "arousal": -0.4, "confidence": 1.0,
         "scene": null,
         "bpm": 92.0, "layers": 2, "key": "D", "mode": "major"},   # conductor fields: renders only
        {"t_start": 0.5, "t_end": 1.0, ..., "faces": 1,            # face mode only
         "expression": {"angry": 0.01, "disgust": 0.0, "fear": 0.02, "happy": 0.9, "sad": 0.01,
                        "surprise": 0.02, "neutral": 0.04}},       # absent when no face in view
        ...
      ],
      "bars": [{"bar": 0, "audio_time": 0.0, "bpm": 92.0, "layers": 2, "key": "D", "mode": "major"}]
    }

Times are seconds of source time. For each window the conductor fields are the plan in force at
the window's midpoint (changes land on bar lines, so a window may straddle two plans).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.messages import PITCH_CLASS_NAMES, BarStarted, Mood, Plan

FORMAT = "moodscore-timeline"
VERSION = 1


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {
        "bpm": plan.bpm,
        "layers": plan.layers,
        "key": PITCH_CLASS_NAMES[plan.tonic],
        "mode": plan.mode,
    }


def build_timeline(
    moods: Sequence[Mood],
    *,
    source: str,
    mode: str = "frame",
    window_s: float,
    duration: float | None,
    bars: Sequence[BarStarted] = (),
    source_offset: float = 0.0,
    seed: int | None = None,
) -> dict[str, Any]:
    """The timeline document for ``moods`` and, for renders, the bars that were played.

    ``source_offset`` is the source time at audio time 0 (0 for renders).
    """
    bar_times = [bar.audio_time + source_offset for bar in bars]
    windows: list[dict[str, Any]] = []
    for mood in moods:
        row: dict[str, Any] = {
            "t_start": round(mood.t_start, 4),
            "t_end": round(mood.t_end, 4),
            "valence": round(mood.valence, 4),
            "arousal": round(mood.arousal, 4),
            "confidence": round(mood.confidence, 4),
            "scene": mood.scene,
        }
        if mood.scene_probs:
            row["scene_probs"] = {k: round(v, 4) for k, v in mood.scene_probs.items()}
        if "scene_confidence" in mood.features:
            # Game mode: how sure the scene model was, and the picture cues that spoke.
            row["scene_confidence"] = round(mood.features["scene_confidence"], 4)
            row["cues"] = {
                k.removeprefix("cue."): round(v, 3)
                for k, v in mood.features.items()
                if k.startswith("cue.")
            }
            # The game's own audio: the audio cues that spoke, the classes they moved (evidence
            # 0-1), and whether they were dropped because the capture heard moodscore's music.
            heard = {
                k.removeprefix("audio."): round(v, 3)
                for k, v in mood.features.items()
                if k.startswith("audio.")
            }
            moved = {
                k.removeprefix("audio_to."): round(v, 3)
                for k, v in mood.features.items()
                if k.startswith("audio_to.")
            }
            if heard or moved:
                row["audio_cues"] = heard
                row["audio_moved"] = moved
            if mood.features.get("audio_feedback"):
                row["audio_feedback"] = True
            # On-screen text: the frame's text cues when they spoke, the classes they moved.
            seen = {
                k.removeprefix("text."): round(v, 4)
                for k, v in mood.features.items()
                if k.startswith("text.")
            }
            raised = {
                k.removeprefix("text_to."): round(v, 3)
                for k, v in mood.features.items()
                if k.startswith("text_to.")
            }
            if seen or raised:
                row["text_cues"] = seen
                row["text_moved"] = raised
        if mood.faces is not None:
            row["faces"] = mood.faces
        if mood.expression:
            row["expression"] = {k: round(v, 4) for k, v in mood.expression.items()}
        if bars:
            middle = (mood.t_start + mood.t_end) / 2
            index = max(0, bisect.bisect_right(bar_times, middle) - 1)
            row.update(_plan_fields(bars[index].plan))
        windows.append(row)
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "source": source,
        "mode": mode,
        "window_s": window_s,
        "duration": None if duration is None else round(duration, 4),
    }
    if seed is not None:
        document["seed"] = seed
    document["windows"] = windows
    if bars:
        document["bars"] = [
            {"bar": bar.bar, "audio_time": round(bar.audio_time, 4), **_plan_fields(bar.plan)}
            for bar in bars
        ]
    return document


def write_timeline(document: dict[str, Any], path: Path, *, plot: bool = True) -> Path | None:
    """Write the JSON and, when ``plot``, a PNG of valence/arousal (and bpm, layers) beside it.

    Returns the PNG's path when one was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    if not plot or not document["windows"]:
        return None
    png = path.with_suffix(".png")
    plot_timeline(document, png)
    return png


def plot_timeline(document: dict[str, Any], png: Path) -> None:
    """Valence and arousal over time; with a render's bars, bpm and layer count underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    windows = document["windows"]
    mid = [(w["t_start"] + w["t_end"]) / 2 for w in windows]
    has_plan = "bpm" in windows[0]
    rows = 2 if has_plan else 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 3.2 * rows), sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot(mid, [w["valence"] for w in windows], label="valence", color="tab:green")
    ax.plot(mid, [w["arousal"] for w in windows], label="arousal", color="tab:red")
    ax.axhline(0, color="grey", linewidth=0.5)
    # Face mode: shade the windows in which nobody was in view (the mood drifts to neutral).
    no_face = [w for w in windows if w.get("faces") == 0]
    for index, w in enumerate(no_face):
        label = "no face" if index == 0 else None
        ax.axvspan(w["t_start"], w["t_end"], color="0.9", linewidth=0, label=label)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("mood")
    ax.legend(loc="upper right")
    ax.set_title(f"moodscore timeline: {document['source']}")
    if has_plan:
        ax2 = axes[1][0]
        ax2.step(mid, [w["bpm"] for w in windows], where="mid", color="tab:blue", label="bpm")
        ax2.set_ylabel("bpm")
        twin = ax2.twinx()
        twin.step(mid, [w["layers"] for w in windows], where="mid", color="tab:orange")
        twin.set_ylabel("layers", color="tab:orange")
        twin.set_ylim(0.5, 5.5)
    axes[-1][0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
