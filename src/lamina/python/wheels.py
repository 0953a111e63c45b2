"""Wheels fetched into the store, verified against the sha256 the lock pins, several at once."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from lamina.errors import DigestMismatchError, DownloadError, LaminaError
from lamina.oci.http import download_blob, make_client
from lamina.oci.store import BlobStore
from lamina.python.resolve import LockedDist

PARALLEL_DOWNLOADS = 6


def wheel_digest(dist: LockedDist) -> str:
    return f"sha256:{dist.sha256}"


def fetch_wheels(
    dists: Sequence[LockedDist],
    store: BlobStore,
    *,
    on_done: Callable[[LockedDist, int], None] | None = None,
) -> dict[str, Path]:
    """Path in the store of each dist's wheel (by name), downloading only what the store lacks."""
    missing = [d for d in dists if not store.has(wheel_digest(d))]
    lock = threading.Lock()
    if missing:
        with make_client(max_connections=PARALLEL_DOWNLOADS) as client:

            def one(dist: LockedDist) -> None:
                size = _fetch(client, dist, store)
                if on_done is not None:
                    with lock:
                        on_done(dist, size)

            with ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="lamina-wheel") as pool:
                list(pool.map(one, missing))
    return {d.name: store.path(wheel_digest(d)) for d in dists}


def verified_wheel(path: Path, dist: LockedDist) -> Path:
    """``path`` (a wheel in the store) after checking it still hashes to the sha256 the lock pins."""
    try:
        with open(path, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        raise LaminaError(f"{dist.filename} ({dist.pin}) is not in the store at {path.parent}",
                          hint="it was removed meanwhile (gc or by hand); build again") from None
    if actual != dist.sha256:
        raise DigestMismatchError(
            f"the stored wheel {dist.filename} is corrupt or was swapped: it hashes to sha256 {actual}, "
            f"the lock pins {dist.sha256} for {dist.pin}",
            hint="nothing of it was installed; run `lamina store verify --delete`, then build again",
        )
    return path


def _fetch(client: httpx.Client, dist: LockedDist, store: BlobStore) -> int:
    if dist.sdist_sha256:
        return _rebuild(dist, store)
    parsed = urlparse(dist.url)
    if parsed.scheme == "file":
        return _copy_local(Path(unquote(parsed.path)), dist, store)
    try:
        return download_blob(client, dist.url, store, wheel_digest(dist), size=dist.size, what=dist.filename)
    except DigestMismatchError as e:
        raise DigestMismatchError(
            f"{e.message} (the lock pins sha256 {dist.sha256} for {dist.pin})",
            hint="the index served other bytes than it did when the lock was made; nothing was stored. "
            "If the release was replaced on purpose, run `lamina lock` again",
        ) from None
    except DownloadError as e:
        if e.status is None:
            raise
        raise DownloadError(e.message, url=e.url, status=e.status,
                            hint=f"check that {parsed.netloc} still serves {dist.filename}; if it was removed, "
                            "run `lamina lock` again") from None


def _copy_local(path: Path, dist: LockedDist, store: BlobStore) -> int:
    if not path.is_file():
        raise LaminaError(f"{path} (from the lock, for {dist.pin}) does not exist",
                          hint="the local wheel folder changed; restore it or run `lamina lock` again")
    try:
        with open(path, "rb") as src, store.writing(wheel_digest(dist)) as blob:
            while chunk := src.read(1 << 20):
                blob.write(chunk)
            return blob.size
    except DigestMismatchError:
        raise DigestMismatchError(f"{path} does not match the sha256 in the lock ({dist.sha256})",
                                  hint="the local wheel was replaced; run `lamina lock` again if that was on purpose") from None


def _rebuild(dist: LockedDist, store: BlobStore) -> int:
    """A wheel the lock says lamina built from an sdist, and the store no longer has: built again, and
    it must come out the same (the build is isolated, with a fixed SOURCE_DATE_EPOCH)."""
    from lamina.python.resolve import Indexes
    from lamina.python.sdist import RECORD_KIND, build_wheel

    source = LockedDist(dist.name, dist.version, dist.url, dist.sdist_sha256 or "", None)
    store.delete_key(RECORD_KIND, source.sha256) if hasattr(store, "delete_key") else None
    built = build_wheel(source, store, Indexes(), where=dist.pin)
    if built.sha256 != dist.sha256:
        raise DigestMismatchError(f"the wheel built again from {dist.filename}'s sdist has sha256 {built.sha256}, "
                                  f"the lock pins {dist.sha256}",
                                  hint="its build is not reproducible; run `lamina lock` again")
    return built.size or 0
