"""A skopeo that really has sigstore signatures, for the interoperability tests.

Debian bookworm's skopeo 1.9 (and its podman and buildah) carry the patch "Debian-local change: sigstore
disabled": the flags exist, but signing and ``sigstoreSigned`` policies fail. Debian trixie's skopeo 1.18
has them. So the fixture uses the system skopeo when it is not patched, else fetches trixie's skopeo and
the libraries it needs (glibc 2.41, gpgme, assuan, gpg-error, sqlite) from the Debian archive with
lamina's own verified archive client (InRelease checked with gpgv, every file against its SHA256),
unpacks them into a cache directory, and runs the binary with trixie's dynamic loader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TRIXIE = ("trixie", "https://deb.debian.org/debian")
PACKAGES = ("skopeo", "libc6", "libgpgme11t64", "libassuan9", "libgpg-error0", "libsqlite3-0")
PATCH_MARK = b"Debian-local change: sigstore disabled"


def cache_dir() -> Path:
    return Path(os.environ.get("LAMINA_TEST_CACHE", Path.home() / ".cache" / "lamina-tests")) / "skopeo-trixie"


def system_skopeo_has_sigstore() -> bool:
    path = shutil.which("skopeo")
    return path is not None and PATCH_MARK not in Path(path).read_bytes()


def skopeo_command() -> list[str]:
    """The argv prefix that runs a sigstore-capable skopeo, or skip the test."""
    if system_skopeo_has_sigstore():
        return [shutil.which("skopeo")]  # type: ignore[list-item]
    root = cache_dir() / "root"
    if not (root / "usr" / "bin" / "skopeo").exists():
        _fetch_trixie_skopeo(root)
    libdir = root / "usr" / "lib" / "x86_64-linux-gnu"
    return [str(libdir / "ld-linux-x86-64.so.2"), "--library-path", str(libdir), str(root / "usr" / "bin" / "skopeo")]


def _fetch_trixie_skopeo(root: Path) -> None:
    from conftest import archives_unreachable
    from lamina.debian.archive import Archive, Download, Suite
    from lamina.oci.store import BlobStore

    if os.uname().machine != "x86_64":
        pytest.skip("the trixie skopeo fallback is set up for x86_64 only")
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is needed to unpack trixie's skopeo")
    if (why := archives_unreachable()) is not None:
        pytest.skip(f"system skopeo has sigstore disabled and the Debian archive is unreachable: {why}")
    store = BlobStore(cache_dir() / "store")
    archive = Archive(store)
    try:
        candidates, _ = archive.candidates([Suite(*TRIXIE)], "amd64")
        chosen = {}
        for c in candidates:
            if c.name in PACKAGES:
                chosen[c.name] = c  # one version each in a stable suite
        missing = set(PACKAGES) - set(chosen)
        assert not missing, f"trixie has no {missing}"
        archive.fetch([Download(Suite(*TRIXIE).pool_url(c.filename), "sha256:" + c.sha256, c.size, c.name)
                       for c in chosen.values()])
    finally:
        archive.close()
    staging = root.with_name("root.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for c in chosen.values():
        subprocess.run(["dpkg-deb", "-x", str(store.path("sha256:" + c.sha256)), str(staging)], check=True)
    shutil.rmtree(root, ignore_errors=True)
    staging.rename(root)
