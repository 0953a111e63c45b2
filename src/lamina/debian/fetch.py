"""``.deb`` files into the store, several at once, each verified against the SHA256 its ``Packages`` entry
(or the lock) lists: a mismatch stores nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lamina.debian.mirror import PARALLEL_DOWNLOADS, Mirror


@dataclass(frozen=True)
class Download:
    url: str
    digest: str
    size: int
    label: str


def fetch_debs(mirror: Mirror, items: Sequence[Download], report: Callable[[str], None]) -> int:
    """Download the ``.deb`` files of ``items`` the store lacks (in parallel); returns the bytes fetched."""
    missing = [i for i in dict.fromkeys(items) if not mirror.store.has(i.digest)]
    if not missing:
        return 0
    total = sum(i.size for i in missing)
    done = {"bytes": 0, "files": 0}
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            done["bytes"] += n
            report(f"downloading {done['files']}/{len(missing)} packages "
                   f"({done['bytes'] / 1e6:.1f}/{total / 1e6:.1f} MB)")

    def one(item: Download) -> int:
        size = mirror.download(item.url, item.digest, what=item.label, source="the SHA256 of its Packages entry",
                               size=item.size or None, on_bytes=progress)
        with lock:
            done["files"] += 1
        return size

    with ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS, thread_name_prefix="lamina-deb") as pool:
        return sum(future.result() for future in [pool.submit(one, i) for i in missing])
