"""Headless game recording: a virtual X display, a game process, xdotool input, an 8 fps capture.

The recorders in this package share this harness:

- :class:`Xvfb` starts a virtual X server at a given screen size (Mesa's llvmpipe renders any
  OpenGL game in software inside it) and stops it again;
- :class:`GameProcess` launches a game in its own process group, with a private ``HOME`` so
  its settings are the recorder's and nothing of the developer's leaks in, and kills the whole
  group on exit, even on error;
- :class:`XInput` drives the game with ``xdotool`` (keys, mouse) and finds its window;
- :class:`Capture` grabs the game's window 8 times a second in a thread (XGetImage through
  ``mss``), shrinks each grab to 96x72 with ``cv2.INTER_AREA`` as the live analysis does, and
  stamps it with the label state the recorder (or a probe that asks the game) set *at that
  moment*, so labels are made by construction and never guessed afterwards.

A label state is a game-specific name (``"main_menu"``, ``"bot_match"``, ``"say"``) that maps to
a scene class or to ``None`` (not labelled). For ``settle_s`` after each change of state the
frames are unlabelled (state ``"settle"``): what the game draws lags the input that changed it.

Debian packages: ``xvfb xdotool x11-utils libgl1-mesa-dri`` (plus each game's own).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import cv2
import mss
import numpy as np

from models.scene_data import MODEL_FPS, STORE_HEIGHT, STORE_WIDTH

SETTLE = "settle"


class RecordError(RuntimeError):
    """A game could not be started, found or driven."""


# ------------------------------------------------------------------------------------------
# X server and game process


class Xvfb:
    """A virtual X display of ``width`` x ``height`` (24-bit), on the first free display number."""

    def __init__(self, *, width: int, height: int, first_display: int = 80) -> None:
        self.width = width
        self.height = height
        self._first = first_display
        self.display = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Xvfb:
        if shutil.which("Xvfb") is None:
            raise RecordError("Xvfb is missing: apt-get install xvfb")
        for number in range(self._first, self._first + 40):
            if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
                continue
            self._proc = subprocess.Popen(
                [
                    "Xvfb",
                    f":{number}",
                    "-screen",
                    "0",
                    f"{self.width}x{self.height}x24",
                    "-nolisten",
                    "tcp",
                    "-noreset",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if Path(f"/tmp/.X11-unix/X{number}").exists():
                    self.display = f":{number}"
                    time.sleep(0.3)
                    return self
                if self._proc.poll() is not None:
                    break
                time.sleep(0.05)
            self._stop()
        raise RecordError(f"could not start Xvfb on any display from :{self._first}")

    def _stop(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
            self._proc = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """SIGTERM the process group ``proc`` leads, then SIGKILL what is left of it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    # Children that left the leader behind (wrapper scripts) still sit in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def game_env(display: str, home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a game runs in: the virtual display, no sound card, a private home."""
    env = {
        "PATH": "/usr/games:/usr/local/bin:/usr/bin:/bin",
        "DISPLAY": display,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SDL_AUDIODRIVER": "dummy",
        "ALSOFT_DRIVERS": "null",
        "LIBGL_ALWAYS_SOFTWARE": "1",
        # Mesa's llvmpipe would take every core; leave one for the capture and for others.
        "LP_NUM_THREADS": "2",
    }
    if extra:
        env.update(extra)
    return env


class GameProcess:
    """A game launched in its own process group; the group is killed on exit."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GameProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            _kill_group(self.proc)


@contextlib.contextmanager
def private_home(prefix: str, keep: Path | None = None) -> Iterator[Path]:
    """A fresh home directory for one game run (``keep``: use that folder and leave it)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix=f"moodscore-{prefix}-") as folder:
        yield Path(folder)


# ------------------------------------------------------------------------------------------
# Input


