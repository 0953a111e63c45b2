"""``lamina outdated``: what in the lock has a newer version, per image and platform.

Three kinds, each read from where it comes from, never guessed:

- ``python``: every locked distribution against the index and find-links of ``[python]`` — the newest
  version the image's requirement allows (its specifier; a dependency has none) and the newest overall,
  counting only versions with a wheel for the image's Python and platform;
- ``debian``: every locked package against the current signed ``Packages`` of its release and of
  RELEASE-updates and RELEASE-security (a newer version in a suite the project does not use is reported
  with that said), with the point release the primary suite is at now;
- ``base``: every pulled base whose tag names another digest than the one built on (the digest pinned
  in ``from``, else the one the store last pulled).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from lamina.build import SCRATCH
from lamina.config import ImageSpec, ProjectConfig
from lamina.debian import is_debian_base
from lamina.debian.archive import Archive, ArchiveError, suites_for
from lamina.debian.image import settings_of
from lamina.debian.resolve import Index, version_compare
from lamina.lock import Lock
from lamina.oci import mediatypes as mt
from lamina.oci.model import Platform
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.python.image import indexes_of
from lamina.python.requirements import read_requirements
from lamina.python.resolve import target_tags
from lamina.python.target import PythonTarget
from lamina.updates.index import VersionSource

SECURITY = "security"


@dataclass(frozen=True)
class Outdated:
    """One locked thing with a newer version."""

    image: str
    platform: str
    kind: str  # python | debian | base
    name: str
    current: str
    #: The newest version the image may take now: allowed by its specifier (python), in a suite the
    #: project uses (debian), the tag's digest (base). None when only a disallowed one is newer.
    wanted: str | None
    #: The newest version anywhere (python: ignoring the specifier; debian: in any suite of the release).
    latest: str
    #: debian: the suite ``wanted`` (else ``latest``) comes from.
    suite: str = ""
    security: bool = False
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "platform": self.platform, "kind": self.kind, "name": self.name,
                "current": self.current, "wanted": self.wanted, "latest": self.latest, "suite": self.suite,
                "security": self.security, "note": self.note}


@dataclass
class Report:
    """Everything outdated, and what the Debian releases are at now (release → point release)."""

    items: list[Outdated] = field(default_factory=list)
    releases: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: {"python": 0, "debian": 0, "base": 0})

    def to_json(self) -> dict[str, Any]:
        return {"outdated": [i.to_json() for i in self.items], "releases": self.releases, "checked": self.checked,
                "warnings": self.warnings}

    def images(self, kinds: Iterable[str] = ("python", "debian", "base"), *, security_only: bool = False) -> list[str]:
        """The images with something to update (of ``kinds``; only security updates if asked)."""
        wanted = set(kinds)
        return list(dict.fromkeys(i.image for i in self.items if i.kind in wanted and i.wanted is not None
                                  and (i.security or not security_only)))


def find_outdated(config: ProjectConfig, lock: Lock, store: BlobStore, registries: Registries, *,
                  names: Sequence[str] = (), kinds: Iterable[str] = ("python", "debian", "base"),
                  versions: VersionSource | None = None, archive: Archive | None = None) -> Report:
    """What is outdated in the images ``names`` (default: all)."""
    report = Report()
    specs = [config.image(n) for n in (names or list(config.images))]
    kinds = set(kinds)
    if "python" in kinds:
        source = versions or VersionSource(indexes_of(config.python))
        try:
            for spec in specs:
                for platform in lock.platforms(spec.name):
                    report.items += python_outdated(spec, platform, lock.section(spec.name, platform, "python"),
                                                    source, report)
        finally:
            if versions is None:
                source.close()
    if "debian" in kinds:
        own = archive or Archive(store, keyring=config.debian_keyring)
        try:
            report.items += debian_outdated(config, lock, specs, own, report)
        finally:
            if archive is None:
                own.close()
    if "base" in kinds:
        report.items += bases_outdated(specs, store, registries, report)
    return report


# -- Python ------------------------------------------------------------------------------------------


def specifiers_of(spec: ImageSpec) -> dict[str, SpecifierSet]:
    """What the image's requirements allow of each distribution they name (name → specifier)."""
    out: dict[str, SpecifierSet] = {}
    declared = [r.requirement for path in spec.requirements for r in read_requirements(path)]
    for text in spec.python_packages:
        try:
            declared.append(Requirement(text))
        except InvalidRequirement:
            continue
    for req in declared:
        name = canonicalize_name(req.name)
        out[name] = out.get(name, SpecifierSet()) & req.specifier
    return out


