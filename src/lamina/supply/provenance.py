"""SLSA provenance v1 of an image, as an in-toto statement.

What the statement says: the subject is the image's manifest digest; the builder is lamina at its
version; the external parameters are the inputs a user controls (the project config file and the lock,
each by digest, the image and platform asked for); the resolved dependencies are everything the build
took from outside — the base image by digest, every ``.deb`` and every wheel with its SHA256 and purl,
and the project's git commit; the byproducts are the SBOMs written for the image, by digest, so that a
signed provenance also vouches for them. Times are the image's creation time, never the wall clock:
the same build gives the same statement bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packageurl import PackageURL

from lamina import __version__
from lamina.supply.facts import SbomInput, image_purl, purl, pypi_name, sha256_hex

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://lamina.invalid/build-types/image/v1"
BUILDER_ID = "https://lamina.invalid/builder"


@dataclass(frozen=True)
class BuildFacts:
    """The inputs of a build that are not in the inventory.

    ``config`` and ``lock``: (path relative to the project, sha256 hex of the file's bytes);
    ``source``: where the project's code lives (a git remote URL) and ``revision`` its commit.
    """

    config: tuple[str, str] = ("", "")
    lock: tuple[str, str] = ("", "")
    source: str = ""
    revision: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)


def provenance_statement(source: SbomInput, facts: BuildFacts, sboms: Sequence[tuple[str, bytes, str]] = ()) -> bytes:
    """The in-toto statement (canonical JSON bytes); ``sboms`` are ``(name, bytes, media type)``."""
    import hashlib

    inv = source.inventory
    external: dict[str, Any] = {"image": inv.image, "platform": inv.platform, **dict(sorted(facts.parameters.items()))}
    if facts.config[0]:
        external["config"] = {"path": facts.config[0], "digest": {"sha256": facts.config[1]}}
    if facts.lock[0]:
        external["lock"] = {"path": facts.lock[0], "digest": {"sha256": facts.lock[1]}}
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": source.reference or inv.image, "digest": {"sha256": sha256_hex(inv.digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"lamina": __version__},
                "resolvedDependencies": resolved_dependencies(source, facts),
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"lamina": __version__}},
                "metadata": {"invocationId": f"{inv.image}@{inv.digest}", "finishedOn": source.created},
                "byproducts": [
                    {"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}, "mediaType": media_type}
                    for name, data, media_type in sboms
                ],
            },
        },
    }
    return (json.dumps(statement, indent=2, ensure_ascii=False) + "\n").encode()


def resolved_dependencies(source: SbomInput, facts: BuildFacts) -> list[dict[str, Any]]:
    inv = source.inventory
    out: list[dict[str, Any]] = []
    if facts.revision:
        uri = f"git+{facts.source}" if facts.source and not facts.source.startswith("git+") else facts.source
        out.append({"uri": f"{uri}@{facts.revision}" if uri else "", "digest": {"gitCommit": facts.revision},
                    "name": "source"})
        if not out[-1]["uri"]:
            del out[-1]["uri"]
    if inv.base_digest:
        out.append({"uri": image_purl(inv.base or "base", inv.base_digest, source.architecture),
                    "digest": {"sha256": sha256_hex(inv.base_digest)}, "name": inv.base or "base"})
    seen = set()
    for item in inv.items:
        c = item.component
        if c.kind not in ("deb", "python") or not c.sha256:
            continue
        locator = purl(item, source.distro, architecture=source.architecture)
        if locator in seen:
            continue
        seen.add(locator)
        entry: dict[str, Any] = {"uri": locator, "digest": {"sha256": sha256_hex(c.sha256)}, "name": c.name}
        if c.url:
            entry["downloadLocation"] = c.url
        out.append(entry)
    return out


def dependency_set(statement: Mapping[str, Any]) -> set[tuple[str, str, str, str]]:
    """``(kind, name, version, sha256)`` of the ``.deb`` and wheel dependencies a statement lists
    (Python names PEP 503-normalized, as :func:`comparable` does for SBOM entries)."""
    out = set()
    for dep in statement["predicate"]["buildDefinition"].get("resolvedDependencies", []):
        uri = dep.get("uri", "")
        if not uri.startswith(("pkg:deb/", "pkg:pypi/")):
            continue
        parsed = PackageURL.from_string(uri)
        kind = "deb" if parsed.type == "deb" else "python"
        out.add((kind, parsed.name if kind == "deb" else pypi_name(parsed.name), parsed.version or "",
                 dep.get("digest", {}).get("sha256", "")))
    return out


def comparable(packages: set[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
    """SBOM package tuples with Python names normalized as purls write them."""
    return {(k, pypi_name(n) if k == "python" else n, v, s) for k, n, v, s in packages}
