"""The HTTP side of `audioavatar serve`: what every request gets before (or instead of) a websocket upgrade.

    method other than GET/HEAD          405 (GET only for /ws)
    URL longer than MAX_URL             414
    Host header not naming this server  403 (DNS rebinding: a page from another site whose name was re-pointed
                                        at this address must not reach the loopback server, where no token is
                                        needed); a missing or malformed one is 400
    /health                             200 JSON {"status": "warming" | "ready", "sessions", "max_sessions", "free"}
    /healthz                            the same JSON; 200 once warm, else 503 (a balancer's health check)
    /capacity                           the same JSON; 200 while a session slot is free, else 503 (a balancer
                                        sends new sessions only to workers with room: viewer/workers.py)
    /avatar.splat                       the avatar packed for client-side rendering (engine/avatar/splat_pack.py),
                                        gzip'd when the client accepts it, with an ETag (304 when unchanged)
    /ws                                 403 for a foreign Origin, 503 + Retry-After while warming up, else the
                                        upgrade (the session cap is counted in the handler, from connect)
    anything else                       a file under viewer/static/, or 404 (no path can leave that folder)
"""
from __future__ import annotations

import ipaddress
import json
import mimetypes
import socket
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

STATIC = Path(__file__).resolve().parent / "static"
MAX_URL = 2048                 # characters of the request target
WARMING_RETRY_S = 2            # Retry-After while the renderer warms up
WILDCARD = ("0.0.0.0", "::", "")
# The viewer's own types, not left to mimetypes (which reads /etc/mime.types or the Windows registry, where .js
# can be text/plain): browsers refuse an ES module, or under nosniff a stylesheet, of any other type.
STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(text: str) -> str | None:
    """The lower-case host name of a Host header or URL authority ('[::1]:8765' -> '::1'), None if malformed."""
    try:
        name = urlsplit("//" + text).hostname
        urlsplit("//" + text).port                        # a bad port raises ValueError
    except ValueError:
        return None
    return name.rstrip(".") if name else None


def allowed_hosts(bind: str, allow_origins: list) -> set[str]:
    """Host names a request may name: loopback ones, the bound address, this machine's names when bound to a
    wildcard or non-loopback address, and the hosts of --allow-origin."""
    names = {"localhost", "127.0.0.1", "::1", bind.lower().strip("[]")}
    if bind in WILDCARD or not is_loopback(bind):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    for origin in allow_origins:
        host = _hostname(urlsplit(origin).netloc or origin)
        if host:
            names.add(host)
    return names


def host_ok(host: str | None, bind: str, names: set[str]) -> bool:
    """Whether a request's Host header names this server. Bound to a wildcard, any IP address literal is
    accepted (the browser then talks to that address itself; rebinding needs a DNS name)."""
    name = _hostname(host) if host else None
    if name is None:
        return False
    if name in names or is_loopback(name):
        return True
    if bind in WILDCARD:
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return False
    return False


def origin_ok(origin: str | None, host: str, allow_origins: list) -> bool:
    """Origin absent (non-browser clients), same-origin as the (already checked) Host, or listed."""
    return origin is None or origin in (f"http://{host}", f"https://{host}") or origin in allow_origins


def response(status: HTTPStatus, body: bytes = b"", kind: str = "text/plain", head: bool = False,
             extra: tuple = (), cache: str = "no-store") -> Response:
    """A complete HTTP response; `head` keeps the headers (Content-Length included) and drops the body."""
    headers = Headers([("Content-Type", kind), ("Content-Length", str(len(body))), ("Cache-Control", cache),
                       ("X-Content-Type-Options", "nosniff"), ("Connection", "close"), *extra])
    return Response(status.value, status.phrase, headers, b"" if head else body)


def text(status: HTTPStatus, message: str, **kw) -> Response:
    return response(status, (message + "\n").encode(), **kw)


