"""The library mode of ``run``/``render``: play the library track that suits the music's plan
instead of generated music, crossfading on bar lines when the choice changes.

Two halves, one per thread:

- :class:`LibraryDirector` (event loop, no pyo) chooses a track for every planned bar: the
  conductor's plan becomes a target (:func:`daemon.library.recommend.plan_target`: its tempo on
  the default arousal scale and its valence towards its mode) and the closest audio track wins.
  A track plays at least ``library.min_hold_bars`` bars, and is replaced only by one closer by
  ``library.switch_margin`` or more, so the music does not flit between similar tracks.
- :class:`LibraryPlayer` (the engine's thread) plays the chosen files with pyo ``SfPlayer``s,
  from each track's representative segment (which starts on a beat), looping. When the bar a new
  track was chosen for begins, the new track fades in and the old one out over
  ``library.crossfade_s``, both from the downbeat's exact sample. Its output joins the engine's
  output, so recordings, renders and the WebRTC stream carry it; the engine's stop and end fades
  are mirrored, and a transport stop fades it out.

The bar clock follows the playing track: a bar's plan gets the track's tempo (folded into
60-180 bpm), so beats, MQTT, MIDI clock and visuals keep the track's time, and the engine's
tempo ramps are off (``engine.tempo_ramp = 0``) so the grid does not drift from the track. The
band plays no notes. Only audio tracks play; MIDI files in the library are left out (they have
no sound of their own). Files pyo cannot stream (FLAC, MP3, OGG, ...) are decoded once per
session to a WAV in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.clock import MusicClock
from daemon.config import LibraryConfig
from daemon.engine.envelopes import STOP_FADE_S, Points, level_at
from daemon.errors import ConfigError
from daemon.library.index import LibraryIndex, Track, index_path
from daemon.library.recommend import Target, emd, plan_target
from daemon.messages import BarScore, BarStarted, Chord, Plan
from daemon.outputs.base import Output, Stage

log = logging.getLogger("moodscore.library")

# Files pyo's own libsndfile streams; anything else is decoded to WAV first.
STREAMABLE = (".wav", ".aif", ".aiff")
BPM_RANGE = (60.0, 180.0)


def clock_bpm(tempo: float) -> float:
    """A track's tempo folded by octaves into the bar clock's 60-180 bpm."""
    low, high = BPM_RANGE
    bpm = tempo if tempo > 0 else 120.0
    while bpm > high:
        bpm /= 2.0
    while bpm < low:
        bpm *= 2.0
    return round(bpm, 3)


@dataclass(frozen=True, slots=True)
class Choice:
    """The track chosen for a bar: where to start it (seconds into the file) and the tempo the
    bar clock runs at while it plays."""

    track: Track
    start: float
    bpm: float
    distance: float


class LibraryDirector:
    """Chooses the track for each planned bar (see the module docstring).

    Parameters
    ----------
    tracks : the audio tracks to choose from (at least one).
    min_hold_bars : bars a track plays at least before it may be replaced.
    switch_margin : how much closer (EMD) a challenger must be than the playing track.
    """

    def __init__(
        self, *, tracks: Sequence[Track], min_hold_bars: int, switch_margin: float
    ) -> None:
        if not tracks:
            raise ConfigError("the library has no audio tracks to play")
        self.tracks = list(tracks)
        self.min_hold_bars = min_hold_bars
        self.switch_margin = switch_margin
        self._current: Choice | None = None
        self._since_bar = 0

    @property
    def current(self) -> Choice | None:
        """The choice in force (None before the first bar)."""
        return self._current

    def choose(self, plan: Plan) -> Choice:
        """The track for ``plan.bar`` (bars are asked for in order)."""
        target = plan_target(plan)
        distances = self._distances(target)
        best = int(np.argmin(distances))
        current = self._current
        if current is not None:
            index = self.tracks.index(current.track)
            held = plan.bar - self._since_bar
            if held < self.min_hold_bars or distances[best] > distances[index] - self.switch_margin:
                self._current = dataclasses.replace(current, distance=float(distances[index]))
                return self._current
        track = self.tracks[best]
        self._current = Choice(
            track=track,
            start=track.features.segment[0],
            bpm=clock_bpm(track.features.tempo),
            distance=float(distances[best]),
        )
        self._since_bar = plan.bar
        return self._current

    def _distances(self, target: Target) -> np.ndarray:
        return np.array([emd(target.points, t.features.windows) for t in self.tracks])


@dataclass
class _Voice:
    """One playing file: its pyo objects and its gain envelope's breakpoints."""

    key: tuple[str, float]
    player: Any
    trig: Any
    env: Any
    out: Any
    points: Points
    origin: int  # sample the envelope's trigger fired at
    ends_at: int | None = None  # sample after which it is silent (faded out)


