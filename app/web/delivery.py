"""How bytes leave the server: static files under content-hashed names, HTML revalidated.

Static files are few and small (CSS, our JS, vendored htmx), so they are read, hashed and
gzipped once at start and served from memory: a request costs no disk access and no
compression on the event loop. `static_url("js/flow.js")` names `/static/js/flow.<hash8>.js`,
which never changes content and so is cached for a year (`immutable`); the plain name is still
served (an old page, a module's plain relative imports) with an ETag and `no-cache`.
Pages (text/html) get `Cache-Control: no-cache`: always revalidated, so a deploy shows at once.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Worth gzipping: text formats. Images and archives are compressed already.
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml")
HASH_LEN = 8


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None  # None when gzip would not make it smaller
    media_type: str
    digest: str  # the first HASH_LEN hex digits of its SHA-256, also its ETag


def hashed_name(rel: str, digest: str) -> str:
    """`js/flow.js` → `js/flow.<digest>.js` (the digest before the last suffix)."""
    path = PurePosixPath(rel)
    if not path.suffix:
        return f"{rel}.{digest}"
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


def _media_type(name: str) -> str:
    if name.endswith(".js"):
        return "text/javascript; charset=utf-8"  # the registry's type for JavaScript (RFC 9239)
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


def _load(path: Path) -> Asset:
    return _asset(path.read_bytes(), _media_type(path.name))


def _asset(body: bytes, media_type: str) -> Asset:
    gzipped = None
    if media_type.startswith(COMPRESSIBLE):
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    return Asset(body, gzipped, media_type, hashlib.sha256(body).hexdigest()[:HASH_LEN])


# A module's static import of a sibling (`from "./stage.js"`): the only form our modules use.
_IMPORT = re.compile(rb"""(\bfrom\s*|\bimport\s*)(["'])\./([\w.-]+\.js)\2""")


class HashedStatic:
    """ASGI app for /static: every file under `directory`, by plain and by hashed name.

    The hashed copy of a JS module imports its siblings by their hashed names too, so a
    repeat visit revalidates nothing (a plain import would cost a request per module, one
    after another); its digest is taken after that rewrite, so a changed import changes it.
    """

    def __init__(self, directory: Path) -> None:
        self.plain: dict[str, Asset] = {}
        self.hashed: dict[str, Asset] = {}
        self.url_names: dict[str, str] = {}
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.plain[path.relative_to(directory).as_posix()] = _load(path)
        for rel in self.plain:
            self._name(rel, ())

    def _name(self, rel: str, seen: tuple[str, ...]) -> str:
        """The hashed name of `rel`, hashing the modules it imports first."""
        if rel in self.url_names:
            return self.url_names[rel]
        asset = self.plain[rel]
        if rel.endswith(".js") and rel not in seen:
            folder = PurePosixPath(rel).parent

            def hashed_import(m: re.Match[bytes]) -> bytes:
                dep = (folder / m[3].decode()).as_posix()
                if dep not in self.plain or dep in seen:
                    return m[0]  # unknown or circular: left as written
                dep_url = PurePosixPath(self._name(dep, (*seen, rel))).name
                return m[1] + m[2] + b"./" + dep_url.encode() + m[2]

            body = _IMPORT.sub(hashed_import, asset.body)
            if body != asset.body:
                asset = _asset(body, asset.media_type)
        self.url_names[rel] = hashed_name(rel, asset.digest)
        self.hashed[self.url_names[rel]] = asset
        return self.url_names[rel]

    def url(self, rel: str) -> str:
        """The cache-forever URL of `rel`; an unknown file keeps its plain (404ing) name."""
        return "/static/" + self.url_names.get(rel, rel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        rel = scope["path"][len(scope.get("root_path", "")) :].lstrip("/")
        headers = Headers(scope=scope)
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, [(b"allow", b"GET, HEAD")], b"Method Not Allowed", scope)
            return
        if rel in self.hashed:
            asset, cache = self.hashed[rel], IMMUTABLE
        elif rel in self.plain:
            asset, cache = self.plain[rel], REVALIDATE
        else:
            await _send(send, 404, [(b"content-type", b"text/plain")], b"Not Found", scope)
            return
        etag = f'"{asset.digest}"'
        common = [
            (b"cache-control", cache.encode()),
            (b"etag", etag.encode()),
            (b"vary", b"Accept-Encoding"),
        ]
        if etag in headers.get("if-none-match", ""):
            await _send(send, 304, common, b"", scope)
            return
        body, extra = asset.body, []
        if asset.gzipped is not None and "gzip" in headers.get("accept-encoding", ""):
            body, extra = asset.gzipped, [(b"content-encoding", b"gzip")]
        ctype = [(b"content-type", asset.media_type.encode())]
        await _send(send, 200, [*common, *ctype, *extra], body, scope)


async def _send(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, scope: Scope
) -> None:
    length = [(b"content-length", str(len(body)).encode())] if status != 304 else []
    await send({"type": "http.response.start", "status": status, "headers": headers + length})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class RevalidateHTML:
    """Pure ASGI: an HTML response that sets no Cache-Control of its own gets `no-cache`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if (
                    headers.get("content-type", "").startswith("text/html")
                    and "cache-control" not in headers
                ):
                    headers["cache-control"] = REVALIDATE
            await send(message)

        await self.app(scope, receive, send_with_policy)
