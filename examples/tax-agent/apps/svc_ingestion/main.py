"""Ingestion: accepts document manifests in YAML and reports what it received (non-ML)."""

from __future__ import annotations

import orjson
import yaml
from dateutil import parser as dates
from fastapi import FastAPI, Request, Response

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-ingestion")
app = FastAPI(title="svc-ingestion")
app.include_router(health_router(settings))


@app.post("/documents")
async def receive(request: Request) -> Response:
    manifest = yaml.safe_load(await request.body()) or {}
    received = dates.parse(str(manifest.get("date", "2024-04-05T10:00:00Z"))).isoformat()
    return Response(orjson.dumps({"documents": len(manifest.get("files", [])), "received": received}),
                    media_type="application/json")
