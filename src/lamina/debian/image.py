"""Debian packages in an image build: lock or resolve, download, and the layers they become.

One :class:`Debian` session serves a whole command (it caches indexes and owns the HTTP client); the
step in :mod:`lamina.debian.step` drives it for each image that is ``from = "debian:RELEASE"`` or lists
``packages``:

1. learn what the base has (nothing for ``debian:RELEASE``; a project image's recorded state; or the
   dpkg database read from a pulled image's layers): :meth:`Debian.base_state`;
2. take the image's lock section when it is fresh, else resolve against the verified archive
   (``--locked`` refuses instead): :meth:`Debian.section` — the family writes the lock, not this module;
3. group the packages into layers (:func:`group_packages`), download the ``.deb`` files of the layers
   the store does not already hold, and describe the layers (system layer first, then packages).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina.config import ImageSpec, ProjectConfig
from lamina.debian import LOCK_KIND, is_debian_base, release_of, uses_debian
from lamina.debian.archive import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    KEYRING,
    Archive,
    Download,
    Suite,
    deb_arch,
    release_summary,
    suites_for,
)
from lamina.debian.deb import read_deb
from lamina.debian.ldcache import FACTS_FORMAT, package_facts, system_state_entries
from lamina.debian.resolve import Index, Installed, resolve
from lamina.debian.status import read_base_facts, status_entries
from lamina.debian.system import APP_USER, postinst_entries, system_entries
from lamina.errors import ConfigError, DigestMismatchError, LaminaError, LockStaleError
from lamina.inventory import Component
from lamina.oci.cache import RemoteLayers
from lamina.oci.compress import Compression
from lamina.oci.layer import LayerSpec, cached_layer, input_key
from lamina.oci.model import Image, Platform
from lamina.oci.remote import Registries, ensure_blobs
from lamina.oci.store import BlobStore
from lamina.oci.tar import Entry

#: Packages every ``debian:RELEASE`` base gets: os-release and the FHS tree, /etc/services & co.
IMPLIED_PACKAGES = ("base-files", "netbase")
#: A package whose ``.deb`` is at least this big gets a layer of its own.
BIG_PACKAGE = 1 << 20
#: Smaller packages share one of this many layers, chosen by a hash of their name.
BUCKETS = 8
#: Bump when the way packages become layer entries changes (invalidates cached package layers).
LAYER_FORMAT = "1"
#: Store records of each package's libraries and alternatives (by .deb sha256), and the layer's format.
FACTS_KIND = "deb-libraries"
LDCACHE_FORMAT = "1"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class DebianSettings:
    """``[project]`` settings of the Debian archive."""

    mirror: str = DEFAULT_MIRROR
    security_mirror: str = DEFAULT_SECURITY_MIRROR
    suites: tuple[str, ...] = ()
    keyring: Path = KEYRING


@dataclass(frozen=True)
class LockedPackage:
    """One package as the lock records it: enough to download and verify it again."""

    name: str
    version: str
    arch: str
    sha256: str
    size: int
    filename: str
    suite: str
    provides: str = ""
    source: str = ""

    def to_lock(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "version": self.version, "arch": self.arch, "sha256": self.sha256,
                               "size": self.size, "filename": self.filename, "suite": self.suite}
        if self.provides:
            out["provides"] = self.provides
        if self.source and self.source != self.name:
            out["source"] = self.source
        return out

    @classmethod
    def from_lock(cls, record: Mapping[str, Any]) -> LockedPackage:
        return cls(str(record["name"]), str(record["version"]), str(record["arch"]), str(record["sha256"]),
                   int(record["size"]), str(record["filename"]), str(record["suite"]), str(record.get("provides", "")),
                   str(record.get("source", "")))

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha256

    @property
    def label(self) -> str:
        return f"{self.name}_{self.version}_{self.arch}.deb"


@dataclass(frozen=True)
class DebianState:
    """What a Debian-based image has installed; images built on it start from here."""

    release: str
    arch: str
    installed: Mapping[str, Installed] = field(default_factory=dict)
    #: name → lock record (with its ``url``) of each package lamina installed, base's included: what the
    #: ld.so.cache and alternatives of an image are computed from.
    debs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        if not self.installed:
            return "none"
        text = "\n".join(f"{p.name} {p.version} {p.arch}" for p in sorted(self.installed.values(), key=lambda p: p.name))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class PreparedLayers:
    """The Debian layers of one image (bottom first), each with the packages it holds."""

    layers: list[tuple[LayerSpec, tuple[Component, ...]]]
    downloaded: int = 0


def settings_of(config: ProjectConfig) -> DebianSettings:
    return DebianSettings(config.debian_mirror, config.debian_security_mirror, config.debian_suites, config.debian_keyring)


def requested_packages(spec: ImageSpec) -> list[str]:
    implied = list(IMPLIED_PACKAGES) if is_debian_base(spec.base) else []
    return list(dict.fromkeys([*implied, *spec.packages]))


def group_packages(packages: Sequence[LockedPackage]) -> list[tuple[str, list[LockedPackage]]]:
    """Stable layer assignment, one layer per source package while the image has room: see
    :mod:`lamina.debian.layers`."""
    from lamina.debian.layers import group_by_source

    return group_by_source(packages)


def _names(packages: Sequence[LockedPackage]) -> str:
    names = [p.name for p in packages]
    return ", ".join(names) if len(names) <= 4 else ", ".join(names[:3]) + ", …"


class Debian:
    """A Debian session for one command: the archive and cached indexes. It reads lock sections it is
    given and returns new ones; it never writes the lock file."""

    def __init__(
        self,
        store: BlobStore,
        settings: DebianSettings | None = None,
        *,
        locked: bool = False,
        update: Iterable[str] = (),
        lock_name: str = "lamina.lock",
        on_status: Callable[[str], None] | None = None,
        remote: RemoteLayers | None = None,
    ) -> None:
        self.store = store
        #: The registry's layer cache: a layer it has needs no package downloaded.
        self.remote = remote
        #: The build's compressor (two gzip flavours share a media type): which cached layers count.
        self.compression: Compression | None = None
        self.settings = settings or DebianSettings()
        self.locked = locked
        self.update = set(update)
        self.lock_name = lock_name
        self.on_status = on_status or (lambda _text: None)
        self.archive = Archive(store, keyring=self.settings.keyring, on_status=lambda t: self.on_status(t))
        self._indexes: dict[tuple[str, str], tuple[Index, list]] = {}

    def close(self) -> None:
        self.archive.close()

    def suites(self, release: str) -> list[Suite]:
        s = self.settings
        return suites_for(release, s.mirror, s.security_mirror, s.suites)

    # the base ---------------------------------------------------------------------------------

    def base_state(self, spec: ImageSpec, platform: Platform, prior: DebianState | None, base_image: Image | None,
                   base_name: str | None, registries: Registries) -> DebianState:
        """What the image starts from: ``prior`` is a project base's recorded state; without it, the
        dpkg database of the pulled ``base_image`` is read."""
        arch = deb_arch(platform.architecture)
        if is_debian_base(spec.base):
            return DebianState(release_of(spec.base), arch)
        if prior is not None:
            return DebianState(prior.release, arch, prior.installed, prior.debs)
        if base_image is None:
            raise ConfigError(f"image {spec.name!r} lists packages but its base {spec.base} is not Debian-based",
                              hint="use from = \"debian:bookworm\" or a Debian-based image")
        self.on_status(f"reading the dpkg database of {base_name}")
        ensure_blobs(base_image, self.store, registries)
        facts = read_base_facts(base_image, self.store, base_name or spec.base)
        return DebianState(facts.release, arch, facts.installed)

    # lock or resolve --------------------------------------------------------------------------

    def wanted(self, spec: ImageSpec, before: DebianState) -> dict[str, Any]:
        """The inputs a lock entry must match to be fresh."""
        return {
            "release": before.release,
            "arch": before.arch,
            "requested": requested_packages(spec),
            "base_packages": before.fingerprint(),
            "sources": [{"suite": s.name, "url": s.url} for s in self.suites(before.release)],
        }

    def section(self, spec: ImageSpec, before: DebianState,
                current: Mapping[str, Any] | None) -> tuple[dict[str, Any], bool]:
        """The image's lock entry: ``current`` when it is fresh, else a new resolution; and whether
        it was resolved now."""
        want = self.wanted(spec, before)
        why = stale_reason(current, want)
        if why is None and spec.name not in self.update:
            return dict(current), False  # type: ignore[arg-type]
        if self.locked:
            raise LockStaleError(
                f"{self.lock_name} {why or 'must be updated'} for image {spec.name!r} ({before.arch}), "
                "and --locked forbids resolving",
                hint=f"run `lamina lock {spec.name}` and commit {self.lock_name}",
            )
        return self.resolve(spec, before, want), True

    def resolve(self, spec: ImageSpec, before: DebianState, want: Mapping[str, Any]) -> dict[str, Any]:
        index, releases = self.index(before.release, before.arch)
        self.on_status(f"resolving {len(want['requested'])} packages for {spec.name} ({before.arch})")
        result = resolve(want["requested"], index, before.installed, release=before.release)
        packages = [LockedPackage(c.name, c.version, c.arch, c.sha256, c.size, c.filename, c.suite, c.provides, c.source)
                    for c in result.packages]
        return {
            "release": want["release"],
            "arch": want["arch"],
            "requested": list(want["requested"]),
            "base_packages": want["base_packages"],
            "sources": release_summary(releases),
            "packages": [p.to_lock() for p in packages],
        }

    def index(self, release: str, arch: str) -> tuple[Index, list]:
        key = (release, arch)
        if key not in self._indexes:
            candidates, releases = self.archive.candidates(self.suites(release), arch)
            self._indexes[key] = (Index(candidates, arch), releases)
        return self._indexes[key]

    # layers -----------------------------------------------------------------------------------

    def layers(self, spec: ImageSpec, after: DebianState, section: Mapping[str, Any], *, media_type: str,
               mtime: int, download: bool = True) -> PreparedLayers:
        """Describe the image's Debian layers and download what the uncached ones need (not with
        ``download`` False: a dry run)."""
        packages = packages_of(section)
        urls = {s["suite"]: s["url"] for s in section["sources"]}
        layers: list[tuple[LayerSpec, tuple[Component, ...]]] = []
        if is_debian_base(spec.base):
            user, arch = _app_user(spec), after.arch
            system = LayerSpec(lambda: system_entries(arch, user=user), "debian system files",
                               key=input_key("debian-system", LAYER_FORMAT, arch, user))
            layers.append((system, (Component("files", "debian system files", origin="lamina"),)))
        needed: list[LockedPackage] = []
        for description, group in group_packages(packages):
            key = input_key("debian-packages", LAYER_FORMAT, *(f"{p.name}={p.sha256}" for p in group))
            if cached_layer(self.store, key, media_type, mtime, self.compression, remote=self.remote) is None:
                needed.extend(group)
            spec_ = LayerSpec(lambda group=group: package_layer_entries(self.store, group), description, key=key)
            layers.append((spec_, tuple(_component(p, urls, spec.name) for p in group)))
        downloads = [Download(f"{urls[p.suite].rstrip('/')}/{p.filename}", p.digest, p.size, p.label) for p in needed]
        if packages and set(after.debs) >= set(after.installed):
            state_layer, missing = self._system_state_layer(after, media_type, mtime)
            layers.append((state_layer, (Component("files", "ld.so.cache and alternatives", origin="lamina"),)))
            have = {d.digest for d in downloads}
            downloads += [d for d in missing if d.digest not in have]
        fetched = self.archive.fetch(downloads, self.on_status) if download else 0
        return PreparedLayers(layers, fetched)


    def _system_state_layer(self, after: DebianState, media_type: str, mtime: int) -> tuple[LayerSpec, list[Download]]:
        """The layer with what ldconfig and update-alternatives would write for all the image's packages
        (:mod:`lamina.debian.ldcache`), and the ``.deb`` files it needs that the store lacks."""
        records = [after.debs[name] for name in sorted(after.debs)]
        key = input_key("debian-system-state", LDCACHE_FORMAT, after.arch, *(f"{r['name']}={r['sha256']}" for r in records))
        missing: list[Download] = []
        if cached_layer(self.store, key, media_type, mtime, self.compression, remote=self.remote) is None:
            for r in records:
                digest = "sha256:" + r["sha256"]
                if self.store.get_key(FACTS_KIND, r["sha256"]) is None and not self.store.has(digest):
                    missing.append(Download(r["url"], digest, int(r["size"]), f"{r['name']}_{r['version']}_{r['arch']}.deb"))
        arch = after.arch
        return LayerSpec(lambda: system_state_entries([self.facts(r) for r in records], arch),
                         "ld.so.cache and alternatives", key=key), missing

    def facts(self, record: Mapping[str, Any]) -> Mapping[str, Any]:
        """A package's libraries, library folders and alternatives, read once from its ``.deb``."""
        found = self.store.get_key(FACTS_KIND, record["sha256"])
        if found is not None and found.get("format") == FACTS_FORMAT:
            return found
        deb = read_deb(self.store.read_bytes("sha256:" + record["sha256"]), label=record["name"])
        facts = package_facts(deb.entries, deb.postinst)
        self.store.put_key(FACTS_KIND, record["sha256"], facts)
        return facts


