"""The blob store: atomic, verified, shareable, collectable."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from lamina.errors import DigestMismatchError, StoreError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import sha256_digest
from lamina.oci.model import Descriptor, Document, build_config, build_manifest, Platform
from lamina.oci.store import BlobStore, default_store_root


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LAMINA_STORE", str(tmp_path / "s"))
    assert default_store_root() == tmp_path / "s"
    monkeypatch.delenv("LAMINA_STORE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_store_root() == tmp_path / "cache" / "lamina"


def test_put_and_read_verify(store):
    digest = store.put_bytes(b"hello")
    assert digest == sha256_digest(b"hello")
    assert store.read_bytes(digest) == b"hello"
    with pytest.raises(DigestMismatchError):
        store.put_bytes(b"other", expected=digest)


def test_corrupt_blob_is_refused_on_read_and_reported_by_verify(store):
    digest = store.put_bytes(b"payload" * 1000)
    store.path(digest).write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError, match="corrupt"):
        store.read_bytes(digest)
    with pytest.raises(DigestMismatchError):
        with store.open(digest) as f:
            while f.read(100):
                pass
    assert store.verify() == [digest]
    assert store.verify(delete=True) == [digest]
    assert not store.has(digest) and store.verify() == []


def test_failed_write_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError):
        with store.writing() as w:
            w.write(b"half")
            raise RuntimeError("crash mid-write")
    assert list(store.blobs_dir.iterdir()) == [] and list(store.tmp_dir.iterdir()) == []


def test_writer_refuses_content_that_does_not_match_the_expected_digest(store):
    with pytest.raises(DigestMismatchError):
        with store.writing(sha256_digest(b"expected")) as w:
            w.write(b"something else")
    assert list(store.blobs_dir.iterdir()) == [] and list(store.tmp_dir.iterdir()) == []


def test_missing_blob_error_says_what_to_do(store):
    with pytest.raises(StoreError, match="not in the store"):
        store.read_bytes(sha256_digest(b"never stored"))


def _writer_process(root: str, n: int) -> None:
    store = BlobStore(root)
    with store.shared_lock():
        for i in range(n):
            store.put_bytes(f"blob {i}".encode() * 1000)
            with store.writing() as w:
                w.write(os.urandom(0) + f"stream {i}".encode() * 5000)


def test_concurrent_processes_share_the_store(tmp_path):
    root = tmp_path / "shared"
    BlobStore(root)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer_process, args=(str(root), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    store = BlobStore(root)
    assert len(list(store.blobs_dir.iterdir())) == 80
    assert store.verify() == []
    assert list(store.tmp_dir.iterdir()) == []


def _image(store: BlobStore, layer_content: bytes) -> Document:
    layer = store.put_bytes(layer_content)
    config = build_config(
        platform=Platform(), run={}, diff_ids=[layer], history=[], created="1970-01-01T00:00:01Z"
    )
    store.put_bytes(config.data)
    manifest = build_manifest(config, [Descriptor(mt.OCI_LAYER_GZIP, layer, len(layer_content))])
    store.put_bytes(manifest.data)
    return manifest


def test_gc_keeps_what_recorded_images_use_and_drops_the_rest(store):
    kept = _image(store, b"layer kept")
    dropped = _image(store, b"layer dropped")
    store.record_image("built kept", kept.digest, kept.media_type)
    stray = store.put_bytes(b"stray")
    removed, freed = store.gc(dry_run=True)
    assert removed == 4 and store.has(stray)
    removed, freed = store.gc()
    assert removed == 4 and freed > 0
    assert store.has(kept.digest) and not store.has(dropped.digest) and not store.has(stray)
    config_digest = json.loads(kept.data)["config"]["digest"]
    assert store.has(config_digest) and store.verify() == []


def test_staging_goes_where_lamina_staging_says_and_is_removed_with_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMINA_STAGING", str(tmp_path / "ram"))
    store = BlobStore(tmp_path / "store")
    staged = store.staging_dir
    assert staged.parent == tmp_path / "ram" and staged.is_dir()
    assert (tmp_path / "ram").stat().st_mode & 0o777 == 0o700  # nobody else's business
    (staged / "file").write_text("x")
    store.close()
    assert not staged.exists()


def test_staging_of_a_killed_run_is_swept_by_the_next_one(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("LAMINA_STAGING", str(tmp_path / "ram"))
    code = ("import os, sys; from lamina.oci.store import BlobStore; "
            f"s = BlobStore({str(tmp_path / 'store')!r}); d = s.staging_dir; (d / 'big').write_text('x'); "
            "print(d, flush=True); os.kill(os.getpid(), 9)")
    left = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
    assert left and Path(left).exists()
    BlobStore(tmp_path / "store")  # opening the store sweeps the dead run's staging too
    assert not Path(left).exists()


def test_a_staging_folder_another_user_owns_is_not_used(tmp_path, monkeypatch):
    if os.getuid() != 0:
        pytest.skip("making a folder another user owns needs root")
    foreign = tmp_path / "ram"
    foreign.mkdir()
    os.chown(foreign, 12345, 12345)
    monkeypatch.setenv("LAMINA_STAGING", str(foreign))
    store = BlobStore(tmp_path / "store")
    assert store.staging_dir.parent == store.tmp_root  # staged in the store instead
