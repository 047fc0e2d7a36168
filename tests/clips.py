"""Real video files for tests: the demo scene at chosen intensities, encoded with PyAV (H.264)."""

from daemon.sources.demo import write_demo_clip as write_clip

__all__ = ["write_clip"]
