"""Wheels fetched into the store through lamina's one HTTP helper: retried, verified against the lock's sha256."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_http import BODY, DIGEST, Script, server  # noqa: F401 (the fixture)

from lamina.errors import DigestMismatchError, DownloadError
from lamina.oci.store import BlobStore
from lamina.python.resolve import LockedDist
from lamina.python.wheels import fetch_wheels


def _dist(url: str, sha256: str = DIGEST.removeprefix("sha256:")) -> LockedDist:
    return LockedDist("demo", "1.0", url.replace("file.bin", "demo-1.0-py3-none-any.whl"), sha256, len(BODY))


def test_a_wheel_is_fetched_after_a_failed_answer(server: tuple[str, Script], tmp_path: Path) -> None:  # noqa: F811
    url, script = server
    script.faults[:] = ["503"]
    store = BlobStore(tmp_path / "store")
    done: list[tuple[str, int]] = []
    paths = fetch_wheels([_dist(url)], store, on_done=lambda d, n: done.append((d.name, n)))
    assert paths["demo"].read_bytes() == BODY and done == [("demo", len(BODY))]
    assert len(script.requests) == 2


def test_a_wheel_that_does_not_match_the_lock_is_refused(server: tuple[str, Script], tmp_path: Path) -> None:  # noqa: F811
    url, _ = server
    store = BlobStore(tmp_path / "store")
    with pytest.raises(DigestMismatchError) as caught:
        fetch_wheels([_dist(url, "0" * 64)], store)
    assert "demo-1.0-py3-none-any.whl" in caught.value.message and "demo==1.0" in caught.value.message
    assert "lamina lock" in (caught.value.hint or "")
    assert list(store.blobs_dir.iterdir()) == [] and list(store.tmp_dir.iterdir()) == []


def test_a_wheel_the_index_no_longer_serves_says_so(server: tuple[str, Script], tmp_path: Path) -> None:  # noqa: F811
    url, script = server
    script.faults[:] = ["404"]
    with pytest.raises(DownloadError) as caught:
        fetch_wheels([_dist(url)], BlobStore(tmp_path / "store"))
    assert caught.value.status == 404 and "404" in caught.value.message
    assert "lamina lock" in (caught.value.hint or "")
