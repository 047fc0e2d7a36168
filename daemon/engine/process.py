"""The live engine in a process of its own (``engine.process = "own"``, the default for live
``manual`` runs).

In the daemon's process the engine's stepping thread shares one interpreter lock with the event
loop, the visuals, the VP8 encoders, the analysis and MQTT; on a busy machine it waits for that
lock and blocks are handed on late (audible gaps). Here a child process owns pyo, the band and
the sequencer (an ordinary :class:`~daemon.engine.engine.Engine` with the ``manual`` backend)
and competes for nothing but a core, at raised priority for the whole process.

The daemon keeps a :class:`ProcessEngine` with the same interface and listeners, so every output
(recorder, WebRTC audio, MIDI, MQTT beats, OSC, the visuals) works unchanged:

- daemon -> child, one queue: the bar scores and patches as the composer writes them (the
  session's :class:`~daemon.engine.scores.ScoreQueue` forwards them), the end time, mutes,
  transport and stop.
- child -> daemon, one queue in the order they happened: the clock's events (bars, grids, notes,
  beats), one marker per audio block with the health counts (late blocks are counted in the
  child, where the lateness is), the child's log lines, and its end.
- the audio itself: a ring of blocks in shared memory (:data:`RING_SECONDS` of audio, each slot
  stamped with its block number after it is written, and a write index). A daemon frozen for a
  while loses nothing; it catches up from the ring.

A child that dies gives one clear error (the session stops in order, recordings finalised); a
daemon that dies takes the child with it (the child watches its parent). Renders never use this:
they wait on the planner at every beat, in one process, so that they repeat sample for sample.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import types
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from daemon.engine.backends import BackendChoice
from daemon.engine.engine import BOOT_TIMEOUT_S, Engine
from daemon.engine.priority import raise_thread_priority
from daemon.engine.scores import ScoreQueue
from daemon.errors import EngineError
from daemon.messages import Layer

if TYPE_CHECKING:
    from daemon.config import EngineConfig

log = logging.getLogger(__name__)

# The engine process's name in `top`, `ps` and /proc (at most 15 characters).
PROCESS_NAME = "moodscore-audio"
# Audio the shared ring holds: how long the daemon may stall before blocks are lost.
RING_SECONDS = 8.0
# The daemon's relay wakes this often to see whether the child still lives.
_POLL_S = 0.25
# After stop(): the child's fade and pyo's shutdown, then it is killed.
_STOP_TIMEOUT_S = 10.0


class _QueueLog(logging.Handler):
    """The child's log records, sent to the daemon to be logged there."""

    def __init__(self, events: Any) -> None:
        super().__init__()
        self._events = events

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self._events.put(("log", record.levelno, record.name, self.format(record)))