def target_of(section: Mapping[str, Any], platform: str) -> PythonTarget:
    """The Python a lock section was resolved for (its version, platform and manylinux)."""
    manylinux = str(section.get("platform", "x86_64-manylinux_2_28")).split("-", 1)[-1]
    return PythonTarget(str(section["python"]), "", Platform.parse(platform), manylinux)


def python_outdated(spec: ImageSpec, platform: str, section: Mapping[str, Any] | None, source: VersionSource,
                    report: Report) -> list[Outdated]:
    if not section:
        return []
    tags = target_tags(target_of(section, platform))
    allowed = specifiers_of(spec)
    found = []
    for dist in section.get("dists", []):
        name, current = canonicalize_name(dist["name"]), str(dist["version"])
        report.checked["python"] += 1
        try:
            have = Version(current)
        except InvalidVersion:
            continue
        versions = [v for v in source.versions(name, tags) if not v.is_prerelease or have.is_prerelease]
        if not versions or versions[-1] <= have:
            continue
        specifier = allowed.get(name, SpecifierSet())
        permitted = [v for v in versions if v in specifier]
        wanted = str(permitted[-1]) if permitted and permitted[-1] > have else None
        note = "" if wanted == str(versions[-1]) else (
            f"{versions[-1]} is outside {name}{specifier}" if name in allowed else "")
        if name not in allowed and wanted is not None:
            note = "a dependency: the requirements of what needs it decide whether it can move"
        vulnerabilities = source.vulnerabilities(name, current)
        fixed = _fixed(vulnerabilities, wanted)
        if fixed:
            note = " ".join(x for x in (f"fixes {', '.join(fixed)}", note) if x)
        elif blocked := _fixed(vulnerabilities, str(versions[-1])):
            note = f"{current} has {', '.join(blocked)}, fixed only outside the requirement: {note}"
        found.append(Outdated(spec.name, platform, "python", name, current, wanted, str(versions[-1]),
                              security=bool(fixed), note=note))
    return found


def _fixed(vulnerabilities: Sequence[Mapping[str, Any]], wanted: str | None) -> list[str]:
    """The ids of the vulnerabilities that ``wanted`` fixes (a ``fixed_in`` version at or below it)."""
    if wanted is None:
        return []
    ids = []
    for vuln in vulnerabilities:
        try:
            if any(Version(str(v)) <= Version(wanted) for v in vuln.get("fixed_in") or []):
                ids.append(str(vuln.get("id", "?")))
        except InvalidVersion:
            continue
    return ids


# -- Debian ------------------------------------------------------------------------------------------


def debian_outdated(config: ProjectConfig, lock: Lock, specs: Sequence[ImageSpec], archive: Archive,
                    report: Report) -> list[Outdated]:
    settings = settings_of(config)
    configured_extra = set(settings.suites)
    indexes: dict[tuple[str, str], Index] = {}
    found = []
    for spec in specs:
        for platform in lock.platforms(spec.name):
            section = lock.section(spec.name, platform, "debian")
            if not section:
                continue
            release, arch = str(section["release"]), str(section["arch"])
            key = (release, arch)
            if key not in indexes:
                indexes[key] = _index(archive, settings, release, arch, report)
            index = indexes[key]
            used = {release} | {f"{release}-{extra}" for extra in configured_extra}
            for package in section.get("packages", []):
                report.checked["debian"] += 1
                item = _debian_item(spec.name, platform, package, index, used)
                if item is not None:
                    found.append(item)
    return found


