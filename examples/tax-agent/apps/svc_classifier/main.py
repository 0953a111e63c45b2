"""Classifier: sorts documents into tax categories with scikit-learn (ML, on base-ml)."""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-classifier")
app = FastAPI(title="svc-classifier")
app.include_router(health_router(settings))

_EXAMPLES = ["invoice total amount due", "salary payslip employer", "bank statement balance", "invoice vat number"]
_LABELS = ["invoice", "payslip", "statement", "invoice"]
_vectorizer = TfidfVectorizer().fit(_EXAMPLES)
_model = LogisticRegression().fit(_vectorizer.transform(_EXAMPLES), _LABELS)


@app.get("/classify")
def classify(text: str) -> dict[str, object]:
    probabilities = _model.predict_proba(_vectorizer.transform([text]))[0]
    best = int(np.argmax(probabilities))
    return {"label": _model.classes_[best], "confidence": round(float(probabilities[best]), 3)}
