"""The /lab page: endpoints, copy-ready commands, the live view, mailboxes, reset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.lab.commands import commands_for, config_files, mail_app_servers
from app.lab.control import LabProcess, LabUnavailable
from app.topology import LAB_PUBLIC as SERVICES
from app.web import i18n
from app.web.teacher import teacher_gate

router = APIRouter()


def _lab(request: Request) -> LabProcess:
    lab: LabProcess | None = getattr(request.app.state, "lab", None)
    if lab is None:
        raise HTTPException(404, detail="lab_off")
    return lab


async def _ask(lab: LabProcess, op: str, **args: Any) -> Any:
    """The lab process owns the Maildirs (UIDs, caches, IDLE sessions): it answers."""
    try:
        return await lab.request(op, **args)
    except LabUnavailable:
        raise HTTPException(503, detail="lab_restarting") from None
    except TimeoutError:  # a lab process that hangs: the page says so, it does not hang
        raise HTTPException(503, detail="lab_busy") from None


def _shown_host(request: Request) -> str:
    host = request.app.state.settings.lab_bind_host
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


@router.get("/lab")
async def lab_page(request: Request) -> Response:
    lab = getattr(request.app.state, "lab", None)
    host = _shown_host(request)
    context = {"lab": lab, "services": SERVICES, "lang": i18n.current_lang.get(), "host": host}
    if lab is not None:
        context["commands"] = commands_for(host, lab.ports)
        context["config_files"] = config_files(host, lab.ports)
        context["mail_app"] = mail_app_servers(host, lab.ports)
        context["fingerprint"] = lab.tls.fingerprint_sha256
        context["accounts"] = lab.accounts.passwords
        gate = request.app.state.teacher
        # Public mode: the viewer and reset are the teacher's (see app/web/teacher.py).
        context["teacher_only"] = gate.public and not gate.is_teacher(request)
    return request.app.state.templates.TemplateResponse(request, "lab.html", context)


@router.get("/lab/mailflow-ca.pem")
async def ca_certificate(request: Request) -> FileResponse:
    tls = request.app.state.tls
    return FileResponse(
        tls.ca_file, media_type="application/x-pem-file", filename="mailflow-ca.pem"
    )


@router.get("/lab/mailbox/{account}/{folder}")
async def mailbox(request: Request, account: str, folder: str) -> Response:
    lab = _lab(request)
    if (refused := teacher_gate(request)) is not None:
        return refused
    found = await _ask(lab, "mailbox", account=account, folder=folder)
    if found is None:
        raise HTTPException(404, detail="mailbox")
    context = {"account": account, "folder": folder, **found, "lang": i18n.current_lang.get()}
    return request.app.state.templates.TemplateResponse(request, "lab_mailbox.html", context)


@router.get("/lab/mailbox/{account}/{folder}/{uid}")
async def message(request: Request, account: str, folder: str, uid: str) -> Response:
    lab = _lab(request)
    if (refused := teacher_gate(request)) is not None:
        return refused
    # isdigit() alone admits "²" and other Unicode digits that int() refuses.
    if not (uid.isascii() and uid.isdigit()):
        raise HTTPException(404, detail="message")
    found = await _ask(lab, "message", account=account, folder=folder, uid=int(uid))
    if found is None:
        raise HTTPException(404, detail="message")
    context = {"account": account, "folder": folder, **found, "lang": i18n.current_lang.get()}
    return request.app.state.templates.TemplateResponse(request, "lab_message.html", context)


@router.post("/lab/reset")
async def reset(request: Request) -> Response:
    lab = _lab(request)
    # Cross-site posts never get here: app/web/security.py refuses them for every route.
    if (refused := teacher_gate(request)) is not None:
        return refused
    removed = await _ask(lab, "reset")
    request.app.state.hub.clear()
    return RedirectResponse(f"/lab?reset={removed}", status_code=303)