def _child_main(
    config: types.SimpleNamespace,
    backend: BackendChoice,
    commands: Any,
    events: Any,
    ring: Any,
    stamps: Any,
    slots: int,
) -> None:
    """The engine process: play what the daemon sends until told to stop or the daemon dies."""
    # Ctrl-C reaches the whole process group; the daemon stops the engine in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [_QueueLog(events)]
    root.setLevel(logging.INFO)
    parent = multiprocessing.parent_process()
    # Before any thread starts, so all of them (stepping, the queues' feeders) inherit it: a
    # feeder at normal priority holding the interpreter lock would hold up the stepping thread.
    priority = raise_thread_priority(config.priority, what="engine process")
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
        comm.write(PROCESS_NAME)  # how `top` and `ps` name the process
    scores = ScoreQueue()
    # The process's priority was raised above; the stepping thread has it already.
    config.priority = "normal"
    engine = Engine(
        config=cast("EngineConfig", config),
        backend=backend,
        scores=scores,
        realtime=True,
    )
    buffer_size = config.buffer_size
    data = np.frombuffer(ring, dtype=np.float32).reshape(slots, buffer_size, 2)
    stamp = np.frombuffer(stamps, dtype=np.int64)  # [0]: the write index; [1 + slot]: block

    def on_block(block: np.ndarray, audio_time: float) -> None:
        index = int(stamp[0])
        slot = index % slots
        frames = len(block)
        data[slot, :frames] = block
        stamp[1 + slot] = index + 1
        stamp[0] = index + 1
        events.put(
            (
                "block",
                index,
                round(audio_time * engine.sample_rate),
                frames,
                engine.late_blocks,
                engine.underruns,
                engine.wall_time(0.0),
                engine.playing,
                scores.last_margin_s,
            )
        )

    sent_offset: list[float | None] = [None]

    def put(kind: str, item: Any) -> None:
        # The wall clock goes ahead of any event that may be scheduled on it: the first bar's
        # beats and grid are announced before its block exists, and a daemon that did not know
        # the clock yet would send them at once (an OSC bundle tagged "immediately").
        offset = engine.wall_time(0.0)
        if offset != sent_offset[0]:
            sent_offset[0] = offset
            events.put(("wall", offset))
        events.put((kind, item))

    engine.add_bar_listener(lambda started: put("bar", started))
    engine.add_grid_listener(lambda grid: put("grid", grid))
    engine.add_note_listener(lambda notes: put("note", tuple(notes)))
    engine.add_beat_listener(lambda beat: put("beat", beat))
    engine.add_audio_listener(on_block)

    def apply(command: tuple[Any, ...]) -> bool:
        kind = command[0]
        if kind == "score":
            scores.put(command[1])
        elif kind == "patch":
            scores.patch(command[1])
        elif kind == "close":
            scores.close()
        elif kind == "end":
            engine.set_end_time(command[1])
        elif kind == "mute":
            engine.set_muted(command[1], command[2])
        elif kind == "play":
            engine.set_playing(command[1])
        elif kind == "stop":
            return False
        return True

    # Started before the engine's start(), it waits for it here. What the composer wrote
    # before the start comes first: bar 0 must not be an underrun.
    while True:
        try:
            command = commands.get(timeout=_POLL_S)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                os._exit(0)
            continue
        if command == ("primed",):
            break
        if not apply(command):
            os._exit(0)  # stopped before it started

    def serve() -> None:
        while apply(commands.get()):
            pass
        engine.stop()

    error: str | None = None
    try:
        engine.start()
        events.put(("started", engine.sample_rate, engine.buffer_size, priority))
        threading.Thread(target=serve, name="moodscore-engine-commands", daemon=True).start()
        while not engine.wait(_POLL_S):
            if parent is not None and not parent.is_alive():
                engine.stop()  # the daemon is gone: nobody listens
                break
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
    finally:
        engine.stop()
        if engine.error is not None and error is None:
            error = str(engine.error) or type(engine.error).__name__
        events.put(("finished", error, engine.late_blocks, engine.underruns))
        events.close()
        events.join_thread()
        # pyo is shut down and everything is sent: skip the interpreter's slow teardown.
        os._exit(0)


