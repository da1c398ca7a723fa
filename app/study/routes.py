"""Study pages (quiz, question bank, progress)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
