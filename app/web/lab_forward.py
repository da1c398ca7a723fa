"""With several web workers only worker 0 runs the lab: the others hand `/lab` and
`/lab/...` HTTP requests (the lab page, the mailbox viewer, the CA certificate, reset)
to it over a Unix socket in the data dir, so every worker answers them the same.

The request goes on as it came (method, path, query, headers with cookies, Origin and
Host, body); worker 0 applies the same-origin rule and the teacher gate itself. The live
view (`/ws/lab`) needs no forwarding: it follows the lab over the bus.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

MAX_BODY = 1024 * 1024  # the lab's forms are small; a larger body is refused


def is_lab_path(path: str) -> bool:
    return path == "/lab" or path.startswith("/lab/")


class LabForward:
    def __init__(self, app: ASGIApp, socket_path: Path) -> None:
        import httpx  # only with several web workers: a single one never pays for it

        self.app = app
        transport = httpx.AsyncHTTPTransport(uds=str(socket_path))
        self.client = httpx.AsyncClient(transport=transport, base_url="http://lab", timeout=60)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_lab_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                await send({"type": "http.response.start", "status": 413, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        url = target.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
        request = self.client.build_request(scope["method"], url, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            # The bytes as worker 0 sent them (gzipped if it gzipped them), so its
            # Content-Encoding still describes the body.
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        raw = [
            (k.lower(), v)
            for k, v in response.headers.raw
            if k.lower() not in (b"transfer-encoding", b"connection", b"content-length")
        ]
        raw.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
        await send({"type": "http.response.body", "body": content})
