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

from lamina.inventory import Placed
from lamina.supply.facts import (
    SbomInput,
    component_version,
    derived_uuid,
    image_purl,
    purl,
    sha256_hex,
    spdx_id,
    supplier,
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
    seen: set[str] = set()
    for item in inv.items:
        package = _package(item, source)
        if package["SPDXID"] in seen:
            continue
        seen.add(package["SPDXID"])
        packages.append(package)
        relationships.append(_rel(IMAGE_ID, "CONTAINS", package["SPDXID"]))
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


def _package(item: Placed, source: SbomInput) -> dict[str, Any]:
    c = item.component
    package: dict[str, Any] = {
        "SPDXID": spdx_id(c.kind, c.name, c.version, c.arch, item.layer),
        "name": c.name,
        "versionInfo": component_version(item),
        "supplier": f"Organization: {supplier(item, source.project)}",
        "downloadLocation": c.url or "NOASSERTION",
        "filesAnalyzed": False,
    }
    if c.sha256:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha256_hex(c.sha256)}]
    if c.filename and c.kind != "files":
        package["packageFileName"] = c.filename.rsplit("/", 1)[-1]
    if c.kind == "deb" and c.source_package:
        package["sourceInfo"] = f"built package from: {c.source_package}"
    if c.kind == "files":
        package["primaryPackagePurpose"] = "SOURCE" if c.filename else "FILE"
    else:
        package["primaryPackagePurpose"] = "LIBRARY" if c.kind == "python" else "INSTALL"
    locator = purl(item, source.distro, architecture=source.architecture)
    if locator:
        package["externalRefs"] = [_purl_ref(locator)]
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
        if package.get("SPDXID") in described:
            for checksum in package.get("checksums", []):
                if checksum.get("algorithm") == "SHA256":
                    return "sha256:" + checksum["checksumValue"]
    return ""


def packages_of(document: bytes) -> set[tuple[str, str, str, str]]:
    """``(kind, name, version, sha256)`` of every Debian and Python package the document lists."""
    out = set()
    for package in json.loads(document).get("packages", []):
        locators = [r["referenceLocator"] for r in package.get("externalRefs", []) if r.get("referenceType") == "purl"]
        kind = next((k for k in ("deb", "pypi") if any(loc.startswith(f"pkg:{k}/") for loc in locators)), None)
        if kind is None:
            continue
        sha = next((c["checksumValue"] for c in package.get("checksums", []) if c["algorithm"] == "SHA256"), "")
        out.add(("deb" if kind == "deb" else "python", package["name"], package.get("versionInfo", ""), sha))
    return out