def _index(archive: Archive, settings: Any, release: str, arch: str, report: Report) -> Index:
    """The packages of the suites the project uses, and of RELEASE-updates and RELEASE-security when it
    does not (a suite of those that cannot be read is a warning: it is not what the images are built from)."""
    used = suites_for(release, settings.mirror, settings.security_mirror, settings.suites)
    candidates, releases = archive.candidates(used, arch)
    primary = releases[0]
    report.releases[release] = primary.version or primary.date
    names = {s.name for s in used}
    for suite in suites_for(release, settings.mirror, settings.security_mirror, ("updates", SECURITY)):
        if suite.name in names:
            continue
        try:
            more, _ = archive.candidates([suite], arch)
        except ArchiveError as e:
            report.warnings.append(f"{suite.name} could not be read: {e.message}")
            continue
        candidates += more
    return Index(candidates, arch)


def _debian_item(image: str, platform: str, package: Mapping[str, Any], index: Index,
                 used: set[str]) -> Outdated | None:
    name, current = str(package["name"]), str(package["version"])
    newer = [c for c in index.by_name.get(name, []) if version_compare(c.version, current) > 0]
    if not newer:
        return None
    latest = newer[0]  # newest first
    usable = [c for c in newer if c.suite in used]
    wanted = usable[0] if usable else None
    shown = wanted or latest
    security = shown.suite.endswith(f"-{SECURITY}")
    note = "" if wanted else f"only in {latest.suite}, which lamina.toml does not use " \
        f"(add \"{latest.suite.rsplit('-', 1)[-1]}\" to [project] debian_suites)"
    return Outdated(image, platform, "debian", name, current, wanted.version if wanted else None, latest.version,
                    suite=shown.suite, security=security, note=note)


# -- pulled bases ------------------------------------------------------------------------------------


def pulled_base(spec: ImageSpec, config: ProjectConfig | None = None) -> Reference | None:
    """The registry reference an image is built on, when it is one (not scratch, Debian, a layout, or
    an image of the project)."""
    base = spec.base
    if base == SCRATCH or is_debian_base(base) or base.startswith("oci:"):
        return None
    if config is not None and base in config.images:
        return None
    return Reference.parse(base)


def bases_outdated(specs: Sequence[ImageSpec], store: BlobStore, registries: Registries,
                   report: Report) -> list[Outdated]:
    found = []
    known = {r["name"]: r["digest"] for r in store.images()}
    names = {s.name for s in specs}
    for spec in specs:
        if spec.base in names:
            continue
        ref = pulled_base(spec)
        if ref is None or ref.tag is None:
            continue
        report.checked["base"] += 1
        client = registries.client(ref.registry)
        head = client.head_manifest(ref.repository, ref.tag)
        if head is None:
            found.append(Outdated(spec.name, str(spec.platform), "base", str(ref.with_tag(ref.tag)), ref.digest or "",
                                  None, "", note=f"the tag {ref.tag} is gone from {ref.registry}/{ref.repository}"))
            continue
        tag_digest, media_type, _ = head
        current = ref.digest or known.get(f"pulled {ref}", "")
        now = tag_digest
        if current and current != tag_digest and media_type in mt.INDEX_TYPES:  # compare this platform's image
            now = _platform_digest(client, ref, tag_digest, spec.platform) or tag_digest
        if current and now != current:
            found.append(Outdated(spec.name, str(spec.platform), "base", str(ref.with_tag(ref.tag)), current,
                                  tag_digest, now,
                                  note="pinned in lamina.toml" if ref.digest else "last pulled into the store"))
    return found


def _platform_digest(client: Any, ref: Reference, index_digest: str, platform: Platform) -> str | None:
    import json

    index = json.loads(client.get_manifest(ref.repository, index_digest).data)
    for entry in index.get("manifests", []):
        if entry.get("platform") and platform.matches(entry["platform"]):
            return str(entry["digest"])
    return None
