"""The report as JSON: a stable, documented schema (docs/report.md), versioned by ``schema``.

Fields are only ever added within a schema version; sizes are integers in bytes, digests are full.
"""

from __future__ import annotations

import json
from typing import Any

from lamina.report.diff import FamilyDiff
from lamina.report.family import LAMINA_LAYER_BUDGET, RUNTIME_LAYER_LIMIT, FamilyReport
from lamina.report.thresholds import Breach

SCHEMA = "lamina.report/1"
DIFF_SCHEMA = "lamina.diff/1"


def family_json(report: FamilyReport, breaches: list[Breach] | None = None) -> dict[str, Any]:
    names = [i.name for i in report.images]
    return {
        "schema": SCHEMA,
        "limits": {"runtime_layers": RUNTIME_LAYER_LIMIT, "lamina_layer_budget": LAMINA_LAYER_BUDGET},
        "images": [i.to_json() for i in report.images],
        "layers": [x.to_json() for x in report.layers.values()],
        "family": {
            "registry_bytes": report.registry_bytes,
            "images_bytes": report.images_bytes,
            "monolithic_bytes": report.monolithic_bytes,
            "duplicate_bytes": report.duplicate_bytes,
            "wasted_bytes": sum(i.wasted for i in report.images),
            "sharing": {"images": names, "layers": [[c for c, _ in row] for row in report.matrix()],
                        "bytes": [[b for _, b in row] for row in report.matrix()]},
        },
        "largest_packages": [p.to_json() for p in report.largest],
        "duplicates": [d.to_json() for d in report.duplicates],
        "blast_radius": [r.to_json() for r in report.blast],
        "thresholds": [b.to_json() for b in breaches or []],
    }


def diff_json(diff: FamilyDiff) -> dict[str, Any]:
    return {"schema": DIFF_SCHEMA, **diff.to_json()}


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"
