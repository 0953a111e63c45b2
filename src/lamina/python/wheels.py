"""Wheels fetched into the store, verified against the sha256 the lock pins, several at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from lamina.errors import DigestMismatchError, LaminaError
from lamina.oci.store import BlobStore
from lamina.python.resolve import LockedDist

PARALLEL_DOWNLOADS = 6
RETRIES = 3


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
        with httpx.Client(timeout=httpx.Timeout(60, connect=20), follow_redirects=True) as client:

            def one(dist: LockedDist) -> None:
                size = _fetch(client, dist, store)
                if on_done is not None:
                    with lock:
                        on_done(dist, size)

            with ThreadPoolExecutor(PARALLEL_DOWNLOADS, thread_name_prefix="lamina-wheel") as pool:
                list(pool.map(one, missing))
    return {d.name: store.path(wheel_digest(d)) for d in dists}


def _fetch(client: httpx.Client, dist: LockedDist, store: BlobStore) -> int:
    parsed = urlparse(dist.url)
    if parsed.scheme == "file":
        return _copy_local(Path(unquote(parsed.path)), dist, store)
    for attempt in range(RETRIES + 1):
        try:
            with store.writing(wheel_digest(dist)) as blob, client.stream("GET", dist.url) as response:
                if response.status_code != 200:
                    raise LaminaError(f"downloading {dist.filename} failed: HTTP {response.status_code} from {parsed.netloc}",
                                      hint="check the index is reachable, then run the build again")
                for chunk in response.iter_bytes(1 << 20):
                    blob.write(chunk)
                return blob.size
        except DigestMismatchError:
            raise DigestMismatchError(
                f"{dist.filename} from {parsed.netloc} does not match the sha256 in the lock ({dist.sha256})",
                hint="the index served other bytes than it did when the lock was made; nothing was stored. "
                "If the release was replaced on purpose, run `lamina lock` again",
            ) from None
        except httpx.TransportError as e:
            if attempt == RETRIES:
                raise LaminaError(f"downloading {dist.filename} failed: {e}",
                                  hint=f"{parsed.netloc} is unreachable; check the network or the index URL") from e
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


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
