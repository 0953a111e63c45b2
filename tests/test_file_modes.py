"""Files lamina writes get normal modes (0666 & ~umask, as ``open`` gives), not mkstemp's 0600: another user
(a CI step, a web server serving the layout) can read a layout written under umask 022."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import run_lamina
from lamina.oci.files import atomic_write, file_mode
from lamina.oci.store import BlobStore
from projects import make_hello_project

MODES = {0o022: 0o644, 0o077: 0o600, 0o002: 0o664}


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(*roots: Path) -> dict[str, int]:
    """The permission bits of every regular file under ``roots`` (or of ``roots`` themselves, if files)."""
    files = [p for root in roots for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()]
    assert files, f"no files under {roots}"
    return {str(p): stat.S_IMODE(p.stat().st_mode) for p in files}


@pytest.mark.parametrize("mask", sorted(MODES))
def test_store_and_atomic_writes_follow_the_umask(tmp_path, mask):
    with umask(mask):
        assert file_mode() == MODES[mask]
        atomic_write(tmp_path / "out" / "file", b"x")
        store = BlobStore(tmp_path / "store")
        store.put_bytes(b"small blob")
        with store.writing() as w:  # the streaming writer (layers, downloads)
            w.write(b"streamed blob")
        store.put_key("test", "key", {"a": 1})
        store.record_image("built x", store.put_bytes(b"{}"), "application/vnd.oci.image.manifest.v1+json")
    found = modes(tmp_path / "out", tmp_path / "store")
    assert len(found) >= 6  # VERSION, 3 blobs, the key record, the image record
    assert set(found.values()) == {MODES[mask]}, found


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_a_build_writes_layout_archive_and_store_with_normal_modes(tmp_path, mask):
    root = tmp_path / "project"
    root.mkdir()
    make_hello_project(root)
    env = {"LAMINA_STORE": str(tmp_path / "store")}
    with umask(mask):
        run_lamina("build", "busybox", "hello", cwd=root, env=env)
        run_lamina("build", "busybox", "hello", "--output", "docker-archive:images.tar", cwd=root, env=env)
    layout = modes(root / "build" / "oci")
    assert {"oci-layout", "index.json"} <= {Path(p).name for p in layout}
    store = modes(tmp_path / "store" / "blobs", tmp_path / "store" / "layers", tmp_path / "store" / "keys")
    archive = modes(root / "images.tar")
    found = {**layout, **store, **archive}
    assert set(found.values()) == {MODES[mask]}, found
    if mask == 0o022:
        assert all(mode & 0o044 == 0o044 for mode in found.values())  # readable by group and others
