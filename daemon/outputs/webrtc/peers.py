"""WebRTC peers: a browser's offer in, the answer with the audio and visuals tracks out, and every
peer closed on shutdown (:class:`PeerHub`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from daemon.clock import MusicClock
from daemon.outputs.webrtc.audio import AudioRing, EngineAudioTrack
from daemon.outputs.webrtc.video import LiveVisuals, VisualsTrack

log = logging.getLogger("moodscore.webrtc")

# A viewer whose connection stays "disconnected" this long is dropped.
DISCONNECT_GRACE_S = 5.0

# The video codecs a viewer's connection may use: VP8 (and its retransmissions).
VP8_CODECS = [
    c
    for c in RTCRtpSender.getCapabilities("video").codecs
    if c.mimeType.lower() in ("video/vp8", "video/rtx")
]


def allow_loopback_candidates() -> None:
    """Let aioice offer 127.0.0.1 as a host candidate.

    aioice skips the loopback address when it gathers host candidates, so on a machine whose
    only interface is loopback (a sandbox, some CI) no candidate pair can ever form with a
    browser on the same machine. Adding it costs one extra candidate pair elsewhere. Idempotent.
    """
    import aioice.ice

    original = aioice.ice.get_host_addresses
    if getattr(original, "_moodscore_loopback", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        addresses = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    get_host_addresses._moodscore_loopback = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


class PeerHub:
    """The viewers' peer connections: answers offers, counts viewers, closes them all at the end.

    Parameters
    ----------
    ring : the engine's audio, shared by every viewer.
    visuals : the shared visuals renderer.
    clock : the music clock the audio tracks are paced by.
    """

    def __init__(self, *, ring: AudioRing, visuals: LiveVisuals, clock: MusicClock) -> None:
        self.ring = ring
        self.visuals = visuals
        self._clock = clock
        self._peers: set[RTCPeerConnection] = set()
        self.connections = 0  # viewers ever connected
        self._closed = False

    @property
    def viewers(self) -> int:
        """Peer connections open now."""
        return len(self._peers)

    async def answer(
        self, sdp: str, kind: str, *, transparent: bool = False
    ) -> RTCSessionDescription:
        """Answer a browser's offer with the audio and visuals tracks.

        The offer must carry the browser's ICE candidates (aiortc does not trickle); the answer
        carries ours.

        Raises
        ------
        ValueError
            The offer is not a valid SDP offer, or the hub is shut down.
        """
        if self._closed:
            raise ValueError("the daemon is shutting down")
        if kind != "offer":
            raise ValueError(f"expected an SDP offer, got {kind!r}")
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._peers.add(pc)
        self.connections += 1
        audio = EngineAudioTrack(self.ring, self._clock)
        video = VisualsTrack(self.visuals, transparent=transparent)
        pc.addTransceiver(audio, direction="sendonly")
        # The shared stream is VP8 (every browser decodes it): this viewer must take VP8.
        pc.addTransceiver(video, direction="sendonly").setCodecPreferences(VP8_CODECS)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.debug("viewer %s: %s", id(pc), pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._drop(pc)
            elif pc.connectionState == "disconnected":
                # A tab that vanished without closing its connection: ICE consent would only
                # fail after ~30 s; give it a few seconds to come back, then let it go.
                await asyncio.sleep(DISCONNECT_GRACE_S)
                if pc.connectionState == "disconnected":
                    await self._drop(pc)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            if not any(t.currentDirection == "sendonly" for t in pc.getTransceivers()):
                raise ValueError("the offer asks for neither audio nor video")
        except Exception as exc:
            await self._drop(pc)
            if isinstance(exc, ValueError):
                raise
            if "video" in str(exc):
                raise ValueError(
                    "the browser offers no VP8 video; use a browser that decodes VP8 (Chromium, "
                    "OBS, Firefox, Safari)"
                ) from exc
            raise ValueError(f"could not answer the offer: {exc}") from exc
        log.info("viewer connected (%d watching)", self.viewers)
        return pc.localDescription

    async def _drop(self, pc: RTCPeerConnection) -> None:
        if pc in self._peers:
            self._peers.discard(pc)
            log.info("viewer left (%d watching)", self.viewers)
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        with contextlib.suppress(Exception):
            await pc.close()

    async def close(self) -> None:
        """Close every peer connection (idempotent); later offers are refused."""
        self._closed = True
        peers = list(self._peers)
        await asyncio.gather(*(self._drop(pc) for pc in peers), return_exceptions=True)
        await self.visuals.close()
