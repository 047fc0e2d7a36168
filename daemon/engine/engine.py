"""The audio engine: a pyo server, the band, and the sample clock that drives both.

Threads. pyo is not thread-safe, so every pyo object is created and touched by one thread:

- ``manual`` / ``offline``: the engine's own thread boots the server, builds the band, steps
  ``Server.process()`` block by block (paced to the wall clock for ``manual``, as fast as possible
  for ``offline``) and shuts the server down.
- ``device`` / ``jack``: :meth:`Engine.start` boots the server and builds the band in the calling
  thread before the server starts; afterwards only pyo's audio thread touches them, through the
  per-block callback (``Server.setCallback``).

Either way one per-block tick drives everything: it runs before the block is computed, advances
the :class:`~daemon.engine.sequencer.Sequencer` (bars, beats, notes) and hands the finished audio
to the audio listeners. Other threads talk to the engine only through thread-safe flags and the
:class:`~daemon.engine.scores.ScoreQueue`.

The engine stays whole (about 730 lines): the sample clock, the per-block tick and the two ways
pyo runs it (a stepping thread of its own, or pyo's audio callback) share every piece of its
state, and only one audio thread ever touches that state; split, the same fields would be reached
across modules.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.clock import (
    AudioListener,
    BarGrid,
    BarListener,
    BeatListener,
    GridListener,
    Listeners,
    NoteListener,
    ScheduledNote,
    Scheduling,
)
from daemon.engine.backends import BackendChoice
from daemon.engine.envelopes import STOP_FADE_S
from daemon.engine.priority import raise_thread_priority
from daemon.engine.scores import ScoreQueue
from daemon.engine.sequencer import BarTempo, Missing, Sequencer
from daemon.errors import EngineError
from daemon.messages import LAYER_ORDER, BarScore, BarStarted, Beat, Layer

if TYPE_CHECKING:
    # Only a type here: the engine process (daemon.engine.process) starts without pydantic.
    from daemon.config import EngineConfig

log = logging.getLogger(__name__)


# After the score queue closes with no end time set, let notes and reverb ring this long.
CLOSED_TAIL_S = 2.0
# How long start() waits for the engine thread to boot pyo and build the band.
BOOT_TIMEOUT_S = 30.0
# A render waiting for a score wakes this often to see whether it should stop.
_POLL_S = 0.05
# The stepping thread holds the GIL almost all the time. Anything on it that releases and
# retakes the GIL (numpy on more than 500 elements, file or socket I/O in a listener) defeats
# CPython's forced switching, and the event loop was measured waiting 0.7 s for the GIL. A real
# sleep this often hands the GIL over for certain; it costs a few % of render speed.
_YIELD_EVERY_S = 0.01
_YIELD_S = 0.0001

# The device/jack clock estimate: the earliest block seen in this many blocks fixes the offset
# between audio time and the wall clock (callbacks only ever run late, never early).
_CLOCK_WINDOW_BLOCKS = 256

# pyo attaches new objects to the most recently booted server, so two servers in one process
# would share a graph: only one Engine may hold a server at a time.
_server_guard = threading.Lock()
_server_owner: Engine | None = None


def _claim_server(engine: Engine) -> None:
    global _server_owner
    with _server_guard:
        if _server_owner is not None:
            raise EngineError(
                "another Engine is still running in this process (pyo runs one server at a "
                "time); stop it first"
            )
        _server_owner = engine


def _release_server(engine: Engine) -> None:
    global _server_owner
    with _server_guard:
        if _server_owner is engine:
            _server_owner = None


class Engine(Scheduling):
    """Plays bar scores through the pyo band on one sample clock; the
    :class:`~daemon.clock.MusicClock` every output follows.

    Parameters
    ----------
    config : sample rate, block size, master gain, reverb and the live look-ahead.
    backend : the server mode, from :func:`~daemon.engine.backends.choose_backend`.
    scores : where the composer puts each bar's score, at least one bar ahead.
    realtime : live playback: never wait for a score (a late bar replays the previous bar's notes
        and counts an underrun). False (renders): wait for every bar's score, so the same scores
        always give the same samples; needs the ``manual`` or ``offline`` backend.

    Bar 0 starts at audio time 0; bar b+1 starts ``round(beats_per_bar * 60 / bpm * sr)`` samples
    after bar b, with bar b's plan. Listeners run on the engine (audio) thread and must be quick:
    hand work to another thread or the event loop (``loop.call_soon_threadsafe``). Beats and bars
    are announced from the block that contains them, before it is computed: in ``manual`` mode
    that is up to ``live_ahead_s`` before the audio is handed on, so schedule by ``audio_time``.

    Attributes
    ----------
    sample_rate, buffer_size : what the server really runs at, once started (JACK imposes its
        own rate and period; the config's values are requests).
    blocks : blocks computed so far.
    backend : the server mode in use.
    """

    def __init__(
        self,
        *,
        config: EngineConfig,
        backend: BackendChoice,
        scores: ScoreQueue,
        realtime: bool,
    ) -> None:
        if not realtime and backend.name in ("device", "jack"):
            raise EngineError(
                f"the {backend.name} backend can only play live; render with the offline backend"
            )
        self.config = config
        self.backend = backend
        self.scores = scores
        self.realtime = realtime
        self.sample_rate = config.sample_rate
        self.buffer_size = config.buffer_size
        self.blocks = 0
        self._position = 0  # samples computed and delivered so far: the clock
        self._end_seconds: float | None = None
        self._end_sample: int | None = None
        self._fade_sample: int | None = None  # where the end-of-audio fade starts
        self._fading = False
        self._stop_at: int | None = None  # last sample of the stop fade, once it began
        self._stop_requested = threading.Event()
        self._finished = threading.Event()
        self._started = False
        self._stopped = False
        self._stop_lock = threading.Lock()
        self._engine_thread_id: int | None = None  # manual/offline stepping thread
        self._audio_thread_id: int | None = None  # pyo's audio thread (device/jack)
        self._beat_listeners: Listeners[[Beat]] = Listeners("beat")
        self._bar_listeners: Listeners[[BarStarted]] = Listeners("bar")
        self._audio_listeners: Listeners[[np.ndarray, float]] = Listeners("audio")
        self._grid_listeners: Listeners[[BarGrid]] = Listeners("grid")
        self._note_listeners: Listeners[[Sequence[ScheduledNote]]] = Listeners("note")
        self.late_blocks = 0  # live manual mode: blocks handed on after their wall-clock time
        # engine.process = "own": blocks the engine process made in time but this process handed
        # to its listeners late (it was busy); in one process late_blocks counts those too.
        self.late_handoffs = 0
        self.priority = "normal"  # what the audio thread got (engine.priority asks)
        # device/jack: callbacks that came more than two periods after the one before (the card
        # or JACK had nothing to play in between): an estimate of xruns.
        self.xruns = 0
        self._last_callback: float | None = None
        # wall clock (time.perf_counter) minus audio time; see wall_time()
        self._wall_offset: float | None = None
        self._clock_window: list[float] = [float("inf"), float("inf")]
        self._clock_count = 0
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._band: Any = None
        self._sequencer: Sequencer | None = None
        self._underruns = 0  # the count, kept once the sequencer is released
        self._out: np.ndarray | None = None
        self._error: BaseException | None = None
        # Live control (daemon.control): mutes apply on the next beat, transport at the next
        # bar. Other threads set the wanted state; the engine thread applies it on the grid.
        self._muted: frozenset[Layer] = frozenset()  # wanted
        self._muted_applied: frozenset[Layer] = frozenset()
        self._play_wanted = True
        self._playing = True  # what the bar now sounding does
        self._transport_pending = False
        self._block_position = 0  # first sample of the block being prepared
        self._bar_tempo: BarTempo | None = None

    # ------------------------------------------------------------------ listeners

    def add_beat_listener(self, fn: BeatListener) -> None:
        """Call ``fn(beat)`` for every beat, on the engine thread, before the beat sounds."""
        self._beat_listeners.add(fn)

    def add_bar_listener(self, fn: BarListener) -> None:
        """Call ``fn(bar_started)`` at every bar start, right after the bar's score was taken."""
        self._bar_listeners.add(fn)

    def add_grid_listener(self, fn: GridListener) -> None:
        """Call ``fn(grid)`` at every bar start with where the bar's beats fall (tempo ramp
        included), before any of them sounds: MIDI clock and tempo maps follow it."""
        self._grid_listeners.add(fn)

    def add_note_listener(self, fn: NoteListener) -> None:
        """Call ``fn(notes)`` at every bar start with the bar's notes placed on the sample clock.

        Notes arrive before they sound (up to a bar ahead), each with its onset and note-off in
        samples and in audio time, so a MIDI output schedules them by audio time.
        """
        self._note_listeners.add(fn)

    def add_audio_listener(self, fn: AudioListener) -> None:
        """Call ``fn(block, audio_time)`` with every block of output.

        ``block`` : np.ndarray [shape=(n, 2), dtype=float32], a copy the listener may keep;
        ``audio_time`` is the time of its first sample. The last block of a set end time is
        shorter than the buffer size.
        """
        self._audio_listeners.add(fn)

    def set_bar_tempo(self, fn: BarTempo) -> None:
        """Let an outside clock (a Link session) set each bar's tempo: ``fn(bar, audio_time,
        plan)`` is called on the audio thread as the bar starts (its downbeat's audio time, up to
        ``live_ahead_s`` before it sounds) and returns the bar's bpm, which then jumps on the
        downbeat (no ramp). It must return at once; one that raises keeps the plan's tempo.
        Before :meth:`start`."""
        if self._started:
            raise EngineError("set_bar_tempo() must come before start()")
        self._bar_tempo = fn

    # ------------------------------------------------------------------ state

    @property
    def audio_time(self) -> float:
        """Seconds of audio computed so far (the sample clock)."""
        return self._position / self.sample_rate

    def wall_time(self, audio_time: float) -> float | None:
        """The ``time.perf_counter()`` at which ``audio_time`` is heard, or None before the clock
        runs (and always in an offline render, which has no wall clock).

        ``manual``: the pacing clock (audio time 0 = when stepping began). ``device``/``jack``:
        estimated from the callbacks (the earliest of the recent ones, plus one block of output
        latency), so it follows the sound card's clock as it drifts against the system's.
        """
        offset = self._wall_offset
        if offset is None:
            return None
        return audio_time + offset

    @property
    def end_time(self) -> float | None:
        """The audio time the engine stops at, once one is set (see :meth:`set_end_time`)."""
        return self._end_seconds

    @property
    def stopping(self) -> bool:
        """True once a stop was requested (the stop fade is playing or has played)."""
        return self._stop_requested.is_set()

    @property
    def muted(self) -> frozenset[Layer]:
        """Layers muted by :meth:`set_muted` (applied from the next beat)."""
        return self._muted

    def set_muted(self, layer: Layer, muted: bool) -> None:
        """Mute or unmute ``layer`` with a one-beat fade from the next beat; any thread."""
        self._muted = self._muted | {layer} if muted else self._muted - {layer}

    @property
    def playing(self) -> bool:
        """Whether the bar now sounding plays (False after a transport stop took effect)."""
        return self._playing

    def set_playing(self, playing: bool) -> None:
        """Transport: False fades out from the next bar line and stays silent while the clock
        (bars, beats) runs on; True comes back in at the next bar line. Any thread."""
        self._play_wanted = playing

    @property
    def underruns(self) -> int:
        """Bars that started live before their score arrived."""
        sequencer = self._sequencer
        return self._underruns if sequencer is None else sequencer.underruns

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the engine thread, if one did."""
        return self._error

    @property
    def finished(self) -> bool:
        """True once the end time was reached or the engine stopped."""
        return self._finished.is_set()

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Boot the pyo server and start playing.

        Raises
        ------
        EngineError
            Started twice, or pyo could not boot the server.
        """
        if self._started:
            raise EngineError("the engine was already started; make a new Engine")
        _claim_server(self)
        self._started = True
        if self.backend.name in ("manual", "offline"):
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run_stepping, args=(ready,), name="moodscore-engine", daemon=True
            )
            self._thread.start()
            if not ready.wait(BOOT_TIMEOUT_S):
                self._stop_requested.set()
                raise EngineError("the pyo server did not boot in time; see the log")
            if self._error is not None:
                raise EngineError(f"could not start the pyo server: {self._error}") from (
                    self._error
                )
        else:
            self._start_callback_server()

    def set_end_time(self, seconds: float) -> None:
        """Stop after exactly ``seconds`` of audio; the last block is cut to size.

        The master fades out over the last 30 ms. If the clock is already past ``seconds``, the
        engine stops at the next block boundary.
        """
        self._end_seconds = max(seconds, 0.0)
        end = round(self._end_seconds * self.sample_rate)
        self._fade_sample = max(end - round(STOP_FADE_S * self.sample_rate), 0)
        self._end_sample = end

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the engine has finished; True if it has."""
        return self._finished.wait(timeout)

    def stop(self) -> None:
        """Fade out (~30 ms), stop stepping, stop and shut down the server, join the thread.

        Idempotent and safe from any thread. Called on the engine's own thread (from a
        listener) it only requests the stop; the fade still plays, and a later call from
        another thread completes the shutdown.
        """
        self._stop_requested.set()
        if not self._started:
            self._finished.set()
            self.close_scheduler()
            return
        if threading.get_ident() in (self._engine_thread_id, self._audio_thread_id):
            return
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            if self._thread is not None:
                self._thread.join(timeout=10.0)
                if self._thread.is_alive():
                    log.error("engine thread did not end within 10 s of stop()")
            else:
                self._stop_callback_server()
            self.close_scheduler()

    # ------------------------------------------------------------------ shared tick

    def _build(self, server: Any) -> None:
        """Build the band and the sequencer on a booted server (in the thread that owns pyo)."""
        from daemon.engine.band import Band

        # JACK imposes its own rate and period; the clock follows what the server really runs.
        self.sample_rate = int(server.getSamplingRate())
        self.buffer_size = int(server.getBufferSize())
        if self._end_seconds is not None:
            self.set_end_time(self._end_seconds)
        nchnls = 2
        addr = int(server.getOutputAddr(), 16)
        pointer = ctypes.cast(addr, ctypes.POINTER(ctypes.c_float))
        # pyo's interleaved output buffer; valid until the server shuts down.
        self._out = np.ctypeslib.as_array(pointer, shape=(self.buffer_size * nchnls,))
        self._band = Band(
            sample_rate=self.sample_rate,
            master_gain=self.config.master_gain,
            reverb=self.config.reverb,
        )
        self._sequencer = Sequencer(
            sample_rate=self.sample_rate,
            scores=self._take_score,
            sink=self._band,
            on_bar=self._emit_bar,
            on_beat=self._emit_beat,
            on_end=self._music_ended,
            on_grid=self._grid_listeners,
            on_notes=self._note_listeners,
            ramp=self.config.tempo_ramp,
            patches=self.scores.take_patches,
            gate=None if self.realtime else self._wait_cleared,
            tempo=self._bar_tempo,
        )

    def _new_server(self, audio: str) -> Any:
        import pyo

        server = pyo.Server(
            sr=self.config.sample_rate,
            nchnls=2,
            buffersize=self.config.buffer_size,
            duplex=0,
            audio=audio,
            jackname="moodscore",
            verbosity=1,  # errors only; warnings go through our own logging
        )
        if audio == "portaudio" and self.backend.device is not None:
            server.setOutputDevice(self.backend.device)  # engine.device / --device
        # MIDI is mirrored by the MIDI output stage with mido; pyo must not open PortMidi.
        server.deactivateMidi()
        # Noise and other random objects draw from this seed: renders repeat sample for sample.
        server.setGlobalSeed(1)
        return server

    def _begin_block(self, position: int) -> bool:
        """Everything before the block starting at sample ``position`` computes.

        Returns False when that block should not play: the end time is reached or the stop fade
        is over.
        """
        assert self._sequencer is not None and self._band is not None
        self._block_position = position
        end = self._end_sample
        if end is not None and position >= end:
            return False
        if self._stop_requested.is_set():
            if self._stop_at is None:
                # No new bars, beats or notes; fade the master and play the fade out.
                self._stop_at = position + round(STOP_FADE_S * self.sample_rate)
                self._band.fade_out(STOP_FADE_S)
                self._fading = True
            return position < self._stop_at
        fade = self._fade_sample
        if (
            not self._fading
            and fade is not None
            and end is not None
            and position + self.buffer_size > fade
        ):
            # Reach silence exactly at the end sample.
            self._fading = True
            self._band.fade_out(min(max((end - position) / self.sample_rate, 0.001), STOP_FADE_S))
        self._band.housekeeping(position)
        self._sequencer.advance(position, self.buffer_size, limit=end)
        return True

    def _take_score(self, bar: int) -> BarScore | Missing:
        got = self._next_score(bar)
        # Transport is decided bar by bar: a stopped bar keeps its plan (the clock runs on) and
        # loses its notes, so MIDI and the band both fall silent.
        if self._play_wanted != self._playing and not self._fading:
            self._playing = self._play_wanted
            self._transport_pending = True
        if isinstance(got, BarScore) and not self._playing and got.notes:
            return dataclasses.replace(got, notes=())
        return got

    def _next_score(self, bar: int) -> BarScore | Missing:
        if self.realtime:
            score = self.scores.get(bar, timeout=0)
            if score is not None:
                return score
            return Missing.CLOSED if self.scores.closed else Missing.LATE
        # A render waits for every bar (the composer waits on analysis), but keeps an ear on stop.
        while not self._stop_requested.is_set():
            score = self.scores.get(bar, timeout=_POLL_S)
            if score is not None:
                return score
            if self.scores.closed:
                return Missing.CLOSED
            if len(self.scores):
                log.warning("bar %d was skipped by the composer; replaying the previous bar", bar)
                return Missing.LATE
        return Missing.CLOSED

    def _wait_cleared(self, audio_time: float) -> None:
        """A render waits at every bar line and beat until the planner has answered everything
        before it (see :mod:`daemon.engine.scores`), keeping an ear on stop."""
        while not self._stop_requested.is_set():
            if self.scores.wait_cleared(audio_time, _POLL_S):
                return

    def _music_ended(self, downbeat: int) -> None:
        if self._end_sample is None and not self._stop_requested.is_set():
            log.info("score queue closed; letting the last notes ring for %.1f s", CLOSED_TAIL_S)
            self.set_end_time(downbeat / self.sample_rate + CLOSED_TAIL_S)

    def _apply_transport(self, plan_bpm: float) -> None:
        """At a bar whose transport changed: fade the master out over a beat, or back in."""
        band = self._band
        if band is None or self._fading:
            return
        if self._playing:
            band.fader.time = 0.01
            band.fader.value = self.config.master_gain
        else:
            band.fader.time = 60.0 / plan_bpm
            band.fader.value = 0.0

    def _apply_mutes(self, *, at: int, beat_s: float, bar_start: bool) -> None:
        """Move the faders of layers whose mute changed (and, at a bar start, hold muted layers
        down after the band set the bar's layer gains) from sample ``at``."""
        band, sequencer = self._band, self._sequencer
        if band is None or sequencer is None or sequencer.plan is None:
            return
        wanted = self._muted
        changed = wanted ^ self._muted_applied
        if not changed and not (bar_start and wanted):
            return
        self._muted_applied = wanted
        layers = sequencer.plan.layers
        for layer in LAYER_ORDER:
            if layer not in changed and not (bar_start and layer in wanted):
                continue
            target = 0.0 if layer in wanted or layers < layer.order else 1.0
            fader = band.faders[layer]
            if bar_start and layer not in changed:
                if fader.target != target:  # the band just opened a muted layer: close it
                    fader.move(target, block_start=self._block_position, at=at, seconds=0.0)
                continue
            fader.move(target, block_start=self._block_position, at=at, seconds=beat_s)

    def _emit_beat(self, beat: Beat) -> None:
        if self._muted is not self._muted_applied:
            self._apply_mutes(
                at=round(beat.audio_time * self.sample_rate),
                beat_s=60.0 / beat.bpm,
                bar_start=False,
            )
        self._beat_listeners(beat)

    def _emit_bar(self, started: BarStarted) -> None:
        if self._transport_pending:
            self._transport_pending = False
            self._apply_transport(started.plan.bpm)
        if self._muted_applied:
            self._apply_mutes(
                at=round(started.audio_time * self.sample_rate),
                beat_s=60.0 / started.plan.bpm,
                bar_start=True,
            )
        self._bar_listeners(started)

    def _deliver(self, start: int) -> None:
        """Hand the output buffer (the block that began at ``start``) to the audio listeners."""
        assert self._out is not None
        frames = self.buffer_size
        end = self._end_sample
        if end is not None:
            frames = min(frames, end - start)
        if frames <= 0 or not self._audio_listeners:
            return
        # bytearray() copies without releasing the GIL, unlike ndarray.copy() at this size (see
        # _YIELD_EVERY_S); in device/jack mode that keeps the audio thread from losing it.
        data = bytearray(self._out.data)
        block = np.frombuffer(data, dtype=np.float32).reshape(self.buffer_size, 2)[:frames]
        self._audio_listeners(block, start / self.sample_rate)

    # ------------------------------------------------------------------ manual / offline

    def _run_stepping(self, ready: threading.Event) -> None:
        self._engine_thread_id = threading.get_ident()
        server = None
        try:
            try:
                server = self._new_server("manual").boot()
                server.start()
                self._server = server
                self._build(server)
            except Exception as exc:
                self._error = exc
                log.exception("could not boot pyo in manual mode")
                return
            finally:
                ready.set()
            self._step_loop(server)
        except BaseException as exc:
            self._error = exc
            log.exception("the audio engine failed at %.3f s", self.audio_time)
        finally:
            # Drop the pyo objects first, so they leave the server's graph before it shuts down.
            self._release()
            if server is not None:
                try:
                    server.stop()
                    server.shutdown()
                except Exception:
                    log.exception("pyo server shutdown failed")
            _release_server(self)
            self._finished.set()

    def _release(self) -> None:
        if self._sequencer is not None:
            self._underruns = self._sequencer.underruns
        self._sequencer = None
        self._band = None
        self._out = None
        self._server = None

    def _step_loop(self, server: Any) -> None:
        paced = self.backend.name == "manual"
        if paced:
            self.priority = raise_thread_priority(self.config.priority)
        ahead_s = self.config.live_ahead_s
        block_s = self.buffer_size / self.sample_rate
        fill = round(ahead_s * self.sample_rate)  # samples rendered before the stream starts
        wall_start = time.perf_counter()
        if paced:
            self._wall_offset = wall_start
        next_yield = wall_start + _YIELD_EVERY_S
        while True:
            position = self._position
            now = time.perf_counter()
            if paced and not self._stop_requested.is_set():
                lead = position / self.sample_rate - (now - wall_start)
                if lead > ahead_s:
                    # Pacing only: the musical clock is the sample counter, never this sleep.
                    self._stop_requested.wait(min(lead - ahead_s + block_s * 0.5, 0.05))
                    next_yield = time.perf_counter() + _YIELD_EVERY_S
                    continue
            if now >= next_yield:
                time.sleep(_YIELD_S)
                next_yield = time.perf_counter() + _YIELD_EVERY_S
            if not self._begin_block(position):
                break
            server.process()
            self._deliver(position)
            end = position + self.buffer_size
            if paced and position < fill <= end:
                # The stream starts once the engine is ``live_ahead_s`` ahead: whatever the
                # first blocks cost (pyo warming up, the rest of the daemon still starting while
                # the GIL is busy), no listener heard a gap before there was a stream. Its wall
                # clock starts there, with the whole lead in hand.
                wall_start = time.perf_counter() - (end / self.sample_rate - ahead_s)
                self._wall_offset = wall_start
            elif paced and end > fill and time.perf_counter() - wall_start > end / self.sample_rate:
                # Handed on after a listener with one block of buffer needed it: a gap.
                self.late_blocks += 1
            self._position = position + self.buffer_size
            self.blocks += 1

    # ------------------------------------------------------------------ device / jack

    def _start_callback_server(self) -> None:
        audio = "portaudio" if self.backend.name == "device" else "jack"
        try:
            server = self._new_server(audio)
            self._server = server
            server.boot()
            if not server.getIsBooted():
                raise EngineError(f"pyo could not boot the {audio} server; try --backend manual")
            self._build(server)
            server.setCallback(self._callback)
            server.start()
        except EngineError:
            self._abandon_callback_server()
            raise
        except Exception as exc:
            self._abandon_callback_server()
            raise EngineError(
                f"could not start pyo on {audio}: {exc}; try --backend manual"
            ) from exc

    def _abandon_callback_server(self) -> None:
        server = self._server
        self._release()
        if server is not None:
            try:
                server.shutdown()
            except Exception:
                log.exception("pyo server shutdown failed")
        _release_server(self)
        self._finished.set()

    def _callback(self) -> None:
        """pyo's per-block callback on its audio thread (device/jack)."""
        if self._finished.is_set():
            return
        self._audio_thread_id = threading.get_ident()
        try:
            position = self._position
            self._track_clock(position)
            if self.blocks > 0:
                # The buffer still holds the previous block: pyo calls us before computing.
                self._deliver(position - self.buffer_size)
            if not self._begin_block(position):
                self._finished.set()
                return
            self._position = position + self.buffer_size
            self.blocks += 1
        except Exception as exc:
            self._error = exc
            log.exception("audio callback failed at %.3f s", self.audio_time)
            if self._band is not None:
                self._band.fade_out(STOP_FADE_S)
            self._finished.set()

    def _track_clock(self, position: int) -> None:
        # Each callback runs a little after its period began and never before: the smallest
        # (now - audio time) over a window is the truest offset. Two half-windows let it follow
        # a drifting card clock. The block computed now is heard one block later.
        now = time.perf_counter()
        last, self._last_callback = self._last_callback, now
        if last is not None and now - last > 2.0 * self.buffer_size / self.sample_rate:
            self.xruns += 1
        observed = now - position / self.sample_rate
        window = self._clock_window
        window[1] = min(window[1], observed)
        self._clock_count += 1
        if self._clock_count >= _CLOCK_WINDOW_BLOCKS // 2:
            window[0], window[1] = window[1], float("inf")
            self._clock_count = 0
        self._wall_offset = min(window) + self.buffer_size / self.sample_rate

    def _stop_callback_server(self) -> None:
        # Let the audio thread play the fade, then stop pyo from this thread.
        self._finished.wait(0.03 + 4 * self.buffer_size / self.sample_rate + 0.2)
        server = self._server
        try:
            if server is not None:
                server.stop()
                time.sleep(0.05)  # as pyo's own Server.__del__ does between stop and shutdown
            # The audio thread no longer calls us: drop the pyo objects, then shut down.
            self._release()
            if server is not None:
                server.shutdown()
        except Exception:
            log.exception("pyo server shutdown failed")
        _release_server(self)
        self._finished.set()
