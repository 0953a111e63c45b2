"""CycloneDX 1.6 JSON SBOMs of images, from the build's inventory.

The image is ``metadata.component`` (type ``container``, its manifest digest as a SHA-256 hash); every
Debian package, Python distribution and first-party file set is a component with its purl, hash and the
layer holding it (``lamina:layer`` property); the base image is a ``container`` component whose external
reference of type ``bom`` is a BOM-Link (``urn:cdx:<serial>/1``) to the base's own SBOM when lamina built
it. The serial number is a UUID derived from the image digest, the timestamp is the image's creation time,
so the same image gives the same bytes. (cyclonedx-python-lib validates it in the tests; it is not used
to write it: its serializer draws random bom-refs and serial numbers unless each is set by hand, and the
document is small enough to write exactly.)
"""

from __future__ import annotations

import json
from typing import Any

from lamina import __version__
from lamina.inventory import Placed
from lamina.supply.facts import (
    TOOL,
    SbomInput,
    component_version,
    derived_uuid,
    image_purl,
    purl,
    sha256_hex,
    supplier,
)

MEDIA_TYPE = "application/vnd.cyclonedx+json"
IMAGE_REF = "image"
BASE_REF = "base-image"


def serial_number(digest: str) -> str:
    return f"urn:uuid:{derived_uuid('cyclonedx', digest)}"


def cyclonedx_sbom(source: SbomInput) -> bytes:
    """The CycloneDX 1.6 JSON document describing the image, as canonical bytes."""
    inv = source.inventory
    image = {
        "type": "container",
        "bom-ref": IMAGE_REF,
        "supplier": {"name": "lamina"},
        "name": inv.image,
        "version": source.version or inv.digest,
        "hashes": [{"alg": "SHA-256", "content": sha256_hex(inv.digest)}],
        "purl": image_purl(inv.image, inv.digest, source.architecture, source.reference),
        "properties": [{"name": "lamina:platform", "value": inv.platform},
                       {"name": "lamina:manifest-digest", "value": inv.digest}],
    }
    components: list[dict[str, Any]] = []
    depends: list[str] = []
    if inv.base_digest:
        base: dict[str, Any] = {
            "type": "container",
            "bom-ref": BASE_REF,
            "name": inv.base or "base",
            "version": inv.base_digest,
            "hashes": [{"alg": "SHA-256", "content": sha256_hex(inv.base_digest)}],
            "purl": image_purl(inv.base or "base", inv.base_digest, source.architecture),
        }
        if source.base_sbom is not None:
            serial = json.loads(source.base_sbom)["serialNumber"]
            base["externalReferences"] = [{"type": "bom", "url": f"urn:cdx:{serial.removeprefix('urn:uuid:')}/1",
                                           "comment": "the base image's own SBOM"}]
        components.append(base)
        depends.append(BASE_REF)
    seen: set[str] = set()
    for item in inv.items:
        component = _component(item, source)
        if component["bom-ref"] in seen:
            continue
        seen.add(component["bom-ref"])
        components.append(component)
        depends.append(component["bom-ref"])
    doc = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial_number(inv.digest),
        "version": 1,
        "metadata": {
            "timestamp": source.created,
            "tools": {"components": [{"type": "application", "name": TOOL, "version": __version__}]},
            "component": image,
        },
        "components": components,
        "dependencies": [{"ref": IMAGE_REF, "dependsOn": depends}],
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _component(item: Placed, source: SbomInput) -> dict[str, Any]:
    c = item.component
    locator = purl(item, source.distro, architecture=source.architecture)
    out: dict[str, Any] = {
        "type": "library" if c.kind != "files" else "file",
        "bom-ref": locator or f"{c.kind}:{c.name}@{item.layer}",
        "supplier": {"name": supplier(item, source.project)},
        "name": c.name,
        "version": component_version(item),
    }
    if c.sha256:
        out["hashes"] = [{"alg": "SHA-256", "content": sha256_hex(c.sha256)}]
    if locator:
        out["purl"] = locator
    if c.url:
        out["externalReferences"] = [{"type": "distribution", "url": c.url}]
    properties = [("lamina:kind", c.kind), ("lamina:layer", item.layer), ("lamina:diff-id", item.diff_id),
                  ("lamina:added-by", item.added_by), ("lamina:origin", c.origin)]
    if c.kind == "deb":
        properties += [("lamina:deb:source", c.source_package), ("lamina:deb:arch", c.arch)]
    if c.kind == "files":
        properties.append(("lamina:path", c.filename))
    out["properties"] = [{"name": k, "value": v} for k, v in properties if v]
    return out


def described_digest(document: bytes) -> str:
    """The manifest digest the CycloneDX document says it describes."""
    component = json.loads(document).get("metadata", {}).get("component", {})
    for h in component.get("hashes", []):
        if h.get("alg") == "SHA-256":
            return "sha256:" + h["content"]
    return ""


def packages_of(document: bytes) -> set[tuple[str, str, str, str]]:
    """``(kind, name, version, sha256)`` of every Debian and Python package the document lists."""
    out = set()
    for c in json.loads(document).get("components", []):
        locator = c.get("purl", "")
        kind = "deb" if locator.startswith("pkg:deb/") else "python" if locator.startswith("pkg:pypi/") else None
        if kind is None:
            continue
        sha = next((h["content"] for h in c.get("hashes", []) if h["alg"] == "SHA-256"), "")
        out.add((kind, c["name"], c.get("version", ""), sha))
    return out
