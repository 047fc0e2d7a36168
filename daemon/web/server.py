"""The daemon's web server (aiohttp): the OBS page, the control panel, WebRTC signalling and a
small JSON API.

Routes
------
``GET /``
    The OBS page: a full-window video that plays the WebRTC stream (Opus audio + VP8/H.264
    visuals) by itself. ``?transparent=1`` streams the visuals with a transparent background
    (for overlays); ``?token=...`` where a token is needed.
``GET /panel``
    The control panel.
``POST /api/offer``
    ``{"sdp": ..., "type": "offer", "transparent": false}`` -> the answer, same shape. The
    offer must carry the browser's ICE candidates (wait for gathering to complete).
``POST /api/camera``
    A browser's offer that *sends* its camera (same shape as ``/api/offer``) -> the answer. Once
    the first picture arrives, the session switches its source to that camera (the music plays
    on); ``source`` in the state then reads ``browser camera WxH``. A later camera replaces it;
    when the browser stops sending, the music goes on in the last mood.
``GET /api/state``
    The control hub's state (valence, arousal, scene, bpm, layers, key, mode, source, overrides,
    muted, playing, bar, and ``cue``: the last cue the music answered) plus ``audio_time``,
    ``analysis`` (the newest window's valence and arousal, before smoothing), ``viewers``
    (connected now), ``connections`` (ever),
    ``video_streams`` (visuals streams being encoded now) and ``late_blocks`` (audio blocks the
    engine handed on late); ``delays``: each output's delay in ms (README: "Delays").
``GET /api/beats``
    The recent beats as Unix milliseconds at the reference (the engine's sound), for the panel's
    calibration page (:mod:`daemon.web.calibration`).
``GET /api/info``
    What the panel offers: scenes, layers, command names, stinger kinds, the stream's size and
    rate.
``GET /api/teach``
    The game mode's teaching state: seconds taught per scene, the batch being collected, the
    reading now and its confidence, whether the adapted head reads (null without game mode).
``POST /api/teach`` ``{"scene": "combat", "seconds": 5}``, ``POST /api/teach/undo``
    Teach the next seconds as a scene; drop the last batch (as ``cmd/teach``, ``cmd/teach_undo``).
``POST /api/teach`` ``{"scene": "menu", "file": "clip.mp4", "start": 90, "seconds": 30}``
    Teach a stretch of a recording, read at once (the token is needed: it opens a file).
``GET /api/profiles``, ``GET /api/profile[?game=NAME]``, ``POST /api/profile``
    Every saved game profile; export this game's (or NAME's) as one file; import one (it reads
    from the next bar; a profile made on another scene model is refused, 400).
``POST /api/obs/scene`` ``{"scene": NAME}``
    The OBS page reports OBS's scene: with ``[game] auto_profile`` it picks the game profile.
``POST /api/<command>``
    One control command (``mood``, ``scene``, ``tempo``, ``layers``, ``key``, ``mute``,
    ``transport``, ``stinger``, ``source``, ``delay``, ``teach``, ``game``) with the same
    payload as MQTT's ``cmd/<command>``: a JSON object or a bare value. Answers ``{"ok": true,
    "message": "ok"}``, or status 400 (404 for an unknown command) with the reason.

Access (:mod:`daemon.web.access`). The ``Host`` header must name this server (421 otherwise:
DNS rebinding); clients beyond this machine need the token (401); state changes and WebRTC offers
come from the daemon's own pages or carry the token (403: other web pages, forms, ``no-cors``);
switching the source to a camera, screen or file needs the token even from this machine (403),
unless ``web.trust_loopback_sources``; requests are rate-limited per client (429) and bodies
bounded (413). No CORS header is ever sent. The token (``?token=`` or ``Authorization: Bearer``)
is ``web.token``, or a random one made at start, in the panel's URL in the log.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.clock import MusicClock
from daemon.config import VisualsConfig, WebConfig
from daemon.control.commands import (
    COMMAND_NAMES,
    CommandError,
    SourceCommand,
    TeachCommand,
    parse_command,
)
from daemon.control.hub import ControlHub
from daemon.errors import ConfigError, MoodscoreError
from daemon.logs import RateLimitedLog
from daemon.messages import LAYER_ORDER, STINGER_KINDS, Mood
from daemon.outputs.base import Output, Stage
from daemon.outputs.webrtc import (
    AudioRing,
    LiveVisuals,
    PeerHub,
    VideoFormat,
    allow_loopback_candidates,
)
from daemon.visuals import VisualTimeline
from daemon.web.access import AccessPolicy, is_loopback
from daemon.web.calibration import BeatTimes
from daemon.web.camera import BrowserCamera, answer_camera
from daemon.web.teach import add_teach_routes

log = logging.getLogger("moodscore.web")

# Set on each request by the guard: whether it carries the token.
AUTHORISED = web.RequestKey("authorised", bool)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 64 * 1024  # an SDP offer is a few KB; commands far less


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT``, ``PORT`` or ``[v6]:PORT`` -> (host, port); a missing host is
    127.0.0.1.

    Raises
    ------
    ConfigError
        Not an address with a port in 0-65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"--web {text!r} is not HOST:PORT (e.g. 127.0.0.1:8080 or :8090)")
    return host, port


class WebServer(Output):
    """The aiohttp app and the WebRTC viewers of one live session: an output of its clock.

    Parameters
    ----------
    hub : the session's control hub (commands, state, a browser camera as the source).
    web_config : host, port and token.
    visuals : size and rate of the visuals stream.
    latest_mood : the newest analysis window (the panel shows it before smoothing).
    any_port_if_busy : when the configured port is taken, warn and listen on a free port
        instead (for the configured default; a port the user asked for is an error).

    :meth:`attach` taps the clock's audio for the viewers and its grids and notes for the
    visuals; :meth:`start` listens (before the music starts); :meth:`aclose` closes every
    viewer, then stops serving.
    """

    stage = Stage.PEERS
    name = "web"
    delay_section = "web"

    def __init__(
        self,
        *,
        hub: ControlHub,
        web_config: WebConfig,
        visuals: VisualsConfig,
        latest_mood: Callable[[], Mood | None] = lambda: None,
        any_port_if_busy: bool = False,
    ) -> None:
        self.control = hub
        self.host = web_config.host
        self.port = web_config.port
        self.delay_s = web_config.delay_ms / 1000.0
        self.beat_times = BeatTimes()
        # Always a token: other machines need it, and so does a capture source from this one.
        self.token = web_config.token or secrets.token_urlsafe(12)
        self.access = AccessPolicy(
            bound_host=self.host,
            token=self.token,
            allowed_hosts=web_config.allowed_hosts,
            trust_loopback_sources=web_config.trust_loopback_sources,
        )
        self._video = VideoFormat(width=visuals.width, height=visuals.height, fps=visuals.fps)
        self._worker_process = visuals.worker_process
        self._latest_mood = latest_mood
        self._any_port_if_busy = any_port_if_busy
        self.ring = AudioRing(sample_rate=48000)
        self.timeline = VisualTimeline(keep_s=30.0)
        self._visuals: LiveVisuals | None = None
        self._peers: PeerHub | None = None
        self._camera_tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.refused = 0  # requests refused by the access rules
        self._refusal_log = RateLimitedLog(log)
        self.app = self._build_app()

    def _attach(self, clock: MusicClock) -> None:
        self.ring.configure(clock.sample_rate)
        self.timeline.attach(clock)
        self.beat_times.attach(clock)
        self._visuals = LiveVisuals(
            timeline=self.timeline,
            clock=clock,
            video=self._video,
            worker_process=self._worker_process,
        )
        self._peers = PeerHub(ring=self.ring, visuals=self._visuals, clock=clock)
        clock.add_audio_listener(self._tap)

    @property
    def visuals(self) -> LiveVisuals:
        """The shared visuals stream (once attached)."""
        if self._visuals is None:
            raise RuntimeError("the web server is not attached to a clock")
        return self._visuals

    @property
    def peers(self) -> PeerHub:
        """The viewers' connections (once attached)."""
        if self._peers is None:
            raise RuntimeError("the web server is not attached to a clock")
        return self._peers

    def _tap(self, block: Any, audio_time: float) -> None:
        if audio_time == 0.0:
            # The first block: only now is the engine's real rate known (JACK imposes its own).
            self.ring.configure(self.clock.sample_rate)
        self.ring.write(block, audio_time)

    @property
    def url(self) -> str:
        """The OBS page's URL (with the token when the server is open beyond this machine; on
        loopback it stays the same from run to run, for OBS's settings)."""
        return self._url("/", token=not is_loopback(self.host))

    @property
    def panel_url(self) -> str:
        """The control panel's URL, with the token (a source switch to a camera needs it)."""
        return self._url("/panel", token=True)

    def _url(self, path: str, *, token: bool) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        query = f"?token={self.token}" if token else ""
        return f"http://{host}:{self.port}{path}{query}"

    # -- app --------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/", self._page("index.html"))
        app.router.add_get("/panel", self._page("panel.html"))
        app.router.add_get("/favicon.ico", self._page("favicon.svg"))
        app.router.add_static("/static/", STATIC_DIR, show_index=False)
        app.router.add_post("/api/offer", self._offer)
        app.router.add_post("/api/camera", self._camera)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/api/beats", self._beats)
        add_teach_routes(app, self.control)
        app.router.add_post("/api/{command}", self._command)
        return app

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        authorised = self._authorised(request)
        request[AUTHORISED] = authorised
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        refusal = self.access.check(
            method=request.method,
            host_header=request.headers.get("Host", ""),
            origin=request.headers.get("Origin"),
            fetch_site=request.headers.get("Sec-Fetch-Site"),
            remote=request.remote or "",
            local_address=str(sockname[0]) if sockname else "",
            authorised=authorised,
        )
        if refusal is not None:
            self.refused += 1
            self._refusal_log.warning(
                "web: refused %s %s from %s (%d): %s",
                request.method,
                request.path[:80],
                request.remote,
                refusal.status,
                refusal.reason.removeprefix("moodscore: "),
            )
            response: web.StreamResponse
            if request.path.startswith("/api/"):
                payload = {"ok": False, "message": refusal.reason.removeprefix("moodscore: ")}
                response = web.json_response(payload, status=refusal.status)
            else:
                response = web.Response(status=refusal.status, text=refusal.reason + "\n")
        else:
            response = await handler(request)
        # The pages are the daemon's own controls: no caching of stale JS after an upgrade, no
        # framing by other pages (clicks tricked through an invisible frame), no token leaking
        # in a Referer.
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def _authorised(self, request: web.Request) -> bool:
        return self.access.authorised(
            request.query.get("token", ""), request.headers.get("Authorization", "")
        )

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(STATIC_DIR / name)

        return page

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, kind = str(body["sdp"]), str(body["type"])
            transparent = bool(body.get("transparent", False))
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'send {"sdp": ..., "type": "offer"} as JSON'}, status=400
            )
        try:
            answer = await self.peers.answer(sdp, kind, transparent=transparent)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    async def _camera(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            sdp, kind = str(body["sdp"]), str(body["type"])
        except (ValueError, KeyError, TypeError):
            return web.json_response(
                {"error": 'send {"sdp": ..., "type": "offer"} as JSON'}, status=400
            )
        try:
            answer, camera = await answer_camera(sdp, kind)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        task = asyncio.get_running_loop().create_task(self._use_camera(camera), name="camera")
        self._camera_tasks.add(task)
        task.add_done_callback(self._camera_tasks.discard)
        return web.json_response({"sdp": answer.sdp, "type": answer.type})

    async def _use_camera(self, camera: BrowserCamera) -> None:
        handed_over = False
        try:
            await camera.wait_ready()
            description = await self.control.use_source(camera)
            handed_over = True
            log.info("source: %s (sent by a browser)", description)
            await camera.ended.wait()
            if self.control.state().get("source") == description:
                # The browser stopped sending (not a switch to another source): say so.
                self.control.update(source=f"{description} (stopped)")
        except MoodscoreError as exc:
            log.warning("%s", exc)
        finally:
            if not handed_over:
                await camera.close()

    def state(self) -> dict[str, Any]:
        """The state the panel shows (see the module docstring)."""
        state: dict[str, Any] = self.control.state()
        latest = self._latest_mood()
        state["analysis"] = (
            None
            if latest is None
            else {"valence": round(latest.valence, 3), "arousal": round(latest.arousal, 3)}
        )
        state["audio_time"] = round(self.clock.audio_time, 3) if self._clock else 0.0
        state["viewers"] = self.peers.viewers
        state["connections"] = self.peers.connections
        # Visuals streams being drawn and encoded now (opaque, transparent): 0 with no viewer.
        state["video_streams"] = self.visuals.producing
        # Blocks the live engine handed on late (audible gaps in real time); 0 when healthy.
        state["late_blocks"] = getattr(self._clock, "late_blocks", 0)
        # The health monitor's report (daemon.control.health): glitches, CPU, memory.
        state["health"] = self.control.health()
        return state

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _beats(self, request: web.Request) -> web.Response:
        return web.json_response(self.beat_times.as_json())

    async def _info(self, request: web.Request) -> web.Response:
        video = self.visuals.video
        return web.json_response(
            {
                "scenes": list(self.control.scene_names()),
                "layers": [layer.value for layer in LAYER_ORDER],
                "commands": list(COMMAND_NAMES),
                "stingers": list(STINGER_KINDS),
                "video": {"width": video.width, "height": video.height, "fps": video.fps},
            }
        )

    async def _command(self, request: web.Request) -> web.Response:
        name = request.match_info["command"]
        if name not in COMMAND_NAMES:
            return web.json_response(
                {"ok": False, "message": f"unknown command; use one of {', '.join(COMMAND_NAMES)}"},
                status=404,
            )
        body = await request.read()
        if name == "source":
            try:
                command = parse_command(name, body)
            except CommandError:
                command = None  # the hub refuses it with the reason
            if isinstance(command, SourceCommand) and self.access.source_needs_token(
                command.source, authorised=request[AUTHORISED]
            ):
                self._refusal_log.warning(
                    "web: source switch to %r refused: no token", command.source[:80]
                )
                return web.json_response(
                    {
                        "ok": False,
                        "message": "source: a camera, screen or file needs the token; open the "
                        "panel with the link in the daemon's log (…/panel?token=…)",
                    },
                    status=403,
                )
        if name == "teach" and not self.access.file_allowed(authorised=request[AUTHORISED]):
            try:
                taught = parse_command(name, body, scenes=self.control.scene_names())
            except CommandError:
                taught = None  # the hub refuses it with the reason
            if isinstance(taught, TeachCommand) and taught.file is not None:
                self._refusal_log.warning("web: teach from file %r refused: no token", taught.file)
                return web.json_response(
                    {
                        "ok": False,
                        "message": "teach: reading a file needs the token; send it as "
                        "Authorization: Bearer TOKEN (the panel link in the daemon's log has it)",
                    },
                    status=403,
                )
        result = await self.control.execute(name, body)
        return web.json_response(result.to_json(), status=200 if result.ok else 400)

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen; the OBS page's URL is logged.

        Raises
        ------
        ConfigError
            The address is taken (unless ``any_port_if_busy``) or cannot be bound.
        """
        allow_loopback_candidates()
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            try:
                site = await self._listen(runner, self.port)
            except OSError as exc:
                if not (
                    self._any_port_if_busy and exc.errno == errno.EADDRINUSE and self.port != 0
                ):
                    raise
                log.warning(
                    "port %d is taken (another moodscore?); serving on a free port instead "
                    "(--web HOST:PORT picks one)",
                    self.port,
                )
                site = await self._listen(runner, 0)
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                f"cannot serve the web page on {self.host}:{self.port} ({exc.strerror or exc}); "
                "pass --web HOST:PORT with a free port, or --no-web"
            ) from exc
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("OBS page: %s  (control panel: %s)", self.url, self.panel_url)

    async def _listen(self, runner: web.AppRunner, port: int) -> web.TCPSite:
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        await site.start()
        return site

    async def _aclose(self) -> None:
        """Close every viewer's connection, then stop serving."""
        for task in list(self._camera_tasks):
            task.cancel()
        await asyncio.gather(*self._camera_tasks, return_exceptions=True)
        if self._peers is not None:
            await self._peers.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
