"""What an SBOM says about one image, in one place for both formats: purls, suppliers, ids, times.

Both SBOM formats and the provenance are derived from the same :class:`SbomInput`, so they cannot
disagree about a package. Everything here is a pure function of the inventory and the few facts the
build knows (when the image was made, which Debian release its packages came from), so the same image
always gives the same bytes: identifiers are derived from the image digest, never random.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from packageurl import PackageURL

from lamina import __version__
from lamina.inventory import Inventory, Placed
from lamina.oci.digest import hex_of

TOOL = "lamina"
#: Namespace for the UUIDs derived from image digests (uuid5 of this and the digest).
NAMESPACE = uuid.UUID("6f1f1a52-6d7b-5b8e-9a55-3c1d2f0b7a10")
DEBIAN_NUMBERS = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"}
#: The purl types of packages, and the inventory's kind of each (first-party files have no purl).
PACKAGE_TYPES = {"deb": "deb", "pypi": "python"}


@dataclass(frozen=True)
class SbomInput:
    """An image's inventory and the facts around it that an SBOM needs.

    ``created``: RFC 3339 time of the image (its config's ``created``: SOURCE_DATE_EPOCH when set);
    ``distro``: the Debian release of its ``.deb`` packages (``bookworm``, ``debian-12`` or ``12``);
    ``reference``: where the image is published, ``registry/repository`` (empty for a local image);
    ``base_sbom``: the base image's SBOM in the same format, when lamina built the base, so the SBOM
    can point at it (SPDX needs its namespace and SHA-1, CycloneDX its serial number);
    ``project``: who supplies the first-party code (the registry owner, else the project's folder name).
    """

    inventory: Inventory
    created: str
    manifest_media_type: str = "application/vnd.oci.image.manifest.v1+json"
    manifest_size: int = 0
    distro: str = ""
    version: str = ""
    reference: str = ""
    base_sbom: bytes | None = None
    project: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.inventory.digest

    @property
    def architecture(self) -> str:
        return self.inventory.platform.split("/")[1] if "/" in self.inventory.platform else self.inventory.platform


@dataclass(frozen=True)
class ComponentFacts:
    """What both formats say about one component of the image, worked out once: its purl (empty for
    first-party files), who supplied it, its version and its SHA-256 (bare hex, empty when unknown)."""

    item: Placed
    purl: str
    supplier: str
    version: str
    sha256: str


def component_facts(source: SbomInput,
                    element_id: Callable[[ComponentFacts], str]) -> Iterator[tuple[str, ComponentFacts]]:
    """The image's components in inventory order with their ids in the format (``element_id``), each id once:
    an item whose id an earlier one has (the same package placed twice) is left out."""
    seen: set[str] = set()
    for item in source.inventory.items:
        facts = ComponentFacts(item, purl(item, source.distro, architecture=source.architecture),
                               supplier(item, source.project), component_version(item),
                               sha256_hex(item.component.sha256))
        ref = element_id(facts)
        if ref not in seen:
            seen.add(ref)
            yield ref, facts


def tool_name() -> str:
    return f"{TOOL}-{__version__}"


def derived_uuid(*parts: str) -> uuid.UUID:
    """A UUID that depends only on ``parts`` (an image digest, a format name)."""
    return uuid.uuid5(NAMESPACE, "\0".join(parts))


def debian_distro(release: str) -> str:
    """purl's ``distro`` qualifier as syft and Trivy write it: ``debian-12`` for bookworm."""
    release = release.strip().lower()
    if not release:
        return ""
    if release.startswith("debian-"):
        return release
    return f"debian-{DEBIAN_NUMBERS.get(release, release)}"


def purl(item: Placed, distro: str = "", *, architecture: str = "") -> str:
    """The package URL of a component (``files`` components have none: they are not packages)."""
    c = item.component
    if c.kind == "deb":
        qualifiers = {"arch": c.arch or architecture}
        if distro:
            qualifiers["distro"] = debian_distro(distro)
        return PackageURL("deb", "debian", c.name, c.version, qualifiers).to_string()
    if c.kind == "python":
        return PackageURL("pypi", None, pypi_name(c.name), c.version).to_string()
    return ""


def package_kind(locators: Iterable[str]) -> str | None:
    """The inventory's kind (``deb``, ``python``) of a listed component with these purls; None if no package's."""
    locators = tuple(locators)
    return next((kind for type_, kind in PACKAGE_TYPES.items()
                 if any(locator.startswith(f"pkg:{type_}/") for locator in locators)), None)


def image_purl(name: str, digest: str, architecture: str, reference: str = "") -> str:
    """``pkg:oci/NAME@sha256:...?arch=...&repository_url=...`` (purl's type for OCI images)."""
    qualifiers = {"arch": architecture}
    if reference:
        qualifiers["repository_url"] = reference
    return PackageURL("oci", None, name.rsplit("/", 1)[-1].lower(), digest, qualifiers).to_string()


def pypi_name(name: str) -> str:
    """PEP 503 normalized, as purl's pypi type wants it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def supplier(item: Placed, project: str = "") -> str:
    """Who distributed the component: Debian, the package index it was fetched from, or the project."""
    c = item.component
    if c.kind == "deb":
        return "Debian"
    if c.kind == "python":
        host = urlsplit(c.url).hostname or ""
        if not host or host.endswith("pythonhosted.org") or host.endswith("pypi.org"):
            return "Python Package Index (pypi.org)"
        return host
    return project or "the image's project"


def component_version(item: Placed) -> str:
    """A component's version; first-party files have none, so their layer's content digest stands in."""
    return item.component.version or item.diff_id or item.layer


def spdx_id(prefix: str, *parts: str) -> str:
    """An SPDX element id (letters, digits, ``.`` and ``-`` only), unique for ``parts``."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", "-".join(p for p in parts if p)).strip("-")[:80]
    short = derived_uuid(prefix, *parts).hex[:8]
    return f"SPDXRef-{prefix}-{readable}-{short}" if readable else f"SPDXRef-{prefix}-{short}"


def sha256_hex(value: str) -> str:
    """The hex of ``sha256:<hex>`` or of a bare hex string."""
    return hex_of(value) if value.startswith("sha256:") else value
