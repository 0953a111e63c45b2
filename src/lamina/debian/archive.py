"""The Debian archive: signed ``InRelease``, verified ``Packages`` indexes, verified ``.deb`` files.

Nothing unverified is ever stored or used; each concern has its own module, assembled here:

* :mod:`lamina.debian.mirror` — suites, architectures, HTTP downloads (lamina's one retry policy);
* :mod:`lamina.debian.release` — ``InRelease`` checked with ``gpgv`` against the archive keyring;
* :mod:`lamina.debian.packages` — ``Packages`` indexes streamed into the store under the SHA256 the
  verified release lists, parsed, cached by that SHA256;
* :mod:`lamina.debian.fetch` — each ``.deb`` streamed into the store under the SHA256 its entry lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina.debian.fetch import Download, fetch_debs
from lamina.debian.mirror import (
    DEFAULT_MIRROR,
    DEFAULT_SECURITY_MIRROR,
    ArchiveError,
    ArchiveUnreachableError,
    Mirror,
    Suite,
    deb_arch,
    suites_for,
)
from lamina.debian.packages import Candidate, Progress, candidates
from lamina.debian.release import KEYRING, Release, fetch_release, release_summary
from lamina.oci.store import BlobStore

__all__ = [
    "DEFAULT_MIRROR", "DEFAULT_SECURITY_MIRROR", "KEYRING", "Archive", "ArchiveError", "ArchiveUnreachableError",
    "Candidate", "Download", "Release", "Suite", "deb_arch", "release_summary", "suites_for",
]


class Archive:
    """Verified access to one or more suites, caching everything verified in the store."""

    def __init__(self, store: BlobStore, *, keyring: Path = KEYRING, on_status: Progress | None = None) -> None:
        self.store = store
        self.keyring = keyring
        self.on_status = on_status or (lambda _text: None)
        self.mirror = Mirror(store)

    @property
    def downloaded_bytes(self) -> int:
        return self.mirror.downloaded_bytes

    def close(self) -> None:
        self.mirror.close()

    def release(self, suite: Suite) -> Release:
        """Download and verify the suite's ``InRelease`` (always: it is how we learn what is current)."""
        self.on_status(f"checking {suite.name} at {suite.url}")
        return fetch_release(self.mirror, self.store, suite, self.keyring)

    def candidates(self, suites: Sequence[Suite], arch: str) -> tuple[list[Candidate], list[Release]]:
        """Every package of ``arch`` (and ``all``) in ``suites``, and the verified releases they came from."""
        releases = [self.release(s) for s in suites]
        return candidates(self.mirror, self.store, releases, arch, self.on_status), releases

    def fetch(self, items: Sequence[Download], on_status: Progress | None = None) -> int:
        """Download the ``.deb`` files of ``items`` the store lacks (in parallel); returns bytes fetched."""
        return fetch_debs(self.mirror, items, on_status or self.on_status)