def static_response(path: str, head: bool = False) -> Response:
    """The file under STATIC for a URL path, or 404; '..', absolute paths, encoded tricks, links that resolve
    outside STATIC and names the file system refuses (too long, bad bytes) all end as 404."""
    rel = unquote(urlsplit(path).path).lstrip("/") or "index.html"
    root = STATIC.resolve()
    try:
        target = (root / rel).resolve() if "\x00" not in rel and "\\" not in rel else None
        if target is None or not target.is_relative_to(root) or not target.is_file():
            return text(HTTPStatus.NOT_FOUND, "not found", head=head)
        body = target.read_bytes()
    except (OSError, ValueError):
        return text(HTTPStatus.NOT_FOUND, "not found", head=head)
    kind = STATIC_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return response(HTTPStatus.OK, body, kind, head=head)


def accepts_gzip(value: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (q=0 refuses it)."""
    for part in (value or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and q[2:].strip() in ("0", "0.0", "0.00", "0.000"))
    return False


class Gate:
    """process_request for the websockets server: answers every plain HTTP request and refuses bad upgrades;
    returns None for a /ws request that may become a websocket."""

    def __init__(self, server):
        self.server = server            # viewer.server.AvatarServer: cfg, state, admitted
        cfg = server.cfg
        self.hosts = allowed_hosts(cfg.host, cfg.allow_origins)

    def __call__(self, connection, request: Request) -> Response | None:
        cfg, method, path = self.server.cfg, request.method, request.path
        head = method == "HEAD"
        if len(path) > MAX_URL:
            return text(HTTPStatus.REQUEST_URI_TOO_LONG, f"URL longer than {MAX_URL} characters", head=head)
        route = urlsplit(path).path
        allowed = "GET" if route == "/ws" else "GET, HEAD"
        if method not in allowed.split(", "):
            return text(HTTPStatus.METHOD_NOT_ALLOWED, f"{method[:20]} not allowed; use {allowed}",
                        extra=(("Allow", allowed),))
        host = request.headers.get("Host")
        if host is None or _hostname(host) is None:
            return text(HTTPStatus.BAD_REQUEST, "missing or malformed Host header", head=head)
        if not host_ok(host, cfg.host, self.hosts):
            return text(HTTPStatus.FORBIDDEN, "this server is not reachable under that host name (start it with "
                        "--allow-origin http://NAME:PORT to allow one)", head=head)
        if route in ("/health", "/healthz", "/capacity"):
            state, admitted = self.server.state, self.server.admitted
            free = max(cfg.max_sessions - admitted, 0) if state == "ready" else 0
            body = json.dumps({"status": state, "sessions": admitted, "max_sessions": cfg.max_sessions,
                               "free": free}).encode()
            ok = {"/health": True, "/healthz": state == "ready", "/capacity": free > 0}[route]
            return response(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, body, "application/json",
                            head=head)
        if route == "/avatar.splat":
            return self._splat(request, head)
        if route != "/ws":
            return static_response(path, head=head)
        origin = request.headers.get("Origin")
        if not origin_ok(origin, host, cfg.allow_origins):
            return text(HTTPStatus.FORBIDDEN, f"origin {origin[:100]} not allowed")
        if self.server.state != "ready":
            return text(HTTPStatus.SERVICE_UNAVAILABLE, "warming up: building or loading the renderer",
                        extra=(("Retry-After", str(WARMING_RETRY_S)),))
        return None

    def _splat(self, request: Request, head: bool) -> Response:
        if self.server.state != "ready":
            return text(HTTPStatus.SERVICE_UNAVAILABLE, "warming up: building or loading the renderer", head=head,
                        extra=(("Retry-After", str(WARMING_RETRY_S)),))
        try:
            blob, packed_gz, etag = self.server.splat()
        except ValueError as e:
            return text(HTTPStatus.NOT_FOUND, f"client rendering unavailable: {e}", head=head)
        tag = (("ETag", etag), ("Vary", "Accept-Encoding"))
        if request.headers.get("If-None-Match") == etag:
            return response(HTTPStatus.NOT_MODIFIED, b"", "application/octet-stream", head=True, extra=tag,
                            cache="no-cache")
        if accepts_gzip(request.headers.get("Accept-Encoding")):
            return response(HTTPStatus.OK, packed_gz, "application/octet-stream", head=head,
                            extra=tag + (("Content-Encoding", "gzip"),), cache="no-cache")
        return response(HTTPStatus.OK, blob, "application/octet-stream", head=head, extra=tag, cache="no-cache")
