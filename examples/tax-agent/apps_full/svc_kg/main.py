"""Knowledge graph (full profile, non-ML): neo4j and redis come from base-runtime."""

from __future__ import annotations

import neo4j
import redis
from fastapi import FastAPI

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-kg")
app = FastAPI(title="svc-kg")
app.include_router(health_router(settings))


@app.get("/drivers")
def drivers() -> dict[str, str]:
    return {"neo4j": neo4j.__version__, "redis": redis.__version__}