def packages_of(section: Mapping[str, Any]) -> list[LockedPackage]:
    return [LockedPackage.from_lock(p) for p in section["packages"]]


def installed_after(before: DebianState, section: Mapping[str, Any]) -> DebianState:
    """What the image has installed once the section's packages are."""
    urls = {s["suite"]: s["url"] for s in section.get("sources", [])}
    return DebianState(before.release, before.arch, {
        **before.installed,
        **{p.name: Installed(p.name, p.version, p.arch, p.provides) for p in packages_of(section)},
    }, {**before.debs, **{p.name: {**p.to_lock(), "url": f"{urls.get(p.suite, '').rstrip('/')}/{p.filename}"}
                          for p in packages_of(section)}})


def _component(p: LockedPackage, urls: Mapping[str, str], image: str) -> Component:
    base = urls.get(p.suite, "").rstrip("/")
    return Component("deb", p.name, p.version, p.arch, p.sha256, p.size, p.filename,
                     f"{base}/{p.filename}" if base else "", p.source or p.name, origin=image)


def stale_reason(current: Mapping[str, Any] | None, want: Mapping[str, Any]) -> str | None:
    """Why a lock entry does not fit the wanted inputs (None: it is fresh)."""
    if current is None:
        return "has no entry"
    for key in ("release", "arch", "requested", "base_packages"):
        if current.get(key) != want[key]:
            return f"is stale ({key} changed)"
    if [(s.get("suite"), s.get("url")) for s in current.get("sources", [])] != [(s["suite"], s["url"]) for s in want["sources"]]:
        return "is stale (mirror or suites changed)"
    if "packages" not in current:
        return "has no packages"
    return None


