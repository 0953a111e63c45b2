"""Store maintenance: find corrupt blobs (``lamina store verify``) and remove unused ones (``lamina store gc``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from typing import TYPE_CHECKING

from lamina.errors import DigestMismatchError
from lamina.oci import mediatypes as mt
from lamina.oci import records, scratch
from lamina.oci.digest import is_digest

if TYPE_CHECKING:
    from lamina.oci.store import BlobStore


def verify(store: BlobStore, *, delete: bool = False) -> list[str]:
    """Digests of blobs whose content does not match their name (removed with ``delete``)."""
    bad = []
    with store.shared_lock():
        for path in sorted(store.blobs_dir.iterdir()):
            digest = "sha256:" + path.name
            if is_digest(digest):
                with open(path, "rb") as f:
                    if hashlib.file_digest(f, "sha256").hexdigest() == path.name:
                        continue
            bad.append(digest)
            if delete:
                path.unlink()
    return bad


def gc(store: BlobStore, *, dry_run: bool = False) -> tuple[int, int]:
    """Remove blobs no recorded image uses; returns (blobs removed, bytes freed)."""
    with store.exclusive_lock():
        keep = reachable(store)
        removed = freed = 0
        for path in store.blobs_dir.iterdir():
            if f"sha256:{path.name}" in keep:
                continue
            removed += 1
            freed += path.stat().st_size
            if not dry_run:
                path.unlink()
        if not dry_run:
            records.drop_dangling_layers(store)
            clean_tmp(store)
        return removed, freed


def clean_tmp(store: BlobStore) -> int:
    """Remove what dead processes left in ``tmp/`` (folders and files, also of older lamina releases);
    the folders of live processes (a library user without the store lock) are kept."""
    removed = scratch.sweep(store.tmp_root)
    if store.staging_root != store.tmp_root:
        removed += scratch.sweep(store.staging_root)
    live = scratch.live_folders(store.tmp_root)
    for path in store.tmp_root.iterdir():
        name = path.name
        if name.endswith(scratch.ALIVE) or name in live:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def reachable(store: BlobStore) -> set[str]:
    """Every stored blob a recorded image uses (its manifests, configs and layers)."""
    keep: set[str] = set()
    todo = [(r["digest"], r["mediaType"]) for r in records.images(store)]
    while todo:
        digest, media_type = todo.pop()
        if digest in keep or not store.has(digest):
            continue
        keep.add(digest)
        if media_type in mt.INDEX_TYPES or media_type in mt.MANIFEST_TYPES:
            todo.extend(_children(store, digest, media_type))
    return keep


def _children(store: BlobStore, digest: str, media_type: str) -> list[tuple[str, str]]:
    try:
        doc = json.loads(store.read_bytes(digest))
    except (DigestMismatchError, ValueError):
        return []
    if media_type in mt.INDEX_TYPES:
        return [(m["digest"], m.get("mediaType", mt.OCI_MANIFEST)) for m in doc.get("manifests", [])]
    children = [(doc["config"]["digest"], doc["config"]["mediaType"])]
    return children + [(layer["digest"], layer["mediaType"]) for layer in doc.get("layers", [])]
