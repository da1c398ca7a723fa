"""The teacher login: one shared password (MAILFLOW_TEACHER_PASSWORD), a signed cookie.

On a public server (MAILFLOW_PUBLIC=1) pages that show or change everyone's lab data
(the mailbox viewer, the reset) need it; on loopback they stay open as before. Without a
password set, those pages are off in public mode and say how to turn them on.
Other teacher features call `teacher_gate(request)` the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.config import Settings
from app.web import i18n

router = APIRouter()
COOKIE = "mailflow_teacher"
MAX_AGE = 12 * 3600  # one school day; then the password is asked again
MAX_TRIES = 5  # wrong passwords per client address within WINDOW
WINDOW = 15 * 60.0
MAX_CLIENTS = 10_000  # addresses remembered at once; the oldest are forgotten first


class TryLimiter:
    """Counts wrong tries per client address in a sliding window; memory stays bounded."""

    def __init__(
        self,
        max_tries: int = MAX_TRIES,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_tries, self.window, self.clock = max_tries, window, clock
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, client: str) -> deque[float]:
        fails = self._fails.get(client)
        if fails is None:
            return deque()
        cutoff = self.clock() - self.window
        while fails and fails[0] <= cutoff:
            fails.popleft()
        if not fails:
            del self._fails[client]
        return fails

    def wait_seconds(self, client: str) -> float:
        """0 when this client may try now; else how long until its oldest wrong try expires."""
        fails = self._recent(client)
        if len(fails) < self.max_tries:
            return 0.0
        return max(0.0, fails[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        fails = self._fails.setdefault(client, deque(maxlen=self.max_tries))
        fails.append(self.clock())
        self._fails.move_to_end(client)
        while len(self._fails) > MAX_CLIENTS:
            self._fails.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._fails.pop(client, None)


class TeacherGate:
    """Checks the password and the cookie; lives in app.state.teacher."""

    def __init__(self, settings: Settings, key: str) -> None:
        self.public = settings.teacher_only  # public, or a classroom LAN address
        self.password = settings.teacher_password
        self.secure_cookie = settings.public_url.lower().startswith("https:")
        self.serializer = URLSafeTimedSerializer(key, salt="teacher")
        # A changed password makes every earlier cookie worthless.
        self._tag = hmac.new(key.encode(), self.password.encode(), hashlib.sha256).hexdigest()
        self.limiter = TryLimiter()

    @property
    def enabled(self) -> bool:
        return bool(self.password)

    def password_ok(self, given: str) -> bool:
        # Constant time: the answer's timing says nothing about how much of it matched.
        return self.enabled and hmac.compare_digest(given.encode(), self.password.encode())

    def cookie_value(self) -> str:
        return self.serializer.dumps({"t": self._tag})

    def is_teacher(self, request: Request) -> bool:
        raw = request.cookies.get(COOKIE)
        if not raw or not self.enabled:
            return False
        try:
            data = self.serializer.loads(raw, max_age=MAX_AGE)
        except BadSignature:
            return False
        return isinstance(data, dict) and hmac.compare_digest(str(data.get("t", "")), self._tag)


def _gate(request: Request) -> TeacherGate:
    return request.app.state.teacher


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _local_path(target: str) -> str:
    """Only a path on this site ("/lab/…"), never "//other.example" or "/\\other.example"."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/lab"


def _page(request: Request, status: int, **ctx: object) -> Response:
    response = request.app.state.templates.TemplateResponse(
        request,
        "teacher_login.html",
        {"lang": i18n.current_lang.get(), "gate": _gate(request), **ctx},
        status_code=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def teacher_gate(request: Request) -> Response | None:
    """None when the request may go on; else the page to answer with instead.

    Loopback: open. Public without a password: off (403 saying how to turn it on).
    Public with a password: the teacher's cookie, else the login page.
    """
    gate = _gate(request)
    if not gate.public or gate.is_teacher(request):
        return None
    if not gate.enabled:
        return _page(request, 403, state="off")
    if request.method == "GET":
        query = urlencode({"next": request.url.path})
        return RedirectResponse(f"/teacher/login?{query}", status_code=303)
    return _page(request, 403, state="login", next=request.url.path)


@router.get("/teacher/login")
async def login_form(request: Request, next: str = "/lab") -> Response:
    gate = _gate(request)
    if not gate.enabled:
        return _page(request, 403, state="off")
    state = "in" if gate.is_teacher(request) else "login"
    return _page(request, 200, state=state, next=_local_path(next))


@router.post("/teacher/login")
async def login(
    request: Request,
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/lab",
) -> Response:
    gate = _gate(request)
    target = _local_path(next)
    if not gate.enabled:
        return _page(request, 403, state="off")
    client = _client(request)
    wait = gate.limiter.wait_seconds(client)
    if wait > 0:
        # Even the right password waits: otherwise guessing would simply go on.
        minutes = max(1, round(wait / 60))
        response = _page(request, 429, state="login", next=target, wait_minutes=minutes)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    if not gate.password_ok(password):
        gate.limiter.failed(client)
        return _page(request, 403, state="login", next=target, wrong=True)
    gate.limiter.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        gate.cookie_value(),
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=gate.secure_cookie or request.url.scheme == "https",
    )
    return response


@router.post("/teacher/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse("/lab", status_code=303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response
