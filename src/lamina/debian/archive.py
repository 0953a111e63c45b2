"""The Debian archive over HTTP: signed ``InRelease``, verified ``Packages`` indexes, verified ``.deb`` files.

Nothing unverified is ever stored or used:

* ``InRelease`` is checked with ``gpgv`` against the Debian archive keyring; only the text *inside* the
  signature (gpgv's output) is parsed, never the file as downloaded.
* ``Packages.xz`` is streamed into the store under the SHA256 that the verified ``InRelease`` lists
  (``BlobStore.writing(expected)``): a mismatch aborts the write and nothing is stored.
* each ``.deb`` is streamed into the store under the SHA256 its ``Packages`` entry (or the lock) lists.

Parsed indexes are cached in the store, keyed by the ``Packages`` file's SHA256, so resolving again
against an unchanged archive costs one ``InRelease`` download.
"""

from __future__ import annotations

import email.utils
import json
import gzip
import lzma
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from lamina.errors import DigestMismatchError, LaminaError, NetworkError
from lamina.oci.store import BlobStore, BlobWriter

DEFAULT_MIRROR = "https://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "https://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
KNOWN_RELEASES = ("buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid")
COMPONENT = "main"
PARALLEL_DOWNLOADS = 6
RETRIES = 3
INDEX_FORMAT = "1"  # bump when the cached index's shape changes
INDEX_KIND = "debian-index"
RELEASE_KIND = "debian-release"

#: OCI architecture → Debian architecture.
DEB_ARCH = {
    "amd64": "amd64",
    "arm64": "arm64",
    "arm": "armhf",
    "386": "i386",
    "ppc64le": "ppc64el",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "mips64le": "mips64el",
}

#: Fields kept from a ``Packages`` paragraph (in this order in the cached index).
INDEX_FIELDS = ("Package", "Version", "Architecture", "Pre-Depends", "Depends", "Provides", "Priority",
                "Filename", "SHA256", "Size")


class ArchiveError(LaminaError):
    """The archive refused us, served something that does not verify, or lacks what we need."""


class ArchiveUnreachableError(ArchiveError, NetworkError):
    """The mirror could not be reached (DNS, connection, TLS, time-out)."""


def deb_arch(oci_arch: str) -> str:
    if oci_arch not in DEB_ARCH:
        raise ArchiveError(
            f"Debian has no architecture for the OCI platform architecture {oci_arch!r}",
            hint=f"use one of: {', '.join(DEB_ARCH)} (amd64 and arm64 are the tested ones)",
        )
    return DEB_ARCH[oci_arch]


@dataclass(frozen=True)
class Suite:
    """One suite of one mirror: ``bookworm`` at deb.debian.org/debian, ``bookworm-security`` at .../debian-security."""

    name: str
    url: str

    def dist_url(self, path: str) -> str:
        return f"{self.url.rstrip('/')}/dists/{self.name}/{path}"

    def pool_url(self, filename: str) -> str:
        return f"{self.url.rstrip('/')}/{filename}"


EXTRA_SUITES = ("updates", "security")


def suites_for(release: str, mirror: str, security_mirror: str, extra: Sequence[str] = ()) -> list[Suite]:
    """The suites an image of ``release`` uses: the release, then the ``extra`` ones asked for
    (``updates``: RELEASE-updates on ``mirror``; ``security``: RELEASE-security on ``security_mirror``)."""
    suites = [Suite(release, mirror)]
    if "updates" in extra:
        suites.append(Suite(f"{release}-updates", mirror))
    if "security" in extra:
        suites.append(Suite(f"{release}-security", security_mirror))
    return suites


@dataclass(frozen=True)
class Release:
    """A verified ``InRelease``: what it says about the suite and the indexes it vouches for."""

    suite: Suite
    date: str
    digest: str
    architectures: tuple[str, ...]
    files: Mapping[str, tuple[str, int]]
    by_hash: bool
    arch_all_in_arch_indexes: bool

    def index_path(self, arch: str) -> str | None:
        """The best ``Packages`` file of ``arch`` this release lists (xz, then gz, then plain)."""
        for suffix in (".xz", ".gz", ""):
            path = f"{COMPONENT}/binary-{arch}/Packages{suffix}"
            if path in self.files:
                return path
        return None


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

    def to_row(self) -> list[object]:
        return [self.name, self.version, self.arch, self.pre_depends, self.depends, self.provides,
                self.priority, self.filename, self.sha256, self.size]

    @classmethod
    def from_row(cls, row: Sequence[object], suite: str) -> Candidate:
        name, version, arch, pre, dep, prov, prio, filename, sha, size = row
        return cls(str(name), str(version), str(arch), str(pre), str(dep), str(prov), str(prio), str(filename),
                   str(sha), int(size), suite)  # type: ignore[call-overload]


