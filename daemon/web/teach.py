"""The web API of teaching the game mode (:mod:`daemon.analysis.teach`) and of game profiles.

``GET /api/teach`` (the teaching state), ``POST /api/teach/undo``, ``GET /api/profiles`` (every
saved game profile), ``GET /api/profile[?game=NAME]`` (this game's profile, or NAME's, as one
file) and ``POST /api/profile`` (import one; it reads from the next bar). ``POST /api/game``
(switch to another game's profile) is the generic command route. ``POST /api/obs/scene``
(``{"scene": NAME}``: the OBS page reports OBS's current scene) picks the game profile by the
scene's name with ``[game] auto_profile``.
``POST /api/teach`` itself is the generic command route. The server's guard applies its origin
and token rules to these as to every route.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from daemon.control.hub import ControlHub
from daemon.errors import MoodscoreError

log = logging.getLogger("moodscore.web")

# A game profile: a few minutes of taught windows (~1.7 KB each) and the head.
MAX_PROFILE_BYTES = 8 * 1024 * 1024
NO_GAME_MODE = {"ok": False, "message": "no game profile: run with --mode game (or --game NAME)"}


def add_teach_routes(app: web.Application, hub: ControlHub) -> None:
    """Add the teaching routes over ``hub`` (its teacher, when the game mode runs)."""

    async def state(request: web.Request) -> web.Response:
        return web.json_response(hub.state()["teach"])

    async def undo(request: web.Request) -> web.Response:
        result = await hub.execute("teach_undo", b"")
        return web.json_response(result.to_json(), status=200 if result.ok else 400)

    async def listing(request: web.Request) -> web.Response:
        teacher = hub.teacher
        if teacher is None:
            return web.json_response(NO_GAME_MODE, status=404)
        found = await asyncio.to_thread(teacher.profiles)
        return web.json_response({"game": teacher.snapshot().get("game"), "profiles": found})

    async def export(request: web.Request) -> web.Response:
        teacher = hub.teacher
        if teacher is None:
            return web.json_response(NO_GAME_MODE, status=404)
        asked = request.query.get("game") or None
        try:
            raw = await asyncio.to_thread(teacher.profile_bytes, asked)
        except MoodscoreError as exc:
            return web.json_response({"ok": False, "message": str(exc)}, status=404)
        game = asked or str(teacher.snapshot().get("game") or "game")
        return web.Response(
            body=raw,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{game}.profile"'},
        )

    async def upload(request: web.Request) -> web.Response:
        teacher = hub.teacher
        if teacher is None:
            return web.json_response(NO_GAME_MODE, status=404)
        too_large = {"ok": False, "message": f"a profile is at most {MAX_PROFILE_BYTES} bytes"}
        if (request.content_length or 0) > MAX_PROFILE_BYTES:
            return web.json_response(too_large, status=413)
        chunks, size = [], 0
        # Read past the app's small body limit (commands, offers): a profile is larger.
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > MAX_PROFILE_BYTES:
                return web.json_response(too_large, status=413)
            chunks.append(chunk)
        try:
            await asyncio.to_thread(teacher.import_bytes, b"".join(chunks), where="the upload")
        except MoodscoreError as exc:
            return web.json_response({"ok": False, "message": str(exc)}, status=400)
        log.info("teach: a profile was imported; it reads from the next bar")
        return web.json_response({"ok": True, "message": "ok"})

    async def obs_scene(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            scene = body["scene"] if isinstance(body, dict) else None
        except (ValueError, KeyError):
            scene = None
        if not isinstance(scene, str) or not 0 < len(scene) <= 256:
            bad = {"ok": False, "message": 'send {"scene": "OBS scene name"}'}
            return web.json_response(bad, status=400)
        result = await hub.seen_title(scene, where="OBS scene")
        return web.json_response(result.to_json(), status=200 if result.ok else 409)

    app.router.add_get("/api/teach", state)
    app.router.add_post("/api/teach/undo", undo)
    app.router.add_post("/api/obs/scene", obs_scene)
    app.router.add_get("/api/profiles", listing)
    app.router.add_get("/api/profile", export)
    app.router.add_post("/api/profile", upload)
