"""Writing a report file: ``.html`` gives the page, anything else the JSON (``lamina build --report FILE``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lamina.inventory import load_inventory
from lamina.oci.store import atomic_write
from lamina.report.diff import FamilyDiff
from lamina.report.family import FamilyReport, analyze
from lamina.report.htmlout import render_html
from lamina.report.jsonout import dumps, family_json
from lamina.report.source import SourceImage
from lamina.report.thresholds import Breach


def analyze_with_store(images: Sequence[SourceImage], store: Any, on_layer=None) -> FamilyReport:
    """:func:`analyze` with the store as the scan cache and lamina's recorded inventories."""
    return analyze(images, cache=store, inventories=lambda digest: load_inventory(store, digest), on_layer=on_layer)


def write_report(path: Path, report: FamilyReport, *, title: str, diff: FamilyDiff | None = None,
                 breaches: Sequence[Breach] = ()) -> None:
    """Write ``report`` atomically: HTML when ``path`` ends in ``.html``/``.htm``, else JSON."""
    if path.suffix.lower() in (".html", ".htm"):
        data = render_html(report, title=title, diff=diff, breaches=breaches)
    else:
        data = dumps(family_json(report, list(breaches)))
    atomic_write(path, data.encode())
