"""OCR and document AI (full profile): text from scanned PDFs and images with tesseract."""

from __future__ import annotations

import shutil

import cv2
import fitz  # PyMuPDF
import pytesseract
from fastapi import FastAPI
from pdf2image import pdfinfo_from_bytes
from PIL import Image

from libs.health import health_router
from libs.settings import Settings

settings = Settings.load("svc-ocr")
app = FastAPI(title="svc-ocr")
app.include_router(health_router(settings))


@app.get("/engines")
def engines() -> dict[str, object]:
    return {
        "tesseract": str(pytesseract.get_tesseract_version()),
        "pdftotext": shutil.which("pdftotext") is not None,
        "opencv": cv2.__version__,
        "pymupdf": fitz.VersionBind,
        "pillow": Image.__version__,
        "pdf2image": pdfinfo_from_bytes.__name__,
    }
