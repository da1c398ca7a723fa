"""The learner's own page (export / import) and the JSON API for other tools."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from app.study import transfer
from app.study.store import utcnow
from app.study.web import lang, missed_questions, on_db_thread, recent_runs, render, study
from app.web.i18n import gettext as _

router = APIRouter()


def _problem_text(problem: transfer.ImportProblem) -> str:
    messages = {
        "empty": _("The file is empty. Choose the file you downloaded with “Export”."),
        "too_big": _("The file is too large to be a progress file (limit 5 MB)."),
        "not_json": _("This file is not a MailFlow Lab progress file (it is not JSON)."),
        "foreign": _("This file is not a MailFlow Lab progress file."),
        "version": _("This progress file comes from a newer version of MailFlow Lab."),
        "invalid": _("This progress file is damaged and cannot be imported."),
    }
    return messages.get(problem.code, messages["invalid"])


def _me_page(
    request: Request, *, message: str = "", error: str = "", detail: str = "", status: int = 200
) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    now = utcnow()
    progress = st.store.progress(who.id, now)
    lg = lang()
    runs = recent_runs(st, who.id, lg)
    return render(
        request,
        "study/me.html",
        {
            "progress": progress,
            "percent": round(100 * progress.correct / progress.answered)
            if progress.answered
            else 0,
            "best": st.store.speed_best(who.id),
            "misses": len(missed_questions(st, who.id)),
            "runs": runs,
            "known": who.id is not None,
            "message": message,
            "error": error,
            "detail": detail,
        },
        status=status,
    )


@router.get("/me")
@on_db_thread
def me(request: Request, imported: str = "", skipped: int = 0) -> Response:
    message = _("Your progress was imported.") if imported == "1" else ""
    if message and skipped > 0:
        message += " " + _(
            "%(n)s entries about questions or cards that no longer exist were skipped."
        ) % {"n": min(skipped, transfer.MAX_ROWS * 3)}
    return _me_page(request, message=message)


@router.get("/me/export")
@on_db_thread
def me_export(request: Request) -> Response:
    st = study(request)
    who = st.cookies.read(request)
    doc = transfer.export(st.store, who.id)
    stamp = utcnow().strftime("%Y%m%d")
    return Response(
        json.dumps(doc, ensure_ascii=False, indent=1),
        media_type="application/json",
        headers={
            "Content-Disposition": f'attachment; filename="mailflow-progress-{stamp}.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/me/import")
async def me_import(
    request: Request, file: Annotated[UploadFile | None, File()] = None
) -> Response:
    st = study(request)
    if file is None:
        page = partial(_me_page, request, error=_("Choose a file to import."), status=422)
        return await st.db.call(page)
    raw = await file.read(transfer.MAX_BYTES + 1)
    try:
        # A 5 MB file is real CPU work: parse it off the event loop.
        parsed = await run_in_threadpool(transfer.parse, raw, st.content)
    except transfer.ImportProblem as exc:
        page = partial(_me_page, request, error=_problem_text(exc), detail=exc.detail, status=422)
        return await st.db.call(page)
    who = st.cookies.for_write(request)
    await st.db.call(transfer.apply, st.store, who.id or "", parsed.doc)
    skipped = f"&skipped={parsed.skipped_total}" if parsed.skipped_total else ""
    response = RedirectResponse(f"/me?imported=1{skipped}", status_code=303)
    st.cookies.attach(response, who, request)
    return response


@router.post("/api/me/import")
async def api_import(request: Request) -> JSONResponse:
    """The same import for other tools: the progress file as the request body."""
    st = study(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        # Only JSON: a page elsewhere cannot send that without CORS allowing it.
        return JSONResponse(
            {"error": "content_type", "detail": "send the file as application/json"},
            status_code=415,
        )
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > transfer.MAX_BYTES:
            break  # parse() names it too big; the rest is not read into memory
    try:
        parsed = await run_in_threadpool(transfer.parse, bytes(raw), st.content)
    except transfer.ImportProblem as exc:
        return JSONResponse(
            {"error": exc.code, "detail": exc.detail, "message": _problem_text(exc)},
            status_code=422,
        )
    who = st.cookies.for_write(request)
    await st.db.call(transfer.apply, st.store, who.id or "", parsed.doc)
    doc = parsed.doc
    response = JSONResponse(
        {
            "imported": {
                "answers": len(doc.answers),
                "cards": len(doc.cards),
                "speed_runs": len(doc.speed_runs),
                "exam_runs": len(doc.exam_runs),
            },
            "skipped": parsed.skipped,
        }
    )
    st.cookies.attach(response, who, request)
    return response


@router.get("/api/me/progress")
@on_db_thread
def api_progress(request: Request) -> JSONResponse:
    st = study(request)
    who = st.cookies.read(request)
    p = st.store.progress(who.id, utcnow())
    return JSONResponse(
        {"answered": p.answered, "correct": p.correct, "due": p.due},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/api/exam/questions")
def api_questions(
    request: Request, with_answers: str = "", topic: str = "", level: str = ""
) -> JSONResponse:
    st = study(request)
    show = with_answers in ("1", "true", "yes")
    items = [
        q.to_json(show)
        for q in st.content.questions.values()
        if (not topic or topic in q.topics) and (not level or q.level == level)
    ]
    return JSONResponse({"count": len(items), "questions": items})
