"""Forms: renders tax forms from templates (non-ML)."""

from __future__ import annotations

import jinja2
from fastapi import FastAPI

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-forms")
app = FastAPI(title="svc-forms")
app.include_router(health_router(settings))
TEMPLATE = jinja2.Template("Form {{ number }} for {{ name }}")


@app.get("/forms/{number}")
def render(number: str, name: str = "taxpayer") -> dict[str, str]:
    return {"form": TEMPLATE.render(number=number, name=name)}
