"""``Packages`` indexes: downloaded under the SHA256 the verified release lists, parsed, cached in the store.

Parsed indexes are cached in the store keyed by the ``Packages`` file's SHA256, so resolving again against
an unchanged archive costs one ``InRelease`` download.
"""

from __future__ import annotations

import gzip
import json
import lzma
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lamina.debian.mirror import ArchiveError, ArchiveUnreachableError, Mirror
from lamina.debian.release import COMPONENT, Release
from lamina.errors import DigestMismatchError
from lamina.oci.store import BlobStore

INDEX_FORMAT = "2"  # bump when the cached index's shape changes
INDEX_KIND = "debian-index"

#: Fields kept from a ``Packages`` paragraph (in this order in the cached index).
INDEX_FIELDS = ("Package", "Version", "Architecture", "Pre-Depends", "Depends", "Provides", "Priority",
                "Filename", "SHA256", "Size", "Source")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    """One binary package of the archive (a ``Packages`` paragraph, the fields the resolver uses)."""

    name: str
    version: str
    arch: str
    pre_depends: str
    depends: str
    provides: str
    priority: str
    filename: str
    sha256: str
    size: int
    suite: str
    #: The source package (Debian's ``Source``, without a version): the binary's own name when it has none.
    source: str = ""

    @classmethod
    def from_row(cls, row: Sequence[object], suite: str) -> Candidate:
        name, version, arch, pre, dep, prov, prio, filename, sha, size, source = row
        return cls(str(name), str(version), str(arch), str(pre), str(dep), str(prov), str(prio), str(filename),
                   str(sha), int(size), suite, str(source) or str(name))  # type: ignore[call-overload]


def candidates(mirror: Mirror, store: BlobStore, releases: Sequence[Release], arch: str,
               on_status: Progress) -> list[Candidate]:
    """Every package of ``arch`` (and ``all``) in the indexes of ``releases`` (the first is the primary suite)."""
    primary = releases[0]
    if arch not in primary.architectures:
        raise ArchiveError(
            f"{primary.suite.name} has no packages for the architecture {arch}",
            hint=f"it has: {', '.join(a for a in primary.architectures if a != 'all')}",
        )
    out: list[Candidate] = []
    for release in releases:
        arches = [arch] if release.arch_all_in_arch_indexes else [arch, "all"]
        for a in arches:
            path = release.index_path(a)
            if path is None:
                if a == arch and release is primary:
                    raise ArchiveError(f"{release.suite.name} lists no {COMPONENT}/binary-{a}/Packages index",
                                       hint="the mirror is incomplete; use another mirror")
                continue
            out.extend(index(mirror, store, release, path, on_status))
    return out


def index(mirror: Mirror, store: BlobStore, release: Release, path: str, on_status: Progress) -> list[Candidate]:
    """The packages of one index of ``release``: from the cache, else downloaded, verified and parsed."""
    sha, size = release.files[path]
    key = f"{INDEX_FORMAT}\0{sha}"
    record = store.get_key(INDEX_KIND, key)
    if record is not None and store.has(record["digest"]):
        try:
            rows = json.loads(store.read_bytes(record["digest"]))
        except DigestMismatchError:
            raise ArchiveError(
                f"the cached index of {release.suite.name} {path} in the store is corrupt",
                hint="run `lamina store verify --delete`, then try again (it will be downloaded again)",
            ) from None
        return [Candidate.from_row(r, release.suite.name) for r in rows]
    digest = "sha256:" + sha
    if not store.has(digest):
        on_status(f"downloading {release.suite.name} {path} ({size / 1e6:.1f} MB)")
        _download_index(mirror, release, path, digest)
    try:
        raw = decompress(store.read_bytes(digest), path)
    except DigestMismatchError:
        raise ArchiveError(
            f"the cached {release.suite.name} index {path} in the store does not match the SHA256 "
            "that the signed InRelease lists",
            hint="it was modified after it was verified: run `lamina store verify --delete`, then try again",
        ) from None
    on_status(f"reading {release.suite.name} {path}")
    rows = parse_packages(raw.decode("utf-8"))
    store.put_key(INDEX_KIND, key, {"digest": store.put_bytes(json.dumps(rows).encode())})
    return [Candidate.from_row(r, release.suite.name) for r in rows]


def _download_index(mirror: Mirror, release: Release, path: str, digest: str) -> None:
    """By hash when the release offers it, else (or when that fails) by name, as apt does; verified either way."""
    what = f"the {release.suite.name} index {path}"
    source = "the SHA256 the signed InRelease lists"
    if release.by_hash:
        by_hash = f"{path.rsplit('/', 1)[0]}/by-hash/SHA256/{digest.removeprefix('sha256:')}"
        try:
            mirror.download(release.suite.dist_url(by_hash), digest, what=what, source=source)
            return
        except ArchiveUnreachableError:
            raise
        except ArchiveError:
            pass
    mirror.download(release.suite.dist_url(path), digest, what=what, source=source)


def decompress(data: bytes, path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


def parse_packages(text: str) -> list[list[object]]:
    """The rows of a ``Packages`` file (python-debian's parser, only the fields we keep)."""
    from debian import deb822  # slow to import: only when an index is parsed

    rows: list[list[object]] = []
    for para in deb822.Packages.iter_paragraphs(text.splitlines(True), use_apt_pkg=False, fields=list(INDEX_FIELDS)):
        if "Package" not in para or "SHA256" not in para:
            continue
        rows.append([para["Package"], para["Version"], para.get("Architecture", ""), para.get("Pre-Depends", ""),
                     para.get("Depends", ""), para.get("Provides", ""), para.get("Priority", "optional"),
                     para["Filename"], para["SHA256"], int(para.get("Size", 0)),
                     para.get("Source", "").split(" ", 1)[0]])
    return rows
