"""Who may use the web server: the rules that keep a browser from being turned against it.

Loopback is not a trust boundary: any page open in the user's browser can send requests to
127.0.0.1, and a page whose name an attacker re-points at 127.0.0.1 (DNS rebinding) can even read
the answers. So, in this order:

1. **Host**: the ``Host`` header must name this server: the bound address, ``localhost``,
   ``127.0.0.1``, ``[::1]``, the address the connection came in on, or a name in
   ``web.allowed_hosts``. Anything else (``evil.example:8080``, what a rebinding page sends) gets
   421 Misdirected Request, whatever it asks for. A request with the token passes.
2. **Who**: a client beyond this machine must send the token (401 otherwise).
3. **State changes** (every method but GET and HEAD, WebRTC offers included) come from the
   daemon's own pages or carry the token: a browser always sends ``Origin`` on a POST, and it must
   be this server's own (``http://`` + the Host). A foreign origin, ``Origin: null`` (a sandboxed
   frame, a file) or ``Sec-Fetch-Site: cross-site``/``same-site`` gets 403: that covers the
   "simple" requests browsers send without asking (``text/plain`` fetches, ``no-cors``, HTML
   forms, ``sendBeacon``). A request without ``Origin`` and ``Sec-Fetch-Site`` does not come from
   a web page (curl, a script on this machine) and passes. No CORS header is ever sent, so no
   other origin may read an answer either; a read that names a foreign ``Origin`` gets 403 too.
4. **Capture**: switching the source to anything but the demo (a webcam, a screen, a file), or
   teaching from a file, needs the token even from this machine, unless
   ``web.trust_loopback_sources``.
5. **Rate**: each client address may send :data:`POST_BURST` state changes at once and
   :data:`POST_PER_S` a second after that (429 beyond), and :data:`GET_PER_S` reads.

The token is compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

# State changes a client may send in a burst, then per second.
POST_BURST = 40
POST_PER_S = 20.0
# Reads (the panel polls /api/state four times a second; tests poll faster).
GET_BURST = 400
GET_PER_S = 200.0
# Client addresses remembered by the rate limiter before the oldest are forgotten.
MAX_CLIENTS = 1024

SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host(header: str) -> str:
    """The host name of a ``Host`` header (``name:port``, ``[v6]:port``), lower case, without
    the port or brackets; ``""`` when there is none."""
    text = header.strip().lower().rstrip(".")
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else ""
    if text.count(":") == 1:
        text = text.split(":", 1)[0]
    return text.rstrip(".")


def token_matches(given: str, token: str) -> bool:
    """``given == token`` in constant time; never for an empty token."""
    if not token:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8", "replace"))


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """A token bucket per client address: ``burst`` at once, ``per_s`` a second after that."""

    burst: int
    per_s: float
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, client: str, *, now: float | None = None) -> bool:
        """Take one request's worth for ``client``; False when its bucket is empty."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            if len(self._buckets) >= MAX_CLIENTS:
                self._buckets.pop(next(iter(self._buckets)))
            bucket = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.per_s)
        bucket.stamp = now
        self._buckets[client] = bucket  # most recently seen last
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the HTTP status and one line for the client."""

    status: int
    reason: str


class AccessPolicy:
    """The rules above for one server.

    Parameters
    ----------
    bound_host : the address the server listens on (``0.0.0.0`` for every interface).
    token : the access token (never empty: the server makes one when none is configured).
    allowed_hosts : further names the server answers to (``web.allowed_hosts``).
    trust_loopback_sources : let this machine switch to a camera, screen or file without the
        token (``web.trust_loopback_sources``).
    """

    def __init__(
        self,
        *,
        bound_host: str,
        token: str,
        allowed_hosts: Iterable[str] = (),
        trust_loopback_sources: bool = False,
    ) -> None:
        self.token = token
        self.trust_loopback_sources = trust_loopback_sources
        names = set(LOOPBACK_NAMES)
        names.update(split_host(name) for name in allowed_hosts if name.strip())
        bound = bound_host.strip("[]").lower()
        if bound not in _WILDCARDS:
            names.add(bound)
        self.host_names = frozenset(names)
        self.posts = RateLimiter(POST_BURST, POST_PER_S)
        self.reads = RateLimiter(GET_BURST, GET_PER_S)

    def authorised(self, query_token: str, authorization: str) -> bool:
        """Whether the request carries the token (``?token=`` or ``Authorization: Bearer``)."""
        given = query_token
        if authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :].strip()
        return token_matches(given, self.token)

    def host_allowed(self, host_header: str, local_address: str) -> bool:
        """Whether the ``Host`` header names this server (or the address the connection came
        in on: an address cannot be re-pointed the way a name can)."""
        name = split_host(host_header)
        if not name:
            return False
        return name in self.host_names or name == local_address.lower()

    def check(
        self,
        *,
        method: str,
        host_header: str,
        origin: str | None,
        fetch_site: str | None,
        remote: str,
        local_address: str,
        authorised: bool,
    ) -> Refusal | None:
        """None when the request may go on, else why not (rules 1, 2, 3 and 5)."""
        if not authorised and not self.host_allowed(host_header, local_address):
            shown = host_header[:80] or "(none)"
            return Refusal(
                421,
                f"moodscore: this server does not answer to Host {shown}; open it as "
                "http://127.0.0.1 or http://localhost, or add the name to web.allowed_hosts",
            )
        if not authorised and not is_loopback(remote):
            return Refusal(
                401, "moodscore: add ?token=... (printed in the daemon's log) to the URL"
            )
        state_change = method.upper() not in SAFE_METHODS
        own_page = self.same_origin(origin, fetch_site, host_header)
        # A read that names another origin is a cross-origin fetch: the browser would hide the
        # answer anyway (no CORS header), so it gets none.
        foreign_read = origin is not None and not own_page
        if not authorised and (foreign_read or (state_change and not own_page)):
            return Refusal(
                403,
                "moodscore: refused a request from another web page; use the daemon's own "
                "panel, or send the token (Authorization: Bearer ...)",
            )
        limiter = self.posts if state_change else self.reads
        if not limiter.allow(remote):
            return Refusal(429, "moodscore: too many requests; slow down")
        return None

    @staticmethod
    def same_origin(origin: str | None, fetch_site: str | None, host_header: str) -> bool:
        """Whether a state change comes from one of the daemon's own pages, or from no page at
        all (a browser always sends ``Origin`` on a POST; curl and scripts send neither)."""
        if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
            return False
        if origin is None:
            return True
        host = host_header.strip().lower()
        return bool(host) and origin.strip().lower() in (f"http://{host}", f"https://{host}")

    def file_allowed(self, *, authorised: bool) -> bool:
        """Whether a request may make the daemon open a file by its path (``teach`` from a
        recording): as rule 4, the token, or ``web.trust_loopback_sources``."""
        return authorised or self.trust_loopback_sources

    def source_needs_token(self, spec: str, *, authorised: bool) -> bool:
        """Whether switching to ``spec`` is refused for want of the token (rule 4): anything
        but the demo opens a camera, a screen or a file."""
        if authorised or self.trust_loopback_sources:
            return False
        return spec.strip() != "demo"


__all__ = [
    "GET_PER_S",
    "POST_BURST",
    "POST_PER_S",
    "AccessPolicy",
    "RateLimiter",
    "Refusal",
    "is_loopback",
    "split_host",
    "token_matches",
]
