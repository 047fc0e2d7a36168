"""Network addresses as users write them in flags and config keys: ``HOST:PORT``, ``PORT``,
``[IPv6]:PORT``; and wall-clock stamps for protocols that carry them."""

from __future__ import annotations

import time

from daemon.errors import ConfigError


def parse_host_port(
    text: str, *, what: str, default_host: str | None, listen: bool = False
) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` or ``PORT`` -> (host, port).

    Parameters
    ----------
    what : how the user gave it (``--osc``, ``osc.listen``), for the error.
    default_host : the host when only a port is given; None requires one.
    listen : an address to listen on, where port 0 (any free port) is allowed.

    Raises
    ------
    ConfigError
        No port, a port that is not a number in 1-65535, or no host where one is needed.
    """
    text = text.strip()
    host, port_text = "", text
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    example = "HOST:PORT, e.g. 127.0.0.1:9000" if default_host is None else "[HOST:]PORT, e.g. 9000"
    if not port_text.isdigit() or not (0 if listen else 1) <= int(port_text) <= 65535:
        raise ConfigError(f"{what} {text!r}: give {example} (a port from 1 to 65535)")
    if not host:
        if default_host is None:
            raise ConfigError(f"{what} {text!r}: give {example}")
        host = default_host
    return host, int(port_text)


def unix_time(wall: float) -> float:
    """The Unix time (``time.time()``) of a ``time.perf_counter()`` reading ``wall``."""
    return time.time() + (wall - time.perf_counter())
