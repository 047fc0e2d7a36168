"""Analysis modes ``game`` (the scene model) and ``auto`` (face when a face is in view, else game).

``game``: per frame (:meth:`GameModel.prepare`), frames are taken at the model's own rate
(8 per second, whatever the source's) and shrunk to 96x72; the rest are skipped at once, so a
60 fps capture costs what an 8 fps one does. Per window (:meth:`GameModel.infer`), the new
frames are embedded by the CNN in one batch and the GRU reads the last second of embeddings
(:class:`models.scene.SceneReader`): scene class probabilities, arousal (intensity) and
valence. The probabilities are smoothed with a time constant ``game.smoothing_s`` so one odd
window does not flip the scene. The conductor switches preset when a scene persists for
``conductor.scene_hold_s``.

Unsure means steady: the most probable scene's smoothed probability is the window's scene
confidence; below ``game.min_scene_prob`` the window names no scene, so the conductor holds the
preset it has and intensity (arousal) alone moves tempo and layers. A window's features carry
``scene_confidence`` and the picture cues that spoke (:mod:`models.scene_cues`, averaged over the
second the model reads, at or above :data:`CUE_SPEAKS`, as ``cue.<name>``); the timeline records
both. With the game's own audio (:attr:`GameModel.audio`, :mod:`daemon.analysis.game_audio`) the
window's probabilities are moved by its audio cues before the smoothing, and the audio cues that
spoke are recorded as ``audio.<name>`` / ``audio_to.<class>``. On-screen text
(:attr:`GameModel.text`, :mod:`daemon.analysis.game_text`, ``game.text``): one frame a second
is measured for text in a worker, and large text blocks raise dialogue and menu the same way
(after the audio, before the smoothing); recorded as ``text.<cue>`` / ``text_to.<class>``.

A cut found in the frames (:mod:`daemon.analysis.cues`: the picture jumped to a new, steady one)
starts the reading afresh: the GRU forgets the frames before the cut and the smoothing starts
from the new picture's probabilities, so the first window after a cut to a fight reads the fight
alone instead of half a second of the calm before it (a game's own score answers a cut on the
next beat; a reading that averages across the cut would answer a second later).

Taught (:mod:`daemon.analysis.teach`): every window is also offered to the game's teacher as an
example (the GRU state and a thumbnail of the last frame); once a head taught for this game has
taken over, it names the scene (any taught preset name, ``boss`` too), smoothed the same way,
and the general model still gives arousal and valence.

``auto``: both models see every frame; a window in which at least half the frames show a face
reads as the face mode does, any other as the game mode does (so a streamer's face cam
overlay, or a webcam pointed at a person, follows the face; a capture of a game without a
face follows the game).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.analysis.base import WindowModel
from daemon.analysis.teach import Teacher
from daemon.analysis.video_file import shrink_to_store
from daemon.config import REPO_ROOT, GameConfig
from daemon.errors import ModelError
from daemon.messages import Frame, Mood
from models.scene_cues import CUE_NAMES

if TYPE_CHECKING:
    from daemon.analysis.game_audio import GameAudioCues
    from daemon.analysis.game_text import GameTextCues

log = logging.getLogger("moodscore.analysis.game")

FACE_SHARE = 0.5  # auto: share of a window's frames that must show a face for the face mode
CUE_SPEAKS = 0.5  # a picture cue at least this high (0-1) is reported as one that spoke


def resolve_model_path(name: str) -> Path:
    """``game.model`` -> a checkpoint path: empty is the shipped default model; a relative path
    is taken from the current directory, then from the repository."""
    from models.scene import DEFAULT_WEIGHTS

    if not name:
        return DEFAULT_WEIGHTS
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        return REPO_ROOT / path
    return path


class GameModel(WindowModel[np.ndarray | None]):
    """Analysis mode ``game`` (see the module docstring).

    Parameters
    ----------
    config : the ``[game]`` section (model path, smoothing, scene threshold).
    device : ``models.device``: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    teacher : what the user taught for this game (:mod:`daemon.analysis.teach`): every window
        is offered to it as an example, and once its head has taken over, the head names the
        scene (the general model still gives arousal and valence). None: the general model.

    Raises
    ------
    ModelError
        The model file is missing or is not a scene model, or ``device`` names a GPU torch
        does not see.
    """

    name = "game"

    def __init__(
        self, *, config: GameConfig, device: str = "auto", teacher: Teacher | None = None
    ) -> None:
        import torch

        from models.device import resolve_device
        from models.scene import SceneReader, load_checkpoint

        self._config = config
        path = resolve_model_path(config.model)
        # A device torch does not have is a ModelError that says what to set; let it through.
        where = resolve_device(device)
        try:
            loaded = load_checkpoint(path, device=where)
        except ModelError as exc:
            raise ModelError(
                f"{exc}; set [game] model to a file written by `moodscore train-scene`, "
                "or leave it empty for the default model"
            ) from exc
        if where.type == "cpu":
            # Two threads: the window's handful of frames gain nothing from more, and the
            # engine and composer share the machine.
            torch.set_num_threads(min(2, torch.get_num_threads()))
        self.path = path
        self.classes = loaded.classes
        self.cue_names: tuple[str, ...] = loaded.net.config.cues
        self._reader = SceneReader(loaded, device=where)
        self._period = 1.0 / loaded.net.config.fps
        self._next_pts: float | None = None
        self._probs: np.ndarray | None = None
        self._time = 0.0
        self._last: Mood | None = None
        self._kept: list[float] = []  # times of the frames kept since the last window
        self._cut_at: float | None = None
        self.audio: GameAudioCues | None = None
        """The game's own audio (:mod:`daemon.analysis.game_audio`), fused per window."""
        self._teacher = teacher
        self._names: tuple[str, ...] = self.classes  # what self._probs are probabilities of
        self.text: GameTextCues | None = open_text_cues() if config.text else None
        """On-screen text (:mod:`daemon.analysis.game_text`), fused per window; in step (files)
        until :func:`pace_game_text` says the source is live."""

    def reset(self) -> None:
        self._reader.reset()
        self._next_pts = None
        self._probs = None
        self._last = None
        self._kept = []
        self._cut_at = None
        if self.text is not None:
            self.text.reset()

    def cut(self, time: float) -> None:
        self._cut_at = time

    def prepare(self, frame: Frame) -> np.ndarray | None:
        """The frame shrunk to 96x72 when it is due at the model's rate, else None (skipped)."""
        pts = frame.pts
        due = self._next_pts
        if due is not None and pts < due - self._period - 1e-6:
            due = None  # time went backwards: a looped file or a new stream
        if due is not None and pts + 1e-6 < due:
            return None
        # Ticks stay on the model's grid; after a gap longer than a tick the grid starts afresh.
        following = pts + self._period if due is None else due + self._period
        self._next_pts = following if following > pts else pts + self._period
        self._kept.append(pts)
        text = self.text
        if text is not None and text.due(pts):
            text.offer(frame.image, pts)
        return shrink_to_store(frame.image)

    def infer(self, prepared: Sequence[np.ndarray | None], t_start: float, t_end: float) -> Mood:
        frames = [p for p in prepared if p is not None]
        kept, self._kept = self._kept, []
        if self._cut_at is not None:
            # Read the new picture on its own: what came before the cut is another scene.
            after = [f for f, pts in zip(frames, kept, strict=False) if pts >= self._cut_at - 1e-6]
            if after:
                self._reader.reset()
                self._probs = None
                frames = after
            self._cut_at = None
        if frames:
            self._reader.push(np.stack(frames))
        reading = self._reader.read()
        if reading is None:  # no frame kept yet (a window shorter than one model tick)
            return Mood(t_start=t_start, t_end=t_end, valence=0.0, arousal=0.0, confidence=0.0)
        names, probs = self.classes, np.array([reading.probs[name] for name in self.classes])
        adapted = None
        teacher = self._teacher
        if teacher is not None:
            example = self._reader.features()
            if example is not None:
                if frames:
                    teacher.observe(example, reading.scene, t_end - t_start)
                adapted = teacher.head_probs(example)
            if adapted is not None:
                names = tuple(adapted)
                probs = np.array([adapted[name] for name in names])
        if names != self._names:
            self._probs = None  # the taught head took over (or gave way): start afresh
            self._names = names
        heard: dict[str, float] = {}
        if self.audio is not None:
            # Before the smoothing: audio evidence is one more reading of this window (of the
            # taught head's scenes too: it moves dialogue and combat where they are named).
            probs, heard = self.audio.fuse(names, probs, t_start, t_end)
        if self.text is not None:
            probs, seen = self.text.fuse(names, probs, t_end)
            heard.update(seen)
        tau = self._config.smoothing_s
        if self._probs is None or tau <= 0:
            self._probs = probs
        else:
            alpha = 1.0 - math.exp(-max(0.0, t_end - self._time) / tau)
            self._probs = self._probs + alpha * (probs - self._probs)
        self._time = t_end
        best = int(np.argmax(self._probs))
        confidence = float(self._probs[best])
        # Unsure means steady: no scene named, the conductor holds its preset.
        scene = names[best] if confidence >= self._config.min_scene_prob else None
        if teacher is not None:
            teacher.show(names[best], confidence, adapted=adapted is not None)
        features = {"frames": float(len(frames)), "scene_confidence": confidence, **heard}
        cues = self._reader.cues
        if cues is not None:
            features.update(
                (f"cue.{name}", round(float(value), 4))
                for name, value in zip(CUE_NAMES, cues, strict=True)
                if value >= CUE_SPEAKS
            )
        return Mood(
            t_start=t_start,
            t_end=t_end,
            valence=reading.valence,
            arousal=reading.arousal,
            confidence=1.0 if frames else 0.5,
            scene=scene,
            scene_probs={name: float(p) for name, p in zip(names, self._probs, strict=True)},
            features=features,
        )

    def close(self) -> None:
        if self.audio is not None:
            self.audio.close()
        if self.text is not None:
            self.text.close()
        if self._teacher is not None:
            self._teacher.close()