Progress = Callable[[str], None]


class Http:
    """A small httpx wrapper: retries on transport errors and 5xx/429, clear errors otherwise."""

    def __init__(self) -> None:
        self._client = httpx.Client(timeout=httpx.Timeout(60, connect=20), follow_redirects=True,
                                    headers={"User-Agent": "lamina (Debian packages without apt)"})

    def close(self) -> None:
        self._client.close()

    def get_to(self, url: str, open_sink: Callable[[], tuple[Callable[[bytes], object], Callable[[], None]]],
               on_bytes: Callable[[int], None] | None = None) -> None:
        """GET ``url``; each attempt gets a fresh sink from ``open_sink`` (write, discard)."""
        last: Exception | None = None
        for attempt in range(RETRIES):
            write, discard = open_sink()
            try:
                with self._client.stream("GET", url) as response:
                    if response.status_code == 404:
                        discard()
                        raise ArchiveError(f"{url} is not on the mirror (404)",
                                           hint=_not_found_hint(url))
                    if response.status_code >= 500 or response.status_code == 429:
                        raise httpx.HTTPStatusError(f"{response.status_code}", request=response.request,
                                                    response=response)
                    if response.status_code != 200:
                        discard()
                        raise ArchiveError(f"{url} answered HTTP {response.status_code}",
                                           hint="check the mirror URL ([project] debian_mirror)")
                    for chunk in response.iter_bytes(1 << 20):
                        write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
                return
            except (httpx.TransportError, httpx.HTTPStatusError) as e:
                discard()
                last = e
                if attempt + 1 < RETRIES:
                    time.sleep(1.0 * (attempt + 1))
            except BaseException:
                discard()
                raise
        host = httpx.URL(url).host
        raise ArchiveUnreachableError(
            f"cannot download {url}: {last}",
            hint=f"check the network (and proxy) to {host}, or set [project] debian_mirror; "
            "a locked build with a warm store needs no network",
        )

    def get_bytes(self, url: str) -> bytes:
        parts: list[bytes] = []

        def open_sink() -> tuple[Callable[[bytes], object], Callable[[], None]]:
            parts.clear()
            return parts.append, parts.clear

        self.get_to(url, open_sink)
        return b"".join(parts)


def _not_found_hint(url: str) -> str:
    if "/dists/" in url:
        name = url.split("/dists/", 1)[1].split("/", 1)[0]
        release = name.split("-", 1)[0]
        import difflib

        close = difflib.get_close_matches(release, KNOWN_RELEASES, n=1)
        if close and close[0] != release:
            return f"is {release!r} a Debian release? did you mean {close[0]!r}?"
        return f"the mirror has no suite {name!r}: check the release name and [project] debian_mirror"
    return ("the mirror no longer has this file (Debian removes superseded versions): run `lamina lock` to "
            "re-resolve, or set debian_mirror to a snapshot.debian.org URL of the lock's date")


# -- InRelease ------------------------------------------------------------------------------------


def verify_inrelease(data: bytes, keyring: Path, tmp_dir: Path) -> str:
    """The text signed in ``data`` (an ``InRelease`` file), after gpgv checked it against ``keyring``.

    Accepted when at least one signature is good and made by a key of the keyring and none is bad
    (apt's rule: a release is often signed by several keys, some of which an older keyring lacks).
    """
    if not keyring.is_file():
        raise ArchiveError(f"the Debian archive keyring {keyring} does not exist",
                           hint="apt-get install debian-archive-keyring (or set [project] debian_keyring)")
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="gpgv-") as tmp:
        signed, out = Path(tmp) / "InRelease", Path(tmp) / "Release"
        signed.write_bytes(data)
        try:
            result = subprocess.run(
                ["gpgv", "--status-fd", "1", "--keyring", str(keyring.absolute()), "--output", str(out), str(signed)],
                capture_output=True, text=True, env={**os.environ, "GNUPGHOME": tmp}, timeout=60,
            )
        except FileNotFoundError:
            raise ArchiveError("gpgv is not installed: InRelease signatures cannot be checked",
                               hint="apt-get install gpgv") from None
        status = result.stdout.splitlines()
        good = [line for line in status if line.startswith("[GNUPG:] VALIDSIG ")]
        bad = [line for line in status if line.startswith("[GNUPG:] BADSIG ")]
        if bad or not good or not out.is_file():
            detail = (result.stderr.strip().splitlines() or ["no valid signature"])[-1]
            raise ArchiveError(
                f"InRelease signature check failed: {detail}",
                hint="the mirror served a file that the Debian archive keyring does not vouch for; nothing "
                "was used. Try again, or another mirror; update debian-archive-keyring for a newer release",
            )
        return out.read_text(encoding="utf-8")


