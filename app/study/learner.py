"""The anonymous learner: a random id in a signed cookie. No sign-up, no e-mail.

A cookie that fails its signature (tampered, or signed by another installation) is not an
error: the visitor simply starts as a fresh learner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from itsdangerous import BadSignature, Signer
from starlette.requests import Request
from starlette.responses import Response

from app.study.store import Store

COOKIE = "mf_learner"
MAX_AGE = 2 * 365 * 86400
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass
class Who:
    id: str | None  # None: no valid cookie yet (nothing stored for this visitor)
    issue: bool = False  # the response must set a new cookie


class LearnerCookies:
    def __init__(self, key: str, store: Store) -> None:
        self.signer = Signer(key, salt="learner")
        self.store = store

    def read(self, request: Request) -> Who:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return Who(None)
        try:
            value = self.signer.unsign(raw).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return Who(None)
        if not _UUID.match(value):
            return Who(None)
        return Who(value)

    def for_write(self, request: Request) -> Who:
        """The learner an answer belongs to; a new one if the cookie is missing or bad."""
        who = self.read(request)
        if who.id is None:
            return Who(self.store.new_learner_id(), issue=True)
        return who

    def attach(self, response: Response, who: Who, request: Request) -> Response:
        if who.issue and who.id:
            response.set_cookie(
                COOKIE,
                self.signer.sign(who.id).decode("ascii"),
                max_age=MAX_AGE,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
            )
        return response
