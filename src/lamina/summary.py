"""The machine-readable summary of a build (``lamina build --json``): what was built, written and pushed.

Its keys are a contract with scripts (CI reads the digests from it): add keys, never rename them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lamina.build import BuiltImage
from lamina.oci.cache import RemoteLayers
from lamina.oci.remote import PushReport
from lamina.publish import Output


def build_summary(built: Sequence[BuiltImage], output: Output | None, reports: Sequence[PushReport],
                  cache: RemoteLayers | None = None) -> dict[str, Any]:
    """The summary as JSON-ready data: images (digest, layers built and reused, downloads, time), pushes, and
    what the registry's layer cache gave (``cache``: null when the build read none)."""
    return {
        "output": str(output) if output else None,
        "images": [
            {
                "name": b.name,
                "digest": b.image.digest,
                "layers": len(b.image.layers),
                "built_layers": len(b.layers) - b.reused,
                "reused_layers": b.reused,
                "platform": str(b.platform),
                "debian_packages": b.added("debian"),
                "python_distributions": b.added("python"),
                "downloaded_bytes": b.downloaded,
                "seconds": round(b.seconds, 3),
            }
            for b in built
        ],
        "pushed": [
            {"target": r.target, "digest": r.digest, "bytes_uploaded": r.bytes_uploaded, "blobs": r.outcomes}
            for r in reports
        ],
        "cache": None if cache is None else {
            "references": [str(r) for r in cache.refs],
            "hits": cache.hits,
            "rejected": list(cache.rejected),
        },
    }
