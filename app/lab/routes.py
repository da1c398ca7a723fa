"""The /lab page: endpoints, copy-ready commands, the live view, mailboxes, reset."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from app.lab.commands import commands_for, config_files, mail_app_servers
from app.lab.world import SERVICES, LabWorld
from app.web import i18n
from app.web.teacher import teacher_gate

router = APIRouter()
PREVIEW_LIMIT = 256 * 1024  # a huge message is shown cut, never loaded whole into a page


def _lab(request: Request) -> LabWorld:
    lab: LabWorld | None = getattr(request.app.state, "lab", None)
    if lab is None:
        raise HTTPException(404, detail="lab_off")
    return lab


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


def _summaries(lab: LabWorld, account: str, folder: str) -> list[dict[str, object]]:
    box = lab.store.folder(account, folder)
    out = []
    for m in reversed(box.messages()):
        head = box.read(m.key)[:PREVIEW_LIMIT]
        msg = message_from_bytes(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=policy.default)
        try:
            date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
        except (TypeError, ValueError):
            date = None
        out.append(
            {
                "uid": m.uid,
                "from": str(msg["From"] or ""),
                "subject": str(msg["Subject"] or ""),
                "date": date,
                "size": m.size,
                "flags": sorted(m.flags),
                "file": m.relpath,
            }
        )
    return out


@router.get("/lab/mailbox/{account}/{folder}")
async def mailbox(request: Request, account: str, folder: str) -> Response:
    lab = _lab(request)
    if (refused := teacher_gate(request)) is not None:
        return refused
    if not lab.accounts.exists(account) or folder not in lab.store.folder_names(account):
        raise HTTPException(404, detail="mailbox")
    context = {
        "account": account,
        "folder": folder,
        "folders": lab.store.folder_names(account),
        "accounts": lab.accounts.users,
        "messages": _summaries(lab, account, folder),
        "lang": i18n.current_lang.get(),
    }
    return request.app.state.templates.TemplateResponse(request, "lab_mailbox.html", context)


@router.get("/lab/mailbox/{account}/{folder}/{uid}")
async def message(request: Request, account: str, folder: str, uid: str) -> Response:
    lab = _lab(request)
    if (refused := teacher_gate(request)) is not None:
        return refused
    if (
        # isdigit() alone admits "²" and other Unicode digits that int() refuses.
        not (uid.isascii() and uid.isdigit())
        or not lab.accounts.exists(account)
        or folder not in lab.store.folder_names(account)
    ):
        raise HTTPException(404, detail="message")
    box = lab.store.folder(account, folder)
    found = next((m for m in box.messages() if m.uid == int(uid)), None)
    if found is None:
        raise HTTPException(404, detail="message")
    raw = box.read(found.key)
    text = raw[:PREVIEW_LIMIT].decode("utf-8", errors="replace")
    context = {
        "account": account,
        "folder": folder,
        "uid": found.uid,
        "raw": text,
        "cut": len(raw) > PREVIEW_LIMIT,
        "size": len(raw),
        "file": found.relpath,
        "lang": i18n.current_lang.get(),
    }
    return request.app.state.templates.TemplateResponse(request, "lab_message.html", context)


@router.post("/lab/reset")
async def reset(request: Request) -> Response:
    lab = _lab(request)
    # Cross-site posts never get here: app/web/security.py refuses them for every route.
    if (refused := teacher_gate(request)) is not None:
        return refused
    removed = lab.reset_mailboxes()
    request.app.state.hub.clear()
    return RedirectResponse(f"/lab?reset={removed}", status_code=303)
