"""Semantic search and retrieval (full profile)."""

from __future__ import annotations

import faiss
import numpy as np
from fastapi import FastAPI
from rank_bm25 import BM25Okapi
from sparse_dot_topn import sp_matmul_topn

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-rag-retriever")
app = FastAPI(title="svc-rag-retriever")
app.include_router(health_router(settings))
_PASSAGES = ["self assessment deadline", "vat returns quarterly", "payslips show tax"]
_bm25 = BM25Okapi([p.split() for p in _PASSAGES])
_index = faiss.IndexFlatL2(4)
_index.add(np.eye(4, dtype=np.float32)[:3])


@app.get("/search")
def search(q: str) -> dict[str, object]:
    best = int(np.argmax(_bm25.get_scores(q.split())))
    return {"passage": _PASSAGES[best], "vectors": _index.ntotal, "topn": sp_matmul_topn.__name__}