class AutoModel(WindowModel[tuple[Any, np.ndarray | None]]):
    """Analysis mode ``auto``: the face mode's reading when faces are in view, else the game's.

    Parameters
    ----------
    face : the face mode's model; game : the game mode's model. Both are closed with this one.
    """

    name = "auto"

    def __init__(self, *, face: WindowModel[Any], game: GameModel) -> None:
        self._face = face
        self._game = game

    @property
    def game(self) -> GameModel:
        """The game half (the one that hears the game's audio)."""
        return self._game

    def reset(self) -> None:
        self._face.reset()
        self._game.reset()

    def cut(self, time: float) -> None:
        self._game.cut(time)

    def prepare(self, frame: Frame) -> tuple[Any, np.ndarray | None]:
        return self._face.prepare(frame), self._game.prepare(frame)

    def infer(
        self, prepared: Sequence[tuple[Any, np.ndarray | None]], t_start: float, t_end: float
    ) -> Mood:
        faces = [f for f, _ in prepared]
        # Both models read every window, so each keeps its own history (smoothing, the GRU's
        # second of frames) and takes over without a cold start.
        face_mood = self._face.infer(faces, t_start, t_end)
        game_mood = self._game.infer([g for _, g in prepared], t_start, t_end)
        with_face = sum(1 for f in faces if f) / max(1, len(faces))
        return face_mood if with_face >= FACE_SHARE else game_mood

    def close(self) -> None:
        self._face.close()
        self._game.close()


def attach_game_audio(model: WindowModel[Any], cues: GameAudioCues) -> bool:
    """Give ``model`` (the game mode's, or auto's game half) the game's audio; other modes do
    not hear it (``cues`` is closed and False returned)."""
    game = model.game if isinstance(model, AutoModel) else model
    if not isinstance(game, GameModel):
        cues.close()
        return False
    game.audio = cues
    return True


def open_text_cues() -> GameTextCues | None:
    """The on-screen text cue with its detector (one onnxruntime thread), or None with one
    logged line when the detector is not installed (the picture alone reads the game)."""
    from daemon.analysis.game_text import GameTextCues
    from models.text_cues import TextDetector, TextModelMissing

    try:
        detector = TextDetector(threads=1)
    except TextModelMissing as exc:
        log.error("%s; game mode reads without the on-screen text cue (game.text = false)", exc)
        return None
    return GameTextCues(measure=detector.measure)


def pace_game_text(model: WindowModel[Any], *, live: bool) -> None:
    """Live sources never wait for the text measurement (it uses the latest one done); files
    wait, so a file reads the same every time."""
    game = model.game if isinstance(model, AutoModel) else model
    if isinstance(game, GameModel) and game.text is not None:
        game.text.in_step = not live