_XWININFO_LINE = re.compile(
    r'^\s+(0x[0-9a-f]+) "(.*)": \((?:"([^"]*)"[^)]*)?\)'  # id "title": ("class" ...)
    r"\s+(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(-?\d+)\+(-?\d+)",  # WxH+x+y +absx+absy
    re.MULTILINE,
)
_XWININFO_FIELD = re.compile(r"^\s+([A-Za-z -]+):\s+(-?\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Geometry:
    x: int
    y: int
    width: int
    height: int


class XInput:
    """``xdotool`` on one display; keys go to whichever window has the focus."""

    def __init__(self, display: str) -> None:
        if shutil.which("xdotool") is None:
            raise RecordError("xdotool is missing: apt-get install xdotool")
        self.display = display
        self.window: str | None = None

    def _run(self, *args: str, check: bool = True, timeout: float = 20) -> str:
        out = subprocess.run(
            ["xdotool", *args],
            env={"DISPLAY": self.display, "PATH": os.environ.get("PATH", "/usr/bin")},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise RecordError(f"xdotool {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def windows(self) -> list[tuple[str, str, Geometry]]:
        """The mapped windows as ``(id, "title (class)", geometry)``, from ``xwininfo``.

        (xdotool's ``search --name`` misses SDL windows, whose WM_NAME is typed UTF-8.)
        """
        out = subprocess.run(
            ["xwininfo", "-root", "-tree"],
            env={"DISPLAY": self.display, "PATH": os.environ.get("PATH", "/usr/bin")},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
        found = []
        for match in _XWININFO_LINE.finditer(out):
            wid, title, klass, width, height, x, y = match.groups()
            found.append(
                (wid, f"{title} ({klass or ''})", Geometry(int(x), int(y), int(width), int(height)))
            )
        return found

    def wait_window(
        self,
        name: str,
        *,
        timeout_s: float = 90,
        min_size: int = 200,
        alive: Callable[[], bool] | None = None,
    ) -> str:
        """The id of the largest window whose "title (class)" matches ``name`` (a regex)."""
        pattern = re.compile(name)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if alive is not None and not alive():
                raise RecordError(f"the game exited before its window {name!r} appeared")
            best: tuple[int, str] | None = None
            for wid, title, geometry in self.windows():
                if not pattern.search(title):
                    continue
                if geometry.width >= min_size and geometry.height >= min_size:
                    area = geometry.width * geometry.height
                    if best is None or area > best[0]:
                        best = (area, wid)
            if best is not None:
                self.window = best[1]
                return best[1]
            time.sleep(0.5)
        raise RecordError(f"no window named {name!r} within {timeout_s:.0f} s")

    def geometry(self, wid: str | None = None) -> Geometry | None:
        """Where window ``wid`` (default: the game's) is on the screen now."""
        wid = wid or self.window
        if wid is None:
            return None
        out = subprocess.run(
            ["xwininfo", "-id", wid],
            env={"DISPLAY": self.display, "PATH": os.environ.get("PATH", "/usr/bin")},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
        values = dict(_XWININFO_FIELD.findall(out))
        try:
            return Geometry(
                int(values["Absolute upper-left X"]),
                int(values["Absolute upper-left Y"]),
                int(values["Width"]),
                int(values["Height"]),
            )
        except KeyError:
            return None

    def focus(self) -> None:
        if self.window is not None:
            self._run("windowfocus", "--sync", self.window, check=False)

    def key(self, *keys: str, delay_ms: int = 40) -> None:
        self._run("key", "--delay", str(delay_ms), *keys)

    def key_down(self, *keys: str) -> None:
        self._run("keydown", *keys)

    def key_up(self, *keys: str) -> None:
        self._run("keyup", *keys)

    def hold(self, keys: list[str], seconds: float) -> None:
        """Hold ``keys`` together for ``seconds``."""
        if not keys:
            time.sleep(seconds)
            return
        self.key_down(*keys)
        try:
            time.sleep(seconds)
        finally:
            self.key_up(*keys)

    def type_text(self, text: str, delay_ms: int = 60) -> None:
        self._run("type", "--delay", str(delay_ms), text)

    def move(self, x: int, y: int, *, relative_to_window: bool = True) -> None:
        """Move the pointer to (x, y), in window coordinates unless told otherwise."""
        if relative_to_window and self.window is not None:
            geometry = self.geometry()
            if geometry is not None:
                x, y = x + geometry.x, y + geometry.y
        self._run("mousemove", "--sync", str(x), str(y))

    def move_relative(self, dx: int, dy: int) -> None:
        self._run("mousemove_relative", "--sync", "--", str(dx), str(dy))

    def click(self, button: int = 1, *, at: tuple[int, int] | None = None) -> None:
        if at is not None:
            self.move(*at)
        self._run("click", str(button))

    def mouse_down(self, button: int = 1) -> None:
        self._run("mousedown", str(button))

    def mouse_up(self, button: int = 1) -> None:
        self._run("mouseup", str(button))


# ------------------------------------------------------------------------------------------
# Capture


@dataclass
class Recording:
    """What a capture produced: 96x72 frames and, per frame, its state and cues."""

    frames: list[np.ndarray] = field(default_factory=list)
    states: list[str] = field(default_factory=list)
    cues: dict[str, list[float]] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    # How many grabs were identical to the one before (a game rendering slower than 8 fps),
    # and which ones.
    repeats: int = 0
    repeated: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


class Capture:
    """Grab the game's window at 8 fps in a thread, each frame stamped with the current state.

    Parameters
    ----------
    display : the X display to grab from.
    region : returns the rectangle to grab now (the game's window; it may move or resize);
        ``None`` grabs the whole screen.
    probe : optional; asked at every grab for the state the *game* reports (a state log the
        game writes), overriding :meth:`set_state` whenever it returns a name.
    cue_probe : optional; per-frame numeric cues (visible enemies, health) from the game.
    settle_s : seconds after each change of state whose frames are left unlabelled.

    Full-size frames for the on-screen text cue (``tools/text_footage.py``): with
    :attr:`full_dir` set (``--full-frames DIR``), every :attr:`full_every`-th stored frame is also
    saved at the window's own size as ``DIR/<frame index>.jpg`` (not committed: the text cue is
    measured on them and only its per-frame figures are kept with the clip).

    A recorder that slows the game's clock (a game speed of 25 %) calls :meth:`set_rate` with the
    matching wall rate (2 grabs a second): each stored frame is still 1/8 s of *game* time, and a
    software renderer that draws only a few frames a second still shows true motion.
    """

    full_dir: Path | None = None
    full_every = 4

    def __init__(
        self,
        *,
        display: str,
        region: Callable[[], Geometry | None] | None = None,
        probe: Callable[[], str | None] | None = None,
        cue_probe: Callable[[], dict[str, float]] | None = None,
        settle_s: float = 0.5,
        fps: float = MODEL_FPS,
    ) -> None:
        self.display = display
        self.region = region
        self.probe = probe
        self.cue_probe = cue_probe
        self.settle_s = settle_s
        self.fps = fps
        self.recording = Recording()
        self._state = SETTLE
        self._state_since = 0.0
        self._cues: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._region_cache: tuple[float, Geometry | None] = (-1e9, None)
        self._last: np.ndarray | None = None
        self._period = 1.0 / fps

    # the recorder's side ---------------------------------------------------------------

    def set_state(self, state: str, *, settle_s: float | None = None) -> None:
        """From now on frames show ``state``, after ``settle_s`` (default: the capture's)."""
        with self._lock:
            if state != self._state:
                self._state = state
                self._state_since = time.monotonic()
                self._settle_for = self.settle_s if settle_s is None else settle_s

    def set_cues(self, **cues: float) -> None:
        with self._lock:
            self._cues.update(cues)

    @property
    def state(self) -> str:
        return self._state

    def pause(self) -> None:
        """Stop storing frames (loading screens, set-up the footage should not show)."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def set_rate(self, wall_fps: float) -> None:
        """Grab ``wall_fps`` times a wall-clock second from now on (``fps`` times game time)."""
        self._period = 1.0 / wall_fps

    def seconds(self) -> float:
        """Seconds of footage stored (game time: ``fps`` frames a second)."""
        return len(self.recording) / self.fps

    def latest(self) -> np.ndarray | None:
        """The newest 96x72 grab, kept or not (paused); ``None`` before the first."""
        return self._last

    # the thread ------------------------------------------------------------------------

    def __enter__(self) -> Capture:
        self._settle_for = self.settle_s
        self._state_since = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._error is not None and exc is None:
            raise RecordError(f"capture failed: {self._error}") from self._error

    def _current_region(self) -> Geometry | None:
        if self.region is None:
            return None
        now = time.monotonic()
        stamp, cached = self._region_cache
        if now - stamp > 2.0 or cached is None:
            cached = self.region()
            self._region_cache = (now, cached)
        return cached

    def _run(self) -> None:
        try:
            with mss.MSS(display=self.display) as grabber:
                next_tick = time.monotonic()
                previous: np.ndarray | None = None
                while not self._stop.is_set():
                    period = self._period
                    now = time.monotonic()
                    if now < next_tick:
                        time.sleep(min(period, next_tick - now))
                        continue
                    # Late (a slow grab, a busy machine): drop the missed ticks, keep real time.
                    next_tick += period * max(1, int((now - next_tick) / period) + 1)
                    grabbed = self._grab(grabber)
                    if grabbed is None:
                        continue
                    frame, full = grabbed
                    self._last = frame
                    if self._paused.is_set():
                        previous = None
                        continue
                    state = self._frame_state(now)
                    cues = dict(self._cues)
                    if self.cue_probe is not None:
                        cues.update(self.cue_probe())
                    rec = self.recording
                    repeat = previous is not None and np.array_equal(previous, frame)
                    rec.repeats += int(repeat)
                    rec.repeated.append(repeat)
                    previous = frame
                    if self.full_dir is not None and len(rec.frames) % self.full_every == 0:
                        self.full_dir.mkdir(parents=True, exist_ok=True)
                        name = str(self.full_dir / f"{len(rec.frames):05d}.jpg")
                        cv2.imwrite(
                            name,
                            cv2.cvtColor(full, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 92],
                        )
                    rec.frames.append(frame)
                    rec.states.append(state)
                    rec.times.append(now)
                    for name in set(rec.cues) | set(cues):
                        column = rec.cues.setdefault(name, [float("nan")] * (len(rec.frames) - 1))
                        column.append(float(cues.get(name, float("nan"))))
        except BaseException as exc:  # the recorder's thread must report, not die silently
            self._error = exc

    def _frame_state(self, now: float) -> str:
        if self.probe is not None:
            reported = self.probe()
            if reported is not None:
                self.set_state(reported)
        with self._lock:
            if now - self._state_since < self._settle_for:
                return SETTLE
            return self._state

    def _grab(self, grabber: mss.MSS) -> tuple[np.ndarray, np.ndarray] | None:
        """(the 96x72 frame, the full-size RGB grab), or None when the window cannot be read."""
        geometry = self._current_region()
        if geometry is None:
            monitor = grabber.monitors[1]
            box = {
                "left": monitor["left"],
                "top": monitor["top"],
                "width": monitor["width"],
                "height": monitor["height"],
            }
        else:
            box = {
                "left": max(0, geometry.x),
                "top": max(0, geometry.y),
                "width": geometry.width,
                "height": geometry.height,
            }
        try:
            shot = grabber.grab(box)
        except Exception:
            self._region_cache = (-1e9, None)
            return None
        bgra = np.asarray(shot)
        rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB)
        return cv2.resize(rgb, (STORE_WIDTH, STORE_HEIGHT), interpolation=cv2.INTER_AREA), rgb

    def grab_full(self, path: Path) -> None:
        """Save one full-size screenshot of the game's window (to check what is on screen)."""
        geometry = self._current_region()
        with mss.MSS(display=self.display) as grabber:
            box = (
                grabber.monitors[1]
                if geometry is None
                else {
                    "left": geometry.x,
                    "top": geometry.y,
                    "width": geometry.width,
                    "height": geometry.height,
                }
            )
            shot = np.asarray(grabber.grab(box))
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), shot[:, :, :3])


def sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


class StateFile:
    """A state log a game writes (one ``TIME STATE`` line per change), read at each grab.

    Games we can script (Ren'Py, Minetest, Wesnoth) append their own state to a file; the
    capture reads the newest line, so the label is what the game says it shows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._last: str | None = None
        self._buffer = b""

    def __call__(self) -> str | None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return self._last
        self._offset += len(chunk)
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            parts = line.decode(errors="replace").split(maxsplit=1)
            if len(parts) == 2:
                self._last = parts[1].strip()
        return self._last
