"""The page language of each HTTP request: `?lang=` first, then the cookie, then Japanese.

A plain ASGI middleware rather than `@app.middleware("http")`: Starlette runs the latter's
endpoint in a task of its own with memory streams in between, a cost on every request for
what is one context variable and, at most, one header.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders, QueryParams
from starlette.requests import cookie_parser
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web import i18n

YEAR = 365 * 86400


def _remember(lang: str) -> bytes:
    """The Set-Cookie value Starlette's `set_cookie` writes, made once per language."""
    response = Response()
    response.set_cookie(i18n.COOKIE, lang, max_age=YEAR, samesite="lax")
    return response.headers["set-cookie"].encode("latin-1")


REMEMBER = {lang: _remember(lang) for lang in i18n.LANGS}


def _query_lang(query_string: bytes) -> str | None:
    """`?lang=` as `request.query_params.get("lang")` reads it (the last one counts);
    most requests have none, and their query is not parsed at all."""
    if b"lang" not in query_string:
        return None
    return QueryParams(query_string).get("lang")


def _cookie_lang(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            return cookie_parser(value.decode("latin-1")).get(i18n.COOKIE)
    return None


class Language:
    """Sets `i18n.current_lang` for the request; an explicit `?lang=` of a known language
    is remembered in a cookie for the next visit (on the response, whatever it is)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = _query_lang(scope.get("query_string", b""))
        lang = i18n.pick_lang(query, _cookie_lang(scope))
        token = i18n.current_lang.set(lang)
        try:
            if query not in i18n.LANGS:
                await self.app(scope, receive, send)
                return
            cookie = REMEMBER[lang]

            async def send_remembering(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).append("set-cookie", cookie.decode("latin-1"))
                await send(message)

            await self.app(scope, receive, send_remembering)
        finally:
            i18n.current_lang.reset(token)
