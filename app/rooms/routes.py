"""Room pages: `/classroom` (create, console, QR, report) and `/join`, `/r/{code}`.

Forms are plain POSTs (the same-origin rule applies), cookies are HttpOnly. The teacher's
token lives only in the teacher's cookie; a student's token only in the student's.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.rooms.codes import MAX_NICK, clean_nick, default_nick, normalize_code
from app.rooms.hub import results_for
from app.rooms.model import RoomMeta
from app.rooms.polls import exam_questions, most_chosen_wrong, tally
from app.rooms.recording import room_recording
from app.rooms.service import JoinRefused
from app.rooms.state import Rooms, student_cookie, teacher_cookie
from app.web import i18n
from app.web.teacher import teacher_gate

router = APIRouter()
COOKIE_AGE = 3 * 3600 + 600  # a little longer than a room lives without activity


def _rooms(request: Request) -> Rooms:
    return request.app.state.rooms


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    response = request.app.state.templates.TemplateResponse(
        request, name, {"lang": i18n.current_lang.get(), **ctx}, status_code=status
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def needs_password(request: Request) -> bool:
    """Rooms on a public or LAN address are created only by the teacher (their password)."""
    settings = request.app.state.settings
    return settings.public or not settings.is_loopback


def _gate(request: Request) -> Response | None:
    if not needs_password(request):
        return None
    gate = request.app.state.teacher
    if gate.is_teacher(request):
        return None
    if not gate.enabled:
        return _render(request, "teacher_login.html", {"gate": gate, "state": "off"}, 403)
    if request.method == "GET":
        return RedirectResponse("/teacher/login?next=/classroom", status_code=303)
    return teacher_gate(request) or _render(
        request, "teacher_login.html", {"gate": gate, "state": "login", "next": "/classroom"}, 403
    )


def base_url(request: Request) -> str:
    """Where students' phones reach this server: the configured public URL (behind a proxy)
    or the address the teacher's browser used."""
    settings = request.app.state.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = request.headers.get("host") or f"{settings.host}:{settings.port}"
    return f"{request.url.scheme}://{host}"


async def _meta(request: Request, code: str) -> RoomMeta:
    norm = normalize_code(code)
    meta = await _rooms(request).service.meta(norm) if norm else None
    if meta is None:
        raise HTTPException(404, detail="room")
    return meta


def _is_teacher(request: Request, meta: RoomMeta) -> bool:
    token = request.cookies.get(teacher_cookie(meta.code))
    return _rooms(request).service.is_teacher(meta, token)


# -- the teacher ------------------------------------------------------------------------
@router.get("/classroom")
async def classroom(request: Request) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    flow = _rooms(request).flow
    return _render(request, "room_new.html", {"scenarios": list(flow.scenarios.values())})


@router.post("/classroom")
async def create_room(
    request: Request, scenario: Annotated[str, Form(max_length=64)] = ""
) -> Response:
    if (refused := _gate(request)) is not None:
        return refused
    rooms = _rooms(request)
    if scenario not in rooms.flow.scenarios:
        ctx = {"scenarios": list(rooms.flow.scenarios.values()), "error": "scenario"}
        return _render(request, "room_new.html", ctx, 422)
    if not rooms.joins.allow(_client(request), cost=5):
        raise HTTPException(429, detail="rate")
    lang = i18n.current_lang.get()
    recording = await room_recording(rooms.flow, scenario, lang)
    meta, token = await rooms.service.create(scenario, recording)
    response = RedirectResponse(f"/classroom/{meta.code}", status_code=303)
    response.set_cookie(
        teacher_cookie(meta.code),
        token,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/classroom/{code}")
async def console(request: Request, code: str) -> Response:
    meta = await _meta(request, code)
    if not _is_teacher(request, meta):
        return _render(
            request, "room_error.html", {"reason": "not_teacher", "code": meta.code}, 403
        )
    rooms = _rooms(request)
    recording = await rooms.service.recording(meta.code)
    if recording is None:
        raise HTTPException(404, detail="room")
    scenario = rooms.flow.scenarios[meta.slug]
    join = f"{base_url(request)}/r/{meta.code}"
    return _render(
        request,
        "room_teacher.html",
        {
            "meta": meta,
            "scenario": scenario,
            "events": recording.events[: meta.step],
            "catalog": rooms.flow.catalog,
            "stage_html": rooms.renderer.stage(recording, i18n.current_lang.get()),
            "join_url": join,
            "joined": await rooms.service.joined(meta.code),
            "questions": exam_questions(rooms.study.content, scenario.topics),
        },
    )


@router.get("/classroom/{code}/qr.svg")
async def qr(request: Request, code: str) -> Response:
    meta = await _meta(request, code)
    import segno  # only a teacher's room page shows the code: not imported at start

    buf = io.BytesIO()
    segno.make(f"{base_url(request)}/r/{meta.code}", error="m").save(
        buf,
        kind="svg",
        scale=8,
        border=2,
        xmldecl=False,
        svgclass=None,
        lineclass=None,
        title=f"/r/{meta.code}",
    )
    return Response(
        buf.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"}
    )


def report_rows(
    rooms: Rooms, meta: RoomMeta, answers: dict[int, dict[str, bytes]], lang: str
) -> list[dict[str, Any]]:
    rows = []
    for n, poll in enumerate(meta.polls, start=1):
        counts = tally(poll, answers.get(poll.id, {}))
        total = sum(counts)
        right = sum(c for c, ok in zip(counts, poll.right, strict=True) if ok)
        wrong = most_chosen_wrong(poll, counts)
        rows.append(
            {
                "n": n,
                "kind": poll.kind,
                "question": rooms.renderer.question_text(poll, lang),
                "answered": total,
                "right": right,
                "share": round(100 * right / total) if total else 0,
                "wrong": poll.label(lang, wrong) if wrong is not None else "",
                "wrong_count": counts[wrong] if wrong is not None else 0,
            }
        )
    return rows


@router.get("/classroom/{code}/report")
async def report(request: Request, code: str) -> Response:
    meta = await _meta(request, code)
    if not _is_teacher(request, meta):
        return _render(
            request, "room_error.html", {"reason": "not_teacher", "code": meta.code}, 403
        )
    rooms = _rooms(request)
    rows = report_rows(rooms, meta, await rooms.service.all_answers(meta), i18n.current_lang.get())
    return _render(
        request,
        "room_report.html",
        {
            "meta": meta,
            "rows": rows,
            "joined": await rooms.service.joined(meta.code),
            "scenario": rooms.flow.scenarios[meta.slug],
        },
    )


@router.get("/classroom/{code}/report.csv")
async def report_csv(request: Request, code: str) -> Response:
    meta = await _meta(request, code)
    if not _is_teacher(request, meta):
        raise HTTPException(403, detail="teacher")
    rooms = _rooms(request)
    lang = i18n.current_lang.get()
    rows = report_rows(rooms, meta, await rooms.service.all_answers(meta), lang)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "question_no",
            "kind",
            "question",
            "answered",
            "right",
            "share_right_pct",
            "most_chosen_wrong",
            "most_chosen_wrong_count",
        ]
    )
    for r in rows:
        # A leading =, +, - or @ would be a formula in a spreadsheet: quote it as text.
        text = [
            ("'" + v if isinstance(v, str) and v[:1] in "=+-@" else v)
            for v in (r["question"], r["wrong"])
        ]
        writer.writerow(
            [
                r["n"],
                r["kind"],
                text[0],
                r["answered"],
                r["right"],
                r["share"],
                text[1],
                r["wrong_count"],
            ]
        )
    return Response(
        "\ufeff" + out.getvalue(),  # a BOM so spreadsheet programs read UTF-8 Japanese
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="mailflow-room-{meta.code}.csv"',
            "Cache-Control": "no-store",
        },
    )


