"""WebRTC media for the OBS page: the engine's audio and the beat-synced visuals as aiortc tracks.

- :mod:`.audio`: the ring buffer the engine writes and one audio track per viewer;
- :mod:`.video`: the visuals, drawn and encoded once per slot and shared by every viewer;
- :mod:`.peers`: the viewers' peer connections.
"""

from daemon.outputs.webrtc.audio import AudioRing, EngineAudioTrack, to_s16
from daemon.outputs.webrtc.peers import PeerHub, allow_loopback_candidates
from daemon.outputs.webrtc.video import LiveVisuals, VideoFormat, VisualsTrack

__all__ = [
    "AudioRing",
    "EngineAudioTrack",
    "LiveVisuals",
    "PeerHub",
    "VideoFormat",
    "VisualsTrack",
    "allow_loopback_candidates",
    "to_s16",
]
