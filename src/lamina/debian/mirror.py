"""A Debian mirror over HTTP: its suites, its architectures, and downloads from it mapped to archive errors.

Transport and retries are lamina's one HTTP helper (:mod:`lamina.oci.http`); this module adds what a
Debian user needs to hear when a download fails (a misspelt release, a file the mirror dropped).
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from lamina.errors import CertificateError, DigestMismatchError, DownloadError, LaminaError, NetworkError
from lamina.oci.http import download_blob, fetch_bytes, make_client
from lamina.oci.store import BlobStore

DEFAULT_MIRROR = "https://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "https://deb.debian.org/debian-security"
KNOWN_RELEASES = ("buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid")
PARALLEL_DOWNLOADS = 6

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



def suites_for(release: str, mirror: str, security_mirror: str, extra: Sequence[str] = ()) -> list[Suite]:
    """The suites an image of ``release`` uses: the release, then the ``extra`` ones asked for
    (``updates``: RELEASE-updates on ``mirror``; ``security``: RELEASE-security on ``security_mirror``)."""
    suites = [Suite(release, mirror)]
    if "updates" in extra:
        suites.append(Suite(f"{release}-updates", mirror))
    if "security" in extra:
        suites.append(Suite(f"{release}-security", security_mirror))
    return suites


class Mirror:
    """Downloads from Debian mirrors: one shared client, byte counting, Debian-worded errors."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.downloaded_bytes = 0

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = make_client(timeout=60, connect_timeout=20, max_connections=PARALLEL_DOWNLOADS)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _count(self, n: int) -> None:
        with self._lock:
            self.downloaded_bytes += n

    def get_bytes(self, url: str) -> bytes:
        """The body of ``url`` (a small file that the caller verifies, such as ``InRelease``)."""
        try:
            data = fetch_bytes(self.client, url)
        except DownloadError as e:
            raise _archive_error(e) from None
        self._count(len(data))
        return data

    def download(self, url: str, digest: str, *, what: str, source: str, size: int | None = None,
                 on_bytes: Callable[[int], None] | None = None) -> int:
        """Stream ``url`` into the store as ``digest`` (``source`` says who vouches for it); returns its size."""
        try:
            size = download_blob(self.client, url, self.store, digest, size=size, on_progress=on_bytes, what=what)
        except DownloadError as e:
            raise _archive_error(e) from None
        except DigestMismatchError as e:
            raise ArchiveError(
                f"{what} downloaded from {url} does not match {source}: {e.message}",
                hint="the mirror served corrupt or tampered data; nothing was stored. Try again or another mirror",
            ) from None
        self._count(size)
        return size


def _archive_error(error: DownloadError) -> ArchiveError:
    """A download failure as a Debian user should read it."""
    if error.status == 404:
        return ArchiveError(f"{error.url} is not on the mirror (404)", hint=not_found_hint(error.url))
    if error.status is not None and error.status < 500 and error.status not in (408, 429):
        return ArchiveError(f"{error.url} answered HTTP {error.status}",
                            hint="check the mirror URL ([project] debian_mirror)")
    if isinstance(error, CertificateError):
        return ArchiveUnreachableError(f"cannot download {error.url}: {error.reason}", hint=error.hint)
    host = httpx.URL(error.url).host
    return ArchiveUnreachableError(
        f"cannot download {error.url}: {error.reason}",
        hint=f"check the network (and proxy) to {host}, or set [project] debian_mirror; "
        "a locked build with a warm store needs no network",
    )


def not_found_hint(url: str) -> str:
    """What a 404 from a mirror most likely means: a misspelt release, or a superseded package."""
    if "/dists/" in url:
        name = url.split("/dists/", 1)[1].split("/", 1)[0]
        release = name.split("-", 1)[0]
        close = difflib.get_close_matches(release, KNOWN_RELEASES, n=1)
        if close and close[0] != release:
            return f"is {release!r} a Debian release? did you mean {close[0]!r}?"
        return f"the mirror has no suite {name!r}: check the release name and [project] debian_mirror"
    return ("the mirror no longer has this file (Debian removes superseded versions): run `lamina lock` to "
            "re-resolve, or set debian_mirror to a snapshot.debian.org URL of the lock's date")
