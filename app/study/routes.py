"""Study pages (port quiz, question bank, progress) and their JSON API."""

from __future__ import annotations

import os

from fastapi import APIRouter

from app.study import routes_exam, routes_get_back, routes_me, routes_ports

router = APIRouter()
router.include_router(routes_ports.router)
router.include_router(routes_exam.router)
router.include_router(routes_me.router)
router.include_router(routes_get_back.router)

if os.environ.get("MAILFLOW_BENCH") == "1":
    # Only the benchmark server gets the database-free twin of the answer endpoint.
    from app.study import bench_routes

    router.include_router(bench_routes.router)
