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
from lamina.supply.facts import (
    TOOL,
    ComponentFacts,
    SbomInput,
    component_facts,
    derived_uuid,
    image_purl,
    package_kind,
    sha256_hex,
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
    for ref, facts in component_facts(source, _bom_ref):
        components.append(_component(ref, facts))
        depends.append(ref)
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


def _bom_ref(facts: ComponentFacts) -> str:
    """A component's bom-ref: its purl, else (first-party files) its kind, name and layer."""
    c = facts.item.component
    return facts.purl or f"{c.kind}:{c.name}@{facts.item.layer}"


def _component(ref: str, facts: ComponentFacts) -> dict[str, Any]:
    item = facts.item
    c = item.component
    out: dict[str, Any] = {
        "type": "library" if c.kind != "files" else "file",
        "bom-ref": ref,
        "supplier": {"name": facts.supplier},
        "name": c.name,
        "version": facts.version,
    }
    if facts.sha256:
        out["hashes"] = [{"alg": "SHA-256", "content": facts.sha256}]
    if facts.purl:
        out["purl"] = facts.purl
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
    sha = _sha256(component)
    return "sha256:" + sha if sha is not None else ""


def packages_of(document: bytes) -> set[tuple[str, str, str, str]]:
    """``(kind, name, version, sha256)`` of every Debian and Python package the document lists."""
    return {(kind, c["name"], c.get("version", ""), _sha256(c) or "")
            for c in json.loads(document).get("components", [])
            if (kind := package_kind([c.get("purl", "")])) is not None}


def _sha256(component: dict[str, Any]) -> str | None:
    """The hex of a component's SHA-256 hash; None when it has none."""
    return next((h["content"] for h in component.get("hashes", []) if h.get("alg") == "SHA-256"), None)