def _app_user(spec: ImageSpec) -> str:
    """The app user's name: the image's ``user`` when it is a name (not root/nobody), else ``app``."""
    name = (spec.run.user or "").split(":", 1)[0]
    if name and not name.isdigit() and name not in ("root", "nobody") and re.fullmatch(r"[a-z_][a-z0-9_-]*", name):
        return name
    return APP_USER


def debian_env(spec: ImageSpec, state: DebianState, base_env: Mapping[str, str]) -> dict[str, str]:
    """Env defaults: PATH and LANG for a ``debian:`` base; PYTHON_VERSION when Debian's python3 is there."""
    env: dict[str, str] = {}
    if is_debian_base(spec.base):
        env.update({"PATH": DEFAULT_PATH, "LANG": "C.UTF-8"})
    pythons = sorted((int(m.group(1)), p) for p in state.installed.values() if (m := re.fullmatch(r"python3\.(\d+)", p.name)))
    if pythons and (is_debian_base(spec.base) or "PYTHON_VERSION" not in base_env):
        env["PYTHON_VERSION"] = upstream_version(pythons[-1][1].version)
    return env


def upstream_version(version: str) -> str:
    """``1:3.11.2-6+deb12u8`` → ``3.11.2``."""
    return version.split(":", 1)[-1].rsplit("-", 1)[0].split("+", 1)[0]


def package_layer_entries(store: BlobStore, group: Sequence[LockedPackage]) -> list[Entry]:
    """Every file of the group's packages, their status.d records and what their scripts would make.

    Within a layer, a directory keeps its first declaration; another path shipped by two packages
    keeps the later package's version (packages are in name order).
    """
    by_path: dict[str, Entry] = {}
    for p in group:
        try:
            data = store.read_bytes(p.digest)
        except DigestMismatchError:
            raise LaminaError(
                f"the cached {p.label} in the store does not match its SHA256 {p.sha256} (from the lock and the "
                "signed Packages index): it was modified after it was verified",
                hint="run `lamina store verify --delete`, then build again (it will be downloaded and checked again)",
            ) from None
        deb = read_deb(data, label=p.label)
        files = [*deb.entries, *postinst_entries(p.name, deb.entries), *status_entries(p.name, deb.control, deb.md5sums)]
        for e in files:
            previous = by_path.get(e.path)
            if previous is not None and previous.kind == "dir" and e.kind == "dir":
                continue
            by_path[e.path] = e
    return list(by_path.values())
