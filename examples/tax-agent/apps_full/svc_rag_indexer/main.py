"""Document indexing and embedding (full profile)."""

from __future__ import annotations

import docx
import faiss
import numpy as np
import openpyxl
import pptx
import tiktoken
from bs4 import BeautifulSoup
from fastapi import FastAPI
from sparse_dot_topn import sp_matmul_topn

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-rag-indexer")
app = FastAPI(title="svc-rag-indexer")
app.include_router(health_router(settings))


@app.post("/index")
def index(html: str) -> dict[str, object]:
    text = BeautifulSoup(html, "html.parser").get_text(" ")
    tokens = text.split()  # tiktoken's encodings are downloaded at run time: not in the image
    encoder = tiktoken.__name__
    vectors = np.random.default_rng(0).random((max(1, len(tokens)), 8), dtype=np.float32)
    store = faiss.IndexFlatL2(8)
    store.add(vectors)
    formats = [docx.__name__, pptx.__name__, openpyxl.__name__, sp_matmul_topn.__name__, encoder]
    return {"tokens": len(tokens), "vectors": store.ntotal, "formats": formats}