def parse_release(text: str, suite: Suite, digest: str) -> Release:
    from debian import deb822  # imported when an index is parsed: it is slow to import

    release = deb822.Release(text)
    names = {release.get("Codename", ""), release.get("Suite", "")}
    if suite.name not in names:
        raise ArchiveError(
            f"the signed InRelease of {suite.dist_url('')} is for {release.get('Codename')!r}, not {suite.name!r}",
            hint="the mirror serves another suite under this name; nothing was used",
        )
    if valid_until := release.get("Valid-Until"):
        until = email.utils.parsedate_to_datetime(valid_until)
        if until < datetime.now(timezone.utc):
            raise ArchiveError(f"the InRelease of {suite.name} expired on {valid_until}",
                               hint="the mirror is stale (or replaying an old release); use another mirror")
    files = {entry["name"]: (entry["sha256"], int(entry["size"])) for entry in release.get("SHA256", [])}
    if not files:
        raise ArchiveError(f"the InRelease of {suite.name} lists no SHA256 checksums",
                           hint="lamina only trusts SHA256; use an official Debian mirror")
    return Release(
        suite=suite,
        date=release.get("Date", ""),
        digest=digest,
        architectures=tuple(release.get("Architectures", "").split()),
        files=files,
        by_hash=release.get("Acquire-By-Hash", "no") == "yes",
        arch_all_in_arch_indexes=release.get("No-Support-for-Architecture-all", "") == "Packages",
    )


# -- the archive ------------------------------------------------------------------------------------


