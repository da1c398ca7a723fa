"""Study pages (port quiz, question bank, progress) and their JSON API."""

from __future__ import annotations

from fastapi import APIRouter

from app.study import routes_exam, routes_get_back, routes_me, routes_ports

router = APIRouter()
router.include_router(routes_ports.router)
router.include_router(routes_exam.router)
router.include_router(routes_me.router)
router.include_router(routes_get_back.router)