def _context() -> Any:
    """Where engine processes come from: a fork server (not a fork of the daemon, whose threads
    a fork would copy half-way) with numpy, pyo and the engine imported once, so that the
    second and later engines of a process start in a fraction of a second."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")  # Windows: a fresh interpreter each time
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "pyo", "daemon.engine.process"])
    return context


class ProcessEngine(Engine):
    """An :class:`~daemon.engine.engine.Engine` whose pyo server, band and sequencer run in a
    child process (see the module docstring); the same interface and listeners, which run on
    this process's relay thread.

    Parameters
    ----------
    config : as for :class:`~daemon.engine.engine.Engine`; ``priority`` is the child's.
    backend : the ``manual`` backend (a live run without a sound card).
    scores : the composer's queue; from :meth:`start` on it forwards to the child.
    """

    def __init__(self, *, config: EngineConfig, backend: BackendChoice, scores: ScoreQueue) -> None:
        if backend.name != "manual":
            raise EngineError(
                f'engine.process = "own" runs the manual backend only, not {backend.name}'
            )
        super().__init__(config=config, backend=backend, scores=scores, realtime=True)
        self._context = _context()
        self._commands: Any = self._context.Queue()
        self._events: Any = self._context.Queue()
        self._process: Any = None
        self._relay_thread: threading.Thread | None = None
        self._relay_id: int | None = None
        self._booted = threading.Event()
        self._slots = max(8, round(RING_SECONDS * config.sample_rate / config.buffer_size))
        self._lost_blocks = 0  # blocks overwritten in the ring before the relay read them
        self.pid: int | None = None  # the engine process, once started
        # The process starts now, while the session starts its outputs: a fresh interpreter
        # importing numpy and pyo takes seconds on a busy machine. It waits for start().
        self._launch_error: BaseException | None = None
        self._launcher = threading.Thread(
            target=self._launch, name="moodscore-engine-launch", daemon=True
        )
        self._launcher.start()

    def _launch(self) -> None:
        try:
            samples = self._slots * self.buffer_size * 2
            self._ring = self._context.RawArray("f", samples)
            self._stamps = self._context.RawArray("q", self._slots + 1)
            process = self._context.Process(
                target=_child_main,
                args=(
                    # A plain copy: the child starts without importing pydantic.
                    types.SimpleNamespace(**dataclasses.asdict(self.config)),
                    self.backend,
                    self._commands,
                    self._events,
                    self._ring,
                    self._stamps,
                    self._slots,
                ),
                name="moodscore-engine",
                daemon=True,
            )
            process.start()
            self._process = process
            self.pid = process.pid
        except Exception as exc:
            self._launch_error = exc

    # ------------------------------------------------------------------ commands

    def _send(self, command: tuple[Any, ...]) -> None:
        if self._stopped or (self._process is not None and not self._process.is_alive()):
            return
        with contextlib.suppress(ValueError, OSError):  # closed while stopping
            self._commands.put(command)

    def set_bar_tempo(self, fn: Any) -> None:
        """Not here: the tempo callback would have to run in the engine process."""
        raise EngineError(
            "an outside tempo (Link) needs the engine in the daemon's process: "
            'set engine.process = "shared"'
        )

    def set_end_time(self, seconds: float) -> None:
        """As :meth:`Engine.set_end_time`; the child cuts the last block."""
        super().set_end_time(seconds)
        self._send(("end", seconds))

    def set_muted(self, layer: Layer, muted: bool) -> None:
        """As :meth:`Engine.set_muted`, applied in the child from its next beat."""
        super().set_muted(layer, muted)
        self._send(("mute", layer, muted))

    def set_playing(self, playing: bool) -> None:
        """As :meth:`Engine.set_playing`, applied in the child at its next bar line."""
        self._play_wanted = playing
        self._send(("play", playing))

    @property
    def underruns(self) -> int:
        """Bars that started live before their score arrived (counted in the child)."""
        return self._underruns

    # ------------------------------------------------------------------ start / stop

    def start(self) -> None:
        """Start the engine process and wait until its server runs.

        Raises
        ------
        EngineError
            Started twice, or the process or its pyo server did not start.
        """
        if self._started:
            raise EngineError("the engine was already started; make a new Engine")
        self._started = True
        self._launcher.join(BOOT_TIMEOUT_S)
        if self._process is None:
            self._stop_requested.set()
            raise EngineError(
                f"could not start the engine process: {self._launch_error or 'it took too long'}"
            ) from self._launch_error
        self.scores.forward(self._send)
        self._send(("primed",))
        self._relay_thread = threading.Thread(
            target=self._relay, name="moodscore-engine-relay", daemon=True
        )
        self._relay_thread.start()
        if not self._booted.wait(BOOT_TIMEOUT_S):
            self._stop_requested.set()
            self._kill()
            raise EngineError("the engine process did not start in time; see the log")
        if self._error is not None:
            raise EngineError(f"could not start the engine process: {self._error}") from (
                self._error
            )

    def stop(self) -> None:
        """Fade out in the child, deliver the last blocks, end the process; idempotent, any
        thread (on the relay thread, from a listener, it only asks)."""
        self._stop_requested.set()
        if not self._started:
            self._launcher.join(BOOT_TIMEOUT_S)
            self._send(("stop",))
            self._kill()
            self._finished.set()
            self.close_scheduler()
            return
        if threading.get_ident() == self._relay_id:
            self._send(("stop",))
            return
        with self._stop_lock:
            if self._stopped:
                return
            self._send(("stop",))
            self._stopped = True
            relay = self._relay_thread
            if relay is not None:
                relay.join(_STOP_TIMEOUT_S)
                if relay.is_alive():
                    log.error("the engine process did not end within %.0f s of stop()", 10.0)
            self._kill()
            self._finished.set()
            self.close_scheduler()

    def _kill(self) -> None:
        process = self._process
        if process is None:
            return
        process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join(2.0)
        for channel in (self._commands, self._events):
            channel.close()
            channel.cancel_join_thread()

    # ------------------------------------------------------------------ the relay

    def _relay(self) -> None:
        """Hand the child's events and blocks to the listeners, in order, until it ends."""
        self._relay_id = threading.get_ident()
        # The hand-off to the listeners (the WebRTC audio, the recorder) must not wait its turn
        # for a core either; raised, but never real-time here: it shares the daemon's lock.
        raise_thread_priority(
            "normal" if self.config.priority == "normal" else "high", what="engine relay thread"
        )
        data = np.frombuffer(self._ring, dtype=np.float32).reshape(self._slots, self.buffer_size, 2)
        stamp = np.frombuffer(self._stamps, dtype=np.int64)
        try:
            while True:
                try:
                    event = self._events.get(timeout=_POLL_S)
                except queue.Empty:
                    if self._process.is_alive():
                        continue
                    self._died()
                    return
                kind = event[0]
                if kind == "block":
                    self._block(event, data, stamp)
                elif kind == "beat":
                    self._beat_listeners(event[1])
                elif kind == "bar":
                    self._bar_listeners(event[1])
                elif kind == "grid":
                    self._grid_listeners(event[1])
                elif kind == "note":
                    self._note_listeners(event[1])
                elif kind == "wall":
                    self._wall_offset = event[1]
                elif kind == "log":
                    logging.getLogger(event[2]).log(event[1], "%s", event[3])
                elif kind == "started":
                    _, self.sample_rate, self.buffer_size, self.priority = event
                    self._booted.set()
                elif kind == "finished":
                    _, error, self.late_blocks, self._underruns = event
                    if error is not None:
                        self._error = EngineError(error)
                    return
        except Exception as exc:
            self._error = exc
            log.exception("the engine relay failed at %.3f s", self.audio_time)
            self._stop_requested.set()
            self._send(("stop",))
        finally:
            self._booted.set()
            self._finished.set()

    def _block(self, event: tuple[Any, ...], data: np.ndarray, stamp: np.ndarray) -> None:
        _, index, start, frames, late, underruns, wall_offset, playing, margin = event
        slot = index % self._slots
        block = data[slot, :frames].copy()
        if stamp[1 + slot] != index + 1:
            # The daemon stalled for longer than the ring holds: this block is gone.
            self._lost_blocks += 1
            if self._lost_blocks in (1, 10, 100) or self._lost_blocks % 1000 == 0:
                log.error(
                    "the daemon fell %.0f s behind its engine process: %d audio blocks lost",
                    RING_SECONDS,
                    self._lost_blocks,
                )
        else:
            self._audio_listeners(block, start / self.sample_rate)
            # As the engine counts its late blocks: after a listener with one block of buffer
            # needed it, once the stream started (live_ahead_s rendered).
            end = (start + self.buffer_size) / self.sample_rate
            streaming = end > self.config.live_ahead_s
            if wall_offset is not None and streaming and time.perf_counter() > wall_offset + end:
                self.late_handoffs += 1
        self._wall_offset = wall_offset
        self.late_blocks = late
        self._underruns = underruns
        self._playing = playing
        self.scores.last_margin_s = margin
        self._position = start + self.buffer_size
        self.blocks += 1

    def _died(self) -> None:
        code = self._process.exitcode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._error = EngineError(
            f"the engine process ended unexpectedly ({how}); the music stopped. Run again, or "
            'set engine.process = "shared" to keep the engine in the daemon\'s process'
        )
        self._stop_requested.set()


__all__ = ["PROCESS_NAME", "RING_SECONDS", "ProcessEngine"]