# -- students ---------------------------------------------------------------------------
@router.get("/join")
async def join_page(request: Request, code: str = "") -> Response:
    if code:
        norm = normalize_code(code)
        if norm and await _rooms(request).service.meta(norm) is not None:
            return RedirectResponse(f"/r/{norm}", status_code=303)
        return _render(
            request, "room_join.html", {"meta": None, "typed": code[:20], "error": "code"}, 404
        )
    return _render(request, "room_join.html", {"meta": None, "typed": "", "error": None})


@router.get("/r/{code}")
async def student_page(request: Request, code: str) -> Response:
    norm = normalize_code(code)
    if norm and norm != code:
        return RedirectResponse(f"/r/{norm}", status_code=303)
    meta = await _meta(request, code)
    rooms = _rooms(request)
    student = await rooms.service.student(meta.code, request.cookies.get(student_cookie(meta.code)))
    if student is None:
        return _render(
            request,
            "room_join.html",
            {
                "meta": meta,
                "typed": meta.code,
                "error": None,
                "suggested": default_nick(i18n.current_lang.get()),
                "max_nick": MAX_NICK,
            },
        )
    recording = await rooms.service.recording(meta.code)
    if recording is None:
        raise HTTPException(404, detail="room")
    rows = []
    if meta.ended:
        rows = results_for(
            rooms.renderer,
            meta,
            await rooms.service.all_answers(meta),
            None,
            lang=i18n.current_lang.get(),
            sid=student.id,
        )
    return _render(
        request,
        "room_student.html",
        {
            "meta": meta,
            "student": student,
            "scenario": rooms.flow.scenarios[meta.slug],
            "events": recording.events[: meta.step],
            "catalog": rooms.flow.catalog,
            "stage_html": rooms.renderer.stage(recording, i18n.current_lang.get()),
            "rows": rows,
        },
    )


@router.post("/r/{code}")
async def join(
    request: Request,
    code: str,
    nick: Annotated[str, Form(max_length=200)] = "",
    count_me: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    meta = await _meta(request, code)
    rooms = _rooms(request)
    lang = i18n.current_lang.get()
    if await rooms.service.student(meta.code, request.cookies.get(student_cookie(meta.code))):
        # Already in (the form sent again, or a second tab): back to their seat, never
        # refused by the cap or the lock and never counted twice.
        return RedirectResponse(f"/r/{meta.code}", status_code=303)
    if not rooms.joins.allow(_client(request)):
        response = _render(
            request,
            "room_join.html",
            {
                "meta": meta,
                "typed": meta.code,
                "error": "rate",
                "suggested": clean_nick(nick, lang),
                "max_nick": MAX_NICK,
            },
            429,
        )
        response.headers["Retry-After"] = "10"
        return response
    study = rooms.study
    who = study.cookies.for_write(request) if count_me else None
    try:
        _student, token = await rooms.service.join(
            meta, clean_nick(nick, lang), who.id if who else None
        )
    except JoinRefused as exc:
        return _render(
            request,
            "room_join.html",
            {
                "meta": meta,
                "typed": meta.code,
                "error": exc.code,
                "suggested": clean_nick(nick, lang),
                "max_nick": MAX_NICK,
            },
            409,
        )
    await rooms.service.publish(meta.code, {"t": "count"})
    response = RedirectResponse(f"/r/{meta.code}", status_code=303)
    response.set_cookie(
        student_cookie(meta.code),
        token,
        max_age=COOKIE_AGE,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    if who is not None:
        study.cookies.attach(response, who, request)
    return response
