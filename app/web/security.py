"""Same origin and security headers: one rule for every unsafe request and every websocket.

A page on another site can make the learner's browser send forms, fetches and websocket
handshakes here, with the learner's cookies. The browser names the page that caused the
request in `Origin` (or, failing that, `Referer`), so:

- a request whose Origin — or, without Origin, whose Referer — names another origin is
  refused with 403 (unsafe HTTP methods) or a refused handshake (every websocket);
- a request with neither passes: only scripts and tools like curl send neither, and they
  can send anything they like anyway;
- "same origin" is the origin the request came to (scheme and Host), or the configured
  public URL (MAILFLOW_PUBLIC_URL) when a reverse proxy stands in front.

Every HTTP response gets the headers in SECURITY_HEADERS (see docs/architecture.md).
Pure ASGI, so streaming responses and websockets pass through untouched and cheaply.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web import i18n

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),  # frame-ancestors for browsers that predate CSP 2
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WS_SCHEMES = {"ws": "http", "wss": "https"}


def origin_of(url: str) -> str | None:
    """`scheme://host:port` of an absolute http(s) URL, ports made explicit; None if not one.

    "null" (sandboxed frames, file: pages) and anything unparsable count as no origin at all,
    which the rule treats as foreign.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS[scheme]}"


def own_origin(scope: Scope) -> str | None:
    """The origin this request came to: its scheme and its Host header."""
    scheme = _WS_SCHEMES.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host = Headers(scope=scope).get("host")
    if not host:
        server = scope.get("server")
        if not server:
            return None
        host = f"{server[0]}:{server[1]}"
    return origin_of(f"{scheme}://{host}")


def is_foreign(scope: Scope, public_origin: str | None) -> bool:
    """True when Origin (else Referer) names an origin other than this site's."""
    headers = Headers(scope=scope)
    source = headers.get("origin")
    if source is None:
        source = headers.get("referer")
        if source is None:
            return False  # not sent by a browser page: scripts, curl, mail clients' tools
    named = origin_of(source)
    if named is None:
        return True
    return named not in {own_origin(scope), public_origin}


def is_refused(scope: Scope, public_origin: str | None) -> bool:
    """Whether the same-origin rule refuses this request (safe HTTP methods always pass)."""
    if scope["type"] == "http" and scope.get("method", "GET") in SAFE_METHODS:
        return False
    return is_foreign(scope, public_origin)


def _add_headers(message: Message, extra: Iterable[tuple[str, str]]) -> None:
    """Adds each header the response did not set itself."""
    present = {name.lower() for name, _ in message.get("headers", [])}
    headers = list(message.get("headers", []))
    for name, value in extra:
        if name.encode() not in present:
            headers.append((name.encode(), value.encode()))
    message["headers"] = headers


def _wants_json(scope: Scope) -> bool:
    if scope.get("path", "").startswith(("/api/", "/healthz")):
        return True
    accept = Headers(scope=scope).get("accept", "")
    return "application/json" in accept and "text/html" not in accept


class SecurityMiddleware:
    """Refuses cross-origin unsafe requests and websockets; adds the security headers."""

    def __init__(self, app: ASGIApp, public_origin: str | None = None) -> None:
        self.app = app
        self.public_origin = public_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if is_refused(scope, self.public_origin):
                await self._refuse_websocket(receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add_headers(message, SECURITY_HEADERS)
            await send(message)

        if is_refused(scope, self.public_origin):
            await self._refuse_http(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse_websocket(receive: Receive, send: Send) -> None:
        # Closing before accepting makes the server answer the handshake with 403:
        # the foreign page never gets an open socket, so nothing is ever sent to it.
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008, "reason": "origin"})

    @staticmethod
    async def _refuse_http(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        lang = i18n.pick_lang(request.query_params.get("lang"), request.cookies.get(i18n.COOKIE))
        token = i18n.current_lang.set(lang)
        try:
            message = i18n.gettext(
                "This action is accepted only from MailFlow Lab's own page. "
                "A page on another site tried to send it in your name, so nothing was done."
            )
            if _wants_json(scope):
                response: Response = JSONResponse(
                    {"error": "origin", "message": message}, status_code=403
                )
            else:
                templates = scope["app"].state.templates
                response = templates.TemplateResponse(
                    request,
                    "error.html",
                    {"status": 403, "detail": "origin", "lang": lang},
                    status_code=403,
                )
        finally:
            i18n.current_lang.reset(token)
        await response(scope, receive, send)
