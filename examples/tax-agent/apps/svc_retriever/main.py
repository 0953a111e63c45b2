"""Retriever: keyword search over indexed passages with BM25 (ML, on base-ml)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from rank_bm25 import BM25Okapi

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-retriever")
app = FastAPI(title="svc-retriever")
app.include_router(health_router(settings))

_PASSAGES = ["self assessment deadline is 31 january", "vat returns are quarterly", "payslips show tax paid"]
_index = BM25Okapi([p.split() for p in _PASSAGES])


@app.get("/search")
def search(q: str) -> dict[str, object]:
    scores = _index.get_scores(q.lower().split())
    best = int(np.argmax(scores))
    return {"passage": _PASSAGES[best], "score": round(float(scores[best]), 3)}
