"""The daemon's web server: the OBS page, the control panel, WebRTC signalling, the JSON API."""

from daemon.web.server import WebServer, is_loopback, parse_address

__all__ = ["WebServer", "is_loopback", "parse_address"]