class LibraryPlayer:
    """Plays library files through the engine's pyo server (see the module docstring).

    Parameters
    ----------
    engine : the session's :class:`~daemon.engine.Engine` (not started yet): the player's pyo
        objects join its server, and it follows its end time, stop and transport.
    crossfade_s : seconds of each crossfade, from the downbeat.
    gain : output level of the tracks (the engine's master gain).
    """

    def __init__(self, *, engine: Any, crossfade_s: float, gain: float) -> None:
        self._engine = engine
        self.crossfade_s = max(crossfade_s, 0.001)
        self.gain = gain
        self._lock = threading.Lock()
        self._requests: dict[int, tuple[Path, float]] = {}  # bar -> (file, start seconds)
        self._voices: list[_Voice] = []
        self._master: Any = None
        self._faded = False
        self._playing = True
        engine.add_bar_listener(self._on_bar)
        engine.add_audio_listener(self._tick)

    # -- any thread ------------------------------------------------------------------------

    def schedule(self, bar: int, path: Path, start: float) -> None:
        """Play ``path`` from ``start`` seconds once bar ``bar`` begins (or at the next bar
        line, if it already has)."""
        with self._lock:
            self._requests[bar] = (path, start)

    # -- the engine's thread ---------------------------------------------------------------

    def _on_bar(self, event: BarStarted) -> None:
        with self._lock:
            due = [bar for bar in self._requests if bar <= event.bar]
            if not due:
                return
            path, start = self._requests[max(due)]
            for bar in due:
                del self._requests[bar]
        key = (str(path), start)
        if self._voices and self._voices[-1].key == key and self._voices[-1].ends_at is None:
            return
        self._start(path, start, key, event)

    def _start(self, path: Path, start: float, key: tuple[str, float], event: BarStarted) -> None:
        import pyo

        sr = self._engine.sample_rate
        downbeat = round(event.audio_time * sr)
        block_start = self._engine_block_start(downbeat)
        lead = max(downbeat - block_start, 0) / sr
        if self._master is None:
            self._master = pyo.SigTo(self.gain, time=STOP_FADE_S, init=self.gain)
        first = not self._voices
        # The file starts with the block; begin it ``lead`` earlier so its segment start meets
        # the downbeat exactly (and the fade-in starts there).
        offset = max(round((start - lead) * sr), 0) / sr  # whole samples: no interpolation
        player = pyo.SfPlayer(str(path), speed=1.0, loop=True, offset=offset)
        # Mix spreads streams over its voices in turn: a mono file is given twice, for both.
        stereo = player if len(player) >= 2 else [player, player]
        trig = pyo.Trig().stop()
        fade = 0.001 if first else self.crossfade_s
        points: Points = [(0.0, 0.0)]
        if lead > 1e-4:
            points.append((lead, 0.0))
        points.append((points[-1][0] + fade, 1.0))
        env = pyo.TrigLinseg(trig, points)
        # Straight to the output, created after everything it reads (pyo computes objects in
        # the order they were made; reading a younger one would lag a block). The fades are
        # linear and complementary, so a crossfade never peaks above the louder track.
        out = pyo.Mix(stereo, voices=2, mul=env * self._master).out()
        trig.play()
        for voice in self._voices:
            if voice.ends_at is None:
                self._fade_voice(voice, block_start, lead, fade)
        self._voices.append(_Voice(key, player, trig, env, out, points, block_start))

    def _fade_voice(self, voice: _Voice, block_start: int, lead: float, seconds: float) -> None:
        sr = self._engine.sample_rate
        level = level_at(voice.points, (block_start - voice.origin) / sr)
        points: Points = [(0.0, level)]
        if lead > 1e-4:
            points.append((lead, level))
        points.append((points[-1][0] + seconds, 0.0))
        voice.env.setList(points)
        voice.trig.play()
        voice.points = points
        voice.origin = block_start
        voice.ends_at = block_start + round(points[-1][0] * sr) + self._engine.buffer_size

    def _engine_block_start(self, sample: int) -> int:
        size = self._engine.buffer_size
        return sample - sample % size

    def _tick(self, block: np.ndarray, audio_time: float) -> None:
        """Per block, after it was computed: fades, transport, and dropping silent voices."""
        if self._master is None:
            return
        sr = self._engine.sample_rate
        position = round(audio_time * sr) + len(block)  # the next block's first sample
        # The engine's stop fade and end time, mirrored.
        end = self._engine.end_time
        if not self._faded:
            if self._engine.stopping:
                self._faded = True
                self._master.time = STOP_FADE_S
                self._master.value = 0.0
            elif end is not None:
                # Like the band: reach silence exactly at the end sample.
                left = (round(end * sr) - position) / sr
                if left <= STOP_FADE_S + self._engine.buffer_size / sr:
                    self._faded = True
                    self._master.time = max(left, 0.001)
                    self._master.value = 0.0
        playing = bool(self._engine.playing)
        if playing != self._playing and not self._faded:
            self._playing = playing
            self._master.time = 0.25
            self._master.value = self.gain if playing else 0.0
        silent = [v for v in self._voices if v.ends_at is not None and v.ends_at <= position]
        if silent:
            self._voices = [v for v in self._voices if v not in silent]
            for voice in silent:
                voice.out.stop()
                voice.player.stop()

    def release(self) -> None:
        """Drop the pyo objects (after the engine stopped)."""
        self._voices = []
        self._master = None


