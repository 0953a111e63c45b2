"""SPDX 2.3 JSON SBOMs of images, from the build's inventory.

One package for the image (its manifest digest as a SHA256 checksum and an ``oci`` purl), one per
Debian package (version, architecture, the ``.deb``'s SHA256, its source package, a ``deb`` purl), one per
Python distribution (the wheel's SHA256, a ``pypi`` purl), one per first-party file set (its layer's
digest), and the base image: by digest, and, when lamina built it, through an external document
reference to the base's own SBOM (namespace and SHA-1, as SPDX requires). Every package comment names
the layer that holds it. The bytes are deterministic: no random ids, the image's own creation time.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lamina.supply.facts import (
    ComponentFacts,
    SbomInput,
    component_facts,
    derived_uuid,
    image_purl,
    package_kind,
    sha256_hex,
    spdx_id,
    tool_name,
)

MEDIA_TYPE = "application/spdx+json"
IMAGE_ID = "SPDXRef-Image"
BASE_ID = "SPDXRef-BaseImage"
BASE_DOC = "DocumentRef-base"


def namespace(digest: str, name: str) -> str:
    """The document namespace: a URI that depends only on the image (so the base's can be predicted)."""
    return f"https://lamina.invalid/spdx/{name}/{derived_uuid('spdx', digest)}"


def spdx_sbom(source: SbomInput) -> bytes:
    """The SPDX 2.3 JSON document describing the image, as canonical bytes."""
    inv = source.inventory
    packages = [_image_package(source)]
    relationships: list[dict[str, str]] = [_rel("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)]
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{inv.image}@{inv.digest}",
        "documentNamespace": namespace(inv.digest, inv.image),
        "creationInfo": {"created": source.created, "creators": [f"Tool: {tool_name()}", "Organization: lamina"]},
    }
    if inv.base_digest:
        packages.append(_base_package(source))
        relationships.append(_rel(IMAGE_ID, "DESCENDANT_OF", BASE_ID))
        if source.base_sbom is not None:
            base = json.loads(source.base_sbom)
            doc["externalDocumentRefs"] = [{
                "externalDocumentId": BASE_DOC,
                "spdxDocument": base["documentNamespace"],
                "checksum": {"algorithm": "SHA1", "checksumValue": hashlib.sha1(source.base_sbom).hexdigest()},
            }]
            relationships.append(_rel(BASE_ID, "DESCRIBED_BY", f"{BASE_DOC}:SPDXRef-DOCUMENT"))
    for element, facts in component_facts(source, _element_id):
        packages.append(_package(element, facts))
        relationships.append(_rel(IMAGE_ID, "CONTAINS", element))
    doc["packages"] = packages
    doc["relationships"] = relationships
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _rel(a: str, kind: str, b: str, *, comment: str = "") -> dict[str, str]:
    out = {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}
    if comment:
        out["comment"] = comment
    return out


def _image_package(source: SbomInput) -> dict[str, Any]:
    inv = source.inventory
    package: dict[str, Any] = {
        "SPDXID": IMAGE_ID,
        "name": inv.image,
        "versionInfo": source.version or inv.digest,
        "supplier": "Organization: lamina",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": sha256_hex(inv.digest)}],
        "externalRefs": [_purl_ref(image_purl(inv.image, inv.digest, source.architecture, source.reference))],
        "primaryPackagePurpose": "CONTAINER",
        "releaseDate": source.created,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": f"platform {inv.platform}; manifest digest {inv.digest}",
    }
    return package


def _base_package(source: SbomInput) -> dict[str, Any]:
    inv = source.inventory
    return {
        "SPDXID": BASE_ID,
        "name": inv.base or "base",
        "versionInfo": inv.base_digest,
        "supplier": "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": sha256_hex(inv.base_digest)}],
        "externalRefs": [_purl_ref(image_purl(inv.base or "base", inv.base_digest, source.architecture))],
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": "the base image, by manifest digest; its packages are listed in this document too",
    }


def _element_id(facts: ComponentFacts) -> str:
    """A package's SPDX id: its kind, name, version, architecture and layer."""
    c = facts.item.component
    return spdx_id(c.kind, c.name, c.version, c.arch, facts.item.layer)


def _package(element: str, facts: ComponentFacts) -> dict[str, Any]:
    item = facts.item
    c = item.component
    package: dict[str, Any] = {
        "SPDXID": element,
        "name": c.name,
        "versionInfo": facts.version,
        "supplier": f"Organization: {facts.supplier}",
        "downloadLocation": c.url or "NOASSERTION",
        "filesAnalyzed": False,
    }
    if facts.sha256:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": facts.sha256}]
    if c.filename and c.kind != "files":
        package["packageFileName"] = c.filename.rsplit("/", 1)[-1]
    if c.kind == "deb" and c.source_package:
        package["sourceInfo"] = f"built package from: {c.source_package}"
    if c.kind == "files":
        package["primaryPackagePurpose"] = "SOURCE" if c.filename else "FILE"
    else:
        package["primaryPackagePurpose"] = "LIBRARY" if c.kind == "python" else "INSTALL"
    if facts.purl:
        package["externalRefs"] = [_purl_ref(facts.purl)]
    package.update({"licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION",
                    "copyrightText": "NOASSERTION"})
    where = [f"layer {item.layer}" if item.layer else "", f"added by {item.added_by}" if item.added_by else "",
             f"from {c.origin}" if c.origin else "", f"path {c.filename}" if c.kind == "files" and c.filename else ""]
    package["comment"] = "; ".join(w for w in where if w)
    return package


def _purl_ref(locator: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": locator}


def described_digest(document: bytes) -> str:
    """The manifest digest the SPDX document says it describes (its image package's SHA256)."""
    doc = json.loads(document)
    described = {r["relatedSpdxElement"] for r in doc.get("relationships", [])
                 if r.get("spdxElementId") == "SPDXRef-DOCUMENT" and r.get("relationshipType") == "DESCRIBES"}
    for package in doc.get("packages", []):
        if package.get("SPDXID") in described and (sha := _sha256(package)) is not None:
            return "sha256:" + sha
    return ""


def packages_of(document: bytes) -> set[tuple[str, str, str, str]]:
    """``(kind, name, version, sha256)`` of every Debian and Python package the document lists."""
    return {(kind, package["name"], package.get("versionInfo", ""), _sha256(package) or "")
            for package in json.loads(document).get("packages", [])
            if (kind := package_kind(r["referenceLocator"] for r in package.get("externalRefs", [])
                                     if r.get("referenceType") == "purl")) is not None}


def _sha256(package: dict[str, Any]) -> str | None:
    """The hex of a package's SHA256 checksum; None when it has none."""
    return next((c["checksumValue"] for c in package.get("checksums", []) if c.get("algorithm") == "SHA256"), None)