class Archive:
    """Verified access to one or more suites, caching everything verified in the store."""

    def __init__(self, store: BlobStore, *, keyring: Path = KEYRING, on_status: Progress | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.on_status = on_status or (lambda _text: None)
        self._http: Http | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.downloaded_bytes = 0

    @property
    def http(self) -> Http:
        with self._lock:
            if self._http is None:
                self._http = Http()
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def release(self, suite: Suite) -> Release:
        """Download and verify the suite's ``InRelease`` (always: it is how we learn what is current)."""
        self.on_status(f"checking {suite.name} at {suite.url}")
        data = self.http.get_bytes(suite.dist_url("InRelease"))
        with self._count_lock:
            self.downloaded_bytes += len(data)
        text = verify_inrelease(data, self.keyring, self.store.tmp_dir)
        digest = self.store.put_bytes(data)
        release = parse_release(text, suite, digest)
        self.store.put_key(RELEASE_KIND, f"{suite.url}\0{suite.name}", {"digest": digest, "date": release.date})
        return release

    def candidates(self, suites: Sequence[Suite], arch: str) -> tuple[list[Candidate], list[Release]]:
        """Every package of ``arch`` (and ``all``) in ``suites``, and the verified releases they came from."""
        releases = [self.release(s) for s in suites]
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
                out.extend(self._index(release, path))
        return out, releases

    def _index(self, release: Release, path: str) -> list[Candidate]:
        sha, size = release.files[path]
        key = f"{INDEX_FORMAT}\0{sha}"
        record = self.store.get_key(INDEX_KIND, key)
        if record is not None and self.store.has(record["digest"]):
            try:
                rows = json.loads(self.store.read_bytes(record["digest"]))
            except DigestMismatchError:
                raise ArchiveError(
                    f"the cached index of {release.suite.name} {path} in the store is corrupt",
                    hint="run `lamina store verify --delete`, then try again (it will be downloaded again)",
                ) from None
            return [Candidate.from_row(r, release.suite.name) for r in rows]
        digest = "sha256:" + sha
        if not self.store.has(digest):
            self.on_status(f"downloading {release.suite.name} {path} ({size / 1e6:.1f} MB)")
            what = f"the {release.suite.name} index {path}"
            source = "the SHA256 the signed InRelease lists"
            try:
                if not release.by_hash:
                    raise ArchiveError("no by-hash")
                by_hash = f"{path.rsplit('/', 1)[0]}/by-hash/SHA256/{sha}"
                self._download(release.suite.dist_url(by_hash), digest, what=what, source=source)
            except ArchiveError as e:  # as apt: fall back to the plain name (verified the same way)
                if isinstance(e, ArchiveUnreachableError):
                    raise
                self._download(release.suite.dist_url(path), digest, what=what, source=source)
        try:
            raw = _decompress(self.store.read_bytes(digest), path)
        except DigestMismatchError:
            raise ArchiveError(
                f"the cached {release.suite.name} index {path} in the store does not match the SHA256 "
                "that the signed InRelease lists",
                hint="it was modified after it was verified: run `lamina store verify --delete`, then try again",
            ) from None
        self.on_status(f"reading {release.suite.name} {path}")
        rows = _parse_packages(raw.decode("utf-8"))
        self.store.put_key(INDEX_KIND, key, {"digest": self.store.put_bytes(json.dumps(rows).encode())})
        return [Candidate.from_row(r, release.suite.name) for r in rows]

    def _download(self, url: str, digest: str, *, what: str, source: str,
                  on_bytes: Callable[[int], None] | None = None) -> None:
        writers: list[BlobWriter] = []

        def open_sink() -> tuple[Callable[[bytes], object], Callable[[], None]]:
            writer = self.store.writer()
            writers[:] = [writer]

            def discard() -> None:
                if writers:
                    writers.clear()
                    writer.abort()

            return writer.write, discard

        self.http.get_to(url, open_sink, on_bytes)
        writer = writers.pop()
        try:
            writer.commit(digest)  # verifies, or removes the temp file and raises
        except DigestMismatchError:
            raise ArchiveError(
                f"{what} downloaded from {url} does not match {source}: expected {digest}, got {writer.digest}",
                hint="the mirror served corrupt or tampered data; nothing was stored. Try again or another mirror",
            ) from None
        with self._count_lock:
            self.downloaded_bytes += writer.size

    def fetch(self, items: Sequence[Download], on_status: Progress | None = None) -> int:
        """Download the ``.deb`` files of ``items`` the store lacks (in parallel); returns bytes fetched."""
        missing = [i for i in dict.fromkeys(items) if not self.store.has(i.digest)]
        if not missing:
            return 0
        report = on_status or self.on_status
        total = sum(i.size for i in missing)
        done = {"bytes": 0, "files": 0}
        lock = threading.Lock()

        def progress(n: int) -> None:
            with lock:
                done["bytes"] += n
                report(f"downloading {done['files']}/{len(missing)} packages "
                       f"({done['bytes'] / 1e6:.1f}/{total / 1e6:.1f} MB)")

        def one(item: Download) -> None:
            self._download(item.url, item.digest, what=item.label, source="the SHA256 of its Packages entry",
                           on_bytes=progress)
            with lock:
                done["files"] += 1

        before = self.downloaded_bytes
        with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS) as pool:
            for future in [pool.submit(one, i) for i in missing]:
                future.result()
        return self.downloaded_bytes - before


@dataclass(frozen=True)
class Download:
    url: str
    digest: str
    size: int
    label: str


def _decompress(data: bytes, path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


def _parse_packages(text: str) -> list[list[object]]:
    """The rows of a ``Packages`` file (python-debian's parser, only the fields we keep)."""
    rows: list[list[object]] = []
    from debian import deb822

    for para in deb822.Packages.iter_paragraphs(text.splitlines(True), use_apt_pkg=False, fields=list(INDEX_FIELDS)):
        if "Package" not in para or "SHA256" not in para:
            continue
        rows.append([para["Package"], para["Version"], para.get("Architecture", ""), para.get("Pre-Depends", ""),
                     para.get("Depends", ""), para.get("Provides", ""), para.get("Priority", "optional"),
                     para["Filename"], para["SHA256"], int(para.get("Size", 0))])
    return rows


def release_summary(releases: Iterable[Release]) -> list[dict[str, str]]:
    """What the lock records of the releases a resolution used."""
    return [{"suite": r.suite.name, "url": r.suite.url, "date": r.date, "inrelease": r.digest} for r in releases]

