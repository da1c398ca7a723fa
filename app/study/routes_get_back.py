"""GET on an address that only takes POST (a bookmarked result, the language switch after a
form without JavaScript): send the learner to the page the form came from, not to a 405."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse

router = APIRouter()

BACK = {
    "/quiz/ports/answer": "/quiz/ports",
    "/quiz/speed/start": "/quiz/speed",
    "/quiz/exam/start": "/quiz/exam",
    "/me/import": "/me",
}


def _back(request: Request, path: str) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def _make(target: str) -> Callable[[Request], Awaitable[RedirectResponse]]:
    async def go_back(request: Request) -> RedirectResponse:
        return _back(request, target)

    return go_back


for _source, _target in BACK.items():
    router.add_api_route(_source, _make(_target), methods=["GET"], include_in_schema=False)


@router.get("/quiz/speed/{run_id}/answer", include_in_schema=False)
async def speed_answer_get(request: Request, run_id: str) -> RedirectResponse:
    return _back(request, f"/quiz/speed/{run_id}")


@router.get("/quiz/exam/run/{run_id}/answer", include_in_schema=False)
async def exam_answer_get(request: Request, run_id: str) -> RedirectResponse:
    return _back(request, f"/quiz/exam/run/{run_id}")
