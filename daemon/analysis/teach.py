"""Teaching the game mode one game while it plays: examples, a background head, profiles.

The user says what the screen shows (``teach {"scene": "combat", "seconds": 5}``: the panel's
buttons, MQTT ``cmd/teach``, ``POST /api/teach``); the next ``seconds`` of analysis windows
become one **batch** of examples of that scene (:func:`models.scene_adapt.window_features`,
the general model's frozen reading). When a batch is complete, a per-game head is trained in
the background (:func:`models.scene_adapt.adapt`), off the event loop and the audio path:

- ``worker = "process"`` (default): one spawned worker process, niced, with one torch thread;
  it holds no GIL the engine needs, and its first start (importing torch) is paid once, while
  the first batch is still being collected;
- ``worker = "thread"``: a thread of this process (torch's thread count is the analysis's).

The head takes over only if it beats the general model on the held-back examples (the latest
quarter of each class, by the time taught), and then only at the next bar
(:meth:`Teacher.promote`, called by the router as each bar starts), so the reading never changes
in the middle of a bar. ``teach_undo`` drops the last batch (or the one being collected) and
trains again; with fewer than two scenes taught the general model reads alone.

``teach`` with a ``file`` (:meth:`Teacher.teach_file`) takes the batch from a recording instead:
the marked stretch is decoded as fast as the CPU allows (in the training worker, off the event
loop and the audio's threads) and read
by the general model as the live analysis reads it, a second before the stretch included so the
first window sees a full second.

A scene name may be any preset's name (``boss`` with a ``boss.toml`` among the presets): the
head then names it, and the conductor plays its preset as it plays the built-in four.

Every trained or undone batch is saved to the game's profile (:mod:`daemon.analysis.profiles`)
when the run has a game name (``--game NAME``, ``[game] profile``).
``game {"game": NAME}`` (the panel's profile list, MQTT ``cmd/game``, the OBS scene or the
window title with ``[game] auto_profile``) switches to another game's profile at the next bar.

This module stays whole (about 540 lines): the :class:`Teacher` is one state machine (the
batches, the batch being collected, the head waiting for the next bar, the training
generation) behind one lock, and each method reads or moves that state as a whole; reading
files (:mod:`daemon.analysis.video_file`) and profile files (:mod:`daemon.analysis.profiles`)
are already apart.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from daemon.analysis import profiles
from daemon.errors import MoodscoreError
from models.background import lower_priority

log = logging.getLogger("moodscore.analysis.teach")

MAX_SECONDS = 120.0  # one teach command marks at most this much


class TeachError(MoodscoreError):
    """A teach request cannot be done now (nothing to undo, no game mode)."""


@dataclass
class Batch:
    """One teach command's examples."""

    scene: str
    asked_s: float
    taught_at: float
    features: list[np.ndarray] = field(default_factory=list)
    general: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Teacher:
    """The taught examples of one game and the head trained on them (module docstring).

    Parameters
    ----------
    model_hash : the general scene model's hash (:func:`profiles.model_hash`).
    game : the game's name (its profile is loaded now and saved after each change); None:
        nothing is saved.
    folder : the profiles folder (default :func:`profiles.profiles_dir`).
    worker : where training runs: ``"process"`` or ``"thread"``.
    model_path : the general scene model's checkpoint (teaching from a file reads with it);
        None: teaching from a file is refused.

    Raises
    ------
    ProfileError
        The game's profile exists but cannot be read, or was made on another scene model.
    """

    def __init__(
        self,
        *,
        model_hash: str,
        game: str | None = None,
        folder: Path | None = None,
        worker: Literal["process", "thread"] = "process",
        model_path: Path | None = None,
    ) -> None:
        self.model_hash = model_hash
        self.model_path = model_path
        self._file_lock = threading.Lock()
        self.game = None if not game else profiles.check_name(game)
        self.path = None if self.game is None else profiles.profile_path(self.game, folder)
        self._folder = folder
        self._worker = worker
        self._lock = threading.Lock()
        self._batches: list[Batch] = []
        self._collecting: Batch | None = None
        self._head: Any = None  # AdaptedHead reading now (None: the general model)
        self._pending: tuple[Any, dict[str, Any]] | None = None  # waits for the next bar
        self._result: dict[str, Any] = {}
        self._generation = 0
        self._training = 0
        self._idle = threading.Event()
        self._idle.set()
        self._executor: concurrent.futures.Executor | None = None
        self._reading: dict[str, Any] = {"scene": None, "confidence": 0.0, "by": "general"}
        self.trainings = 0
        self.error: str | None = None
        if self.path is not None and self.path.exists():
            self._adopt(profiles.load(self.path, expect_hash=model_hash))
            log.info("game profile %s: %s", self.game, self.summary().describe())

    # -- the analysis thread ----------------------------------------------------------------

    def observe(self, features: np.ndarray, general: str, seconds: float) -> None:
        """One analysis window: its features, the general model's scene, its length."""
        done = None
        with self._lock:
            batch = self._collecting
            if batch is None:
                return
            batch.features.append(np.asarray(features, dtype=np.float32))
            batch.general.append(general)
            batch.seconds += seconds
            if batch.seconds >= batch.asked_s - 1e-6:
                self._collecting = None
                self._batches.append(batch)
                done = batch
        if done is not None:
            log.info("teach: %.1f s of %s collected", done.seconds, done.scene)
            self._train()

    @property
    def head(self) -> Any:
        """The adapted head reading now (:class:`models.scene_adapt.AdaptedHead`), or None."""
        return self._head

    def head_probs(self, features: np.ndarray) -> dict[str, float] | None:
        """The adapted head's probabilities for a window (None: the general model reads)."""
        head = self._head
        return None if head is None else head.probs(features)

    def show(self, scene: str | None, confidence: float, *, adapted: bool) -> None:
        """What the game mode read in the last window (for the panel)."""
        self._reading = {
            "scene": scene,
            "confidence": round(float(confidence), 3),
            "by": "adapted" if adapted else "general",
        }

    # -- commands (the router, on the event loop) -------------------------------------------

    def teach(self, scene: str, seconds: float) -> None:
        """The next ``seconds`` of windows show ``scene``: a new batch (one being collected is
        closed as it stands)."""
        closed = None
        with self._lock:
            if self._collecting is not None and self._collecting.features:
                closed = self._collecting
                self._batches.append(closed)
            self._collecting = Batch(
                scene=scene, asked_s=min(seconds, MAX_SECONDS), taught_at=time.time()
            )
        log.info("teach: the next %.0f s are %s", seconds, scene)
        if self._executor is None and self._worker == "process":
            try:
                from models.scene_adapt import warm

                self._executor_now().submit(warm)
            except Exception:  # the training will say what is wrong with the worker
                log.debug("teach: the worker did not start early", exc_info=True)
        if closed is not None:
            self._train()

    def teach_file(
        self, scene: str, path: Path | str, *, start: float = 0.0, seconds: float = MAX_SECONDS
    ) -> str:
        """``seconds`` of a recording from ``start`` show ``scene``: one batch, read now (call
        it off the event loop; one file at a time), then trained as a taught batch is; what
        was taught.

        Raises
        ------
        TeachError
            No scene model to read with, no such file, or nothing in the stretch.
        SourceError
            The file does not decode as video.
        """
        from daemon.analysis.video_file import read_examples

        path = Path(path).expanduser()
        if self.model_path is None:
            raise TeachError("teach: this run cannot read files (no scene model path)")
        if not path.is_file():
            raise TeachError(f"teach: no file {path}; give a video file this machine can read")
        job = (str(self.model_path), str(path), start, min(seconds, MAX_SECONDS))
        with self._file_lock:
            # In the worker process (niced, one torch thread) the music's threads keep the CPU.
            if self._worker == "process":
                future = self._executor_now().submit(read_examples, *job)
                features, general, window_s = future.result()
            else:
                features, general, window_s = read_examples(*job)
        if not len(features):
            raise TeachError(f"teach: {path.name} has no whole {window_s:g} s after {start:g} s")
        batch = Batch(scene=scene, asked_s=len(features) * window_s, taught_at=time.time())
        batch.features = list(features)
        batch.general = list(general)
        batch.seconds = len(features) * window_s
        with self._lock:
            self._batches.append(batch)
        what = f"{batch.seconds:.1f} s of {scene} from {path.name} at {start:g} s"
        log.info("teach: %s", what)
        self._train()
        return what

    def undo(self) -> str:
        """Drop the batch being collected, else the last one; what was dropped.

        Raises
        ------
        TeachError
            Nothing was taught.
        """
        with self._lock:
            if self._collecting is not None:
                dropped, self._collecting = self._collecting, None
                retrain = False
            elif self._batches:
                dropped = self._batches.pop()
                retrain = True
            else:
                raise TeachError("teach_undo: nothing was taught to undo")
        what = f"{dropped.seconds:.1f} s of {dropped.scene}"
        log.info("teach: undid %s", what)
        if retrain:
            self._train()
        return what

    def can_undo(self) -> bool:
        """Whether :meth:`undo` has a batch to drop."""
        return self._collecting is not None or bool(self._batches)

    def promote(self) -> bool:
        """At a bar line: a head trained since the last bar takes over (or the general model,
        when the new head did not beat it); True when the reader changed."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return False
            head, result = pending
            self._head = head
            self._result = result
        log.info(
            "teach: %s reads from this bar (held back: adapted %s, general %s)",
            "the adapted head" if head is not None else "the general model",
            _fmt(result.get("adapted_accuracy")),
            _fmt(result.get("general_accuracy")),
        )
        return True

    # -- state and profiles -----------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What the panel, the API and MQTT show: seconds per scene, the batch being collected,
        the reading now, whether the adapted head reads, the held-back figures."""
        with self._lock:
            seconds: dict[str, float] = {}
            for batch in self._batches:
                seconds[batch.scene] = round(seconds.get(batch.scene, 0.0) + batch.seconds, 1)
            collecting = self._collecting
            result = dict(self._result)
            state = {
                "game": self.game,
                "saved": self.path is not None,
                "seconds": seconds,
                "batches": len(self._batches),
                "collecting": None
                if collecting is None
                else {
                    "scene": collecting.scene,
                    "left_s": round(max(0.0, collecting.asked_s - collecting.seconds), 1),
                },
                "training": self._training > 0,
                "adapted": self._head is not None,
                "waiting_for_bar": self._pending is not None,
                "held_back": {
                    "adapted": result.get("adapted_accuracy"),
                    "general": result.get("general_accuracy"),
                    "examples": result.get("held_back", 0),
                },
                "train_seconds": result.get("seconds"),
                "model_hash": self.model_hash,
                "error": self.error,
            }
        state["reading"] = dict(self._reading)
        return state

    def summary(self) -> profiles.ProfileSummary:
        """This game's summary (as ``doctor`` lists saved profiles)."""
        return profiles.summarise(
            self._profile(), self.path or Path(f"{self.game}{profiles.SUFFIX}")
        )

    def export_bytes(self) -> bytes:
        """The profile as one file's bytes (for ``GET /api/profile``)."""
        return profiles.to_bytes(self._profile())

    def import_bytes(self, raw: bytes, *, where: str) -> None:
        """Replace what was taught with an exported profile's; it reads from the next bar.

        Raises
        ------
        ProfileError
            Not a profile, or made on another scene model.
        """
        data = profiles.from_bytes(raw, expect_hash=self.model_hash, where=where)
        with self._lock:
            self._generation += 1
        self._adopt(data, at_bar=True)
        self._save()

    def switch(self, game: str) -> str:
        """Teach and read game ``game`` from now on: its saved profile (or a new, empty one)
        replaces what this run was taught (that is saved already); its head reads from the
        next bar. What it is now. Blocking (reads a file): call it off the event loop.

        Raises
        ------
        ProfileError
            A bad name, or the game's profile cannot be read or was made on another model.
        """
        name = profiles.check_name(game)
        path = profiles.profile_path(name, self._folder)
        data = profiles.load(path, expect_hash=self.model_hash) if path.exists() else {}
        with self._lock:
            self._generation += 1  # a training of the old game's examples is not used
            self.game, self.path = name, path
        self._adopt(data, at_bar=True)
        summary = self.summary().describe()
        log.info("teach: game profile %s from the next bar", summary)
        return summary

    def profiles(self) -> list[dict[str, Any]]:
        """Every saved profile, this game's as it stands (:func:`profiles.listing`)."""
        current = None if self.game is None else self.summary()
        return profiles.listing(self._folder, current=current, model_hash=self.model_hash)

    def profile_bytes(self, game: str | None) -> bytes:
        """The profile of ``game`` (None or this run's game: as it stands now) as one file.

        Raises
        ------
        ProfileError
            A bad name, or no such profile.
        """
        if game is None or game == self.game:
            return self.export_bytes()
        return profiles.read_bytes(game, self._folder)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no training runs (tests, benches); False on timeout."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the training worker (a running training is abandoned)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------

    def _profile(self) -> dict[str, Any]:
        import torch

        with self._lock:
            batches = [
                {
                    "scene": b.scene,
                    "seconds": float(b.seconds),
                    "taught_at": float(b.taught_at),
                    "general": list(b.general),
                    "features": torch.from_numpy(np.stack(b.features)),
                }
                for b in self._batches
                if b.features
            ]
            pending = self._pending
            head, result = pending if pending is not None else (self._head, self._result)
        return {
            "game": self.game or "",
            "model_hash": self.model_hash,
            "batches": batches,
            "head": None if head is None else head.to_state(),
            "takes_over": head is not None,
            "result": {k: v for k, v in result.items() if k != "head"},
            "saved_at": time.time(),
        }

    def _adopt(self, data: dict[str, Any], *, at_bar: bool = False) -> None:
        from models.scene_adapt import AdaptedHead

        batches = [
            Batch(
                scene=str(b["scene"]),
                asked_s=float(b["seconds"]),
                taught_at=float(b["taught_at"]),
                features=list(b["features"].numpy()),
                general=[str(g) for g in b["general"]],
                seconds=float(b["seconds"]),
            )
            for b in data.get("batches", [])
        ]
        head = None
        if data.get("takes_over") and data.get("head") is not None:
            head = AdaptedHead.from_state(data["head"])
        result = dict(data.get("result", {}))
        with self._lock:
            self._batches = batches
            self._collecting = None
            if at_bar:
                self._pending = (head, result)
            else:
                self._head, self._result, self._pending = head, result, None

    def _executor_now(self) -> concurrent.futures.Executor:
        if self._executor is None:
            if self._worker == "process":
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=lower_priority,
                )
            else:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="teach"
                )
        return self._executor

    def _train(self) -> None:
        from models.scene_adapt import adapt_job

        with self._lock:
            self._generation += 1
            generation = self._generation
            examples = [
                (f, b.scene, g)
                for b in self._batches
                for f, g in zip(b.features, b.general, strict=True)
            ]
            self._training += 1
            self._idle.clear()
        try:
            if examples:
                features = np.stack([e[0] for e in examples])
                labels = [e[1] for e in examples]
                general = [e[2] for e in examples]
                future = self._executor_now().submit(adapt_job, features, labels, general)
            else:
                future = concurrent.futures.Future()
                future.set_result({"head": None, "takes_over": False, "classes": []})
        except Exception as exc:  # a worker that cannot start: say so, the music plays on
            self._finish(generation, None, exc)
            return
        future.add_done_callback(lambda f: self._finish(generation, f, None))

    def _finish(
        self,
        generation: int,
        future: concurrent.futures.Future[dict[str, Any]] | None,
        error: BaseException | None,
    ) -> None:
        from models.scene_adapt import AdaptedHead

        try:
            if future is not None and not future.cancelled():
                error = future.exception()
            if error is not None or future is None or future.cancelled():
                self.error = f"training failed: {error}" if error else "training cancelled"
                log.warning("teach: %s; the general model keeps reading", self.error)
                return
            result = future.result()
            head = None
            if result.get("takes_over") and result.get("head") is not None:
                head = AdaptedHead.from_state(result["head"])
            with self._lock:
                self.trainings += 1  # finished, used or not
                if generation != self._generation:
                    return  # taught or undone again since: a newer training follows
                self._pending = (head, result)
                self.error = None
            log.info(
                "teach: trained in %.2f s on %s; held back: adapted %s, general %s%s",
                float(result.get("seconds") or 0.0),
                ", ".join(result.get("classes", [])) or "nothing",
                _fmt(result.get("adapted_accuracy")),
                _fmt(result.get("general_accuracy")),
                "" if head is not None else " (the general model keeps reading)",
            )
            self._save()
        except Exception:
            log.exception("teach: training result could not be used")
        finally:
            with self._lock:
                self._training -= 1
                if self._training == 0:
                    self._idle.set()

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            profiles.save(self.path, self._profile())
        except OSError as exc:
            self.error = f"profile not saved: {exc.strerror or exc}"
            log.warning("teach: %s (%s)", self.error, self.path)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f}"


def make_teacher(*, model_path: Path, game: str, worker: Literal["process", "thread"]) -> Teacher:
    """The teacher of a run of the game mode (loads the game's profile when it has one)."""
    return Teacher(
        model_hash=profiles.model_hash(model_path),
        game=game or None,
        worker=worker,
        model_path=model_path,
    )
