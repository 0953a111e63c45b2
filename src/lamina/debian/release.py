"""A suite's signed ``InRelease``: checked with ``gpgv`` against the Debian archive keyring, then parsed.

Only the text *inside* the signature (gpgv's output) is parsed, never the file as downloaded. The verified
release lists the SHA256 of every index of the suite: everything downloaded after it is checked against it.
"""

from __future__ import annotations

import email.utils
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lamina.debian.mirror import ArchiveError, Mirror, Suite
from lamina.oci.store import BlobStore

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
COMPONENT = "main"
RELEASE_KIND = "debian-release"


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
    #: The point release (``12.12``; empty for a suite that has none, such as -security).
    version: str = ""

    def index_path(self, arch: str) -> str | None:
        """The best ``Packages`` file of ``arch`` this release lists (xz, then gz, then plain)."""
        for suffix in (".xz", ".gz", ""):
            path = f"{COMPONENT}/binary-{arch}/Packages{suffix}"
            if path in self.files:
                return path
        return None


def fetch_release(mirror: Mirror, store: BlobStore, suite: Suite, keyring: Path) -> Release:
    """Download and verify the suite's ``InRelease`` (always: it is how we learn what is current)."""
    data = mirror.get_bytes(suite.dist_url("InRelease"))
    text = verify_inrelease(data, keyring, store.tmp_dir)
    digest = store.put_bytes(data)
    release = parse_release(text, suite, digest)
    store.put_key(RELEASE_KIND, f"{suite.url}\0{suite.name}", {"digest": digest, "date": release.date})
    return release


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
        if until < datetime.now(UTC):
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
        version=release.get("Version", ""),
    )


def release_summary(releases: Iterable[Release]) -> list[dict[str, str]]:
    """What the lock records of the releases a resolution used."""
    return [{"suite": r.suite.name, "url": r.suite.url, "date": r.date, "inrelease": r.digest} for r in releases]
