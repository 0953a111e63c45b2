"""The health endpoint every service mounts: GET /healthz → 200 {"status": "ok", ...}."""

from __future__ import annotations

import getpass
import os

from fastapi import APIRouter

from libs.settings import Settings


def health_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "service": settings.service, "uid": os.getuid(), "user": getpass.getuser()}

    return router
