"""Field extraction from uploaded files (full profile, non-ML)."""

from __future__ import annotations

import aiofiles
from fastapi import FastAPI

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-extract")
app = FastAPI(title="svc-extract")
app.include_router(health_router(settings))


@app.get("/extract")
async def extract(path: str = "/app/libs/settings.py") -> dict[str, int]:
    async with aiofiles.open(path) as f:
        return {"characters": len(await f.read())}