class LibraryMode(Output):
    """The library mode of a session: a director, a player and the decoded-file scratch folder.

    An output of the session: the planner asks :meth:`bar` for each bar's score, the player
    follows the engine; closed after pyo stopped (the player's pyo objects, the decoded files).

    Parameters
    ----------
    config : the ``[library]`` section (index, folder, crossfade, hold, margin).
    engine : the session's engine (not started yet).
    gain : the tracks' output level.

    Raises
    ------
    ConfigError : the index holds no audio track (under ``library.dir`` when set).
    """

    stage = Stage.RECORDING
    name = "library"

    def __init__(self, *, config: LibraryConfig, engine: Any, gain: float) -> None:
        path = index_path(config.index)
        folder = Path(config.dir).expanduser() if config.dir else None
        if not path.is_file():
            raise ConfigError(
                f"no library index at {path}; run `moodscore library scan DIR` first, or pass "
                "--library DIR"
            )
        with LibraryIndex(path) as index:
            tracks = [t for t in index.tracks(under=folder) if t.playable]
        if not tracks:
            where = f" under {folder}" if folder else ""
            raise ConfigError(
                f"the library index {path} has no audio tracks{where}; run `moodscore library "
                "scan DIR` on a folder of WAV, FLAC, MP3 or OGG files"
            )
        self.director = LibraryDirector(
            tracks=tracks, min_hold_bars=config.min_hold_bars, switch_margin=config.switch_margin
        )
        self._engine = engine
        self._crossfade_s = config.crossfade_s
        self._gain = gain
        self.player: LibraryPlayer | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="moodscore-library-"))
        self._decoded: dict[Path, Path] = {}
        self._sample_rate = engine.config.sample_rate
        log.info("library mode: %d audio track(s) from %s", len(tracks), path)

    def bar(self, plan: Plan) -> BarScore:
        """Choose the track for ``plan.bar``, have it ready and scheduled, and return the bar's
        score: the plan at the track's tempo, no notes (the band is silent; the layer count
        stays, for the visuals and MQTT). Blocking (may decode a file): run it
        off the event loop."""
        previous = self.director.current
        choice = self.director.choose(plan)
        if previous is None or previous.track is not choice.track:
            log.info(
                "library: bar %d plays %s (distance %.2f to %s)",
                plan.bar,
                choice.track.path.name,
                choice.distance,
                plan_target(plan).label,
            )
            assert self.player is not None, "attach the library mode to the engine first"
            self.player.schedule(plan.bar, self._playable(choice.track.path), choice.start)
        played = dataclasses.replace(plan, bpm=choice.bpm)
        chord = Chord(root=plan.tonic, quality="maj" if plan.mode == "major" else "min", pitches=())
        return BarScore(bar=plan.bar, plan=played, chord=chord, notes=())

    def _playable(self, path: Path) -> Path:
        if path.suffix.lower() in STREAMABLE:
            return path
        decoded = self._decoded.get(path)
        if decoded is None:
            import soundfile

            from daemon.library.scan import load_audio

            audio = load_audio(path, rate=self._sample_rate, mono=False)
            decoded = self._scratch / f"{len(self._decoded):04d}.wav"
            soundfile.write(str(decoded), audio, self._sample_rate, subtype="FLOAT")
            self._decoded[path] = decoded
        return decoded

    def _attach(self, clock: MusicClock) -> None:
        # The player's pyo objects join the engine's server: it needs the engine itself.
        self.player = LibraryPlayer(
            engine=self._engine, crossfade_s=self._crossfade_s, gain=self._gain
        )

    async def _aclose(self) -> None:
        """After the engine stopped: drop the pyo objects and the decoded files."""
        if self.player is not None:
            self.player.release()
        shutil.rmtree(self._scratch, ignore_errors=True)
