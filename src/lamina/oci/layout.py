"""OCI image layout directories: ``oci-layout``, ``index.json`` and ``blobs/sha256/``.

Writing adds or replaces images by their ``org.opencontainers.image.ref.name`` and keeps the others,
so one layout can hold a whole image family. Blobs are copied verified and atomically; a blob the
layout already has (same digest, same size) is not copied again. ``index.json`` is written last,
atomically, so a reader never sees an index naming a blob that is not there yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lamina.errors import DocumentError, LaminaError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import hex_of
from lamina.oci.documents import MAX_DOCUMENT, check_config, check_manifest, too_large
from lamina.oci.model import ANNOTATION_REF_NAME, Artifact, Document, Image, Index, Platform, images_of
from lamina.oci.files import full_disk_reported
from lamina.oci.store import BlobStore, atomic_write

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def write_layout(root: Path, images: Sequence[tuple[str, Artifact]], store: BlobStore) -> Document:
    """Put each ``(ref_name, image or index)`` into the layout at ``root``; returns the new ``index.json``."""
    with full_disk_reported(root):
        return _write_layout(root, images, store)


def _write_layout(root: Path, images: Sequence[tuple[str, Artifact]], store: BlobStore) -> Document:
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    if not (root / "oci-layout").exists():
        atomic_write(root / "oci-layout", OCI_LAYOUT)
    for _, artifact in images:
        for image in images_of(artifact):
            for desc in image.blobs():
                _copy_blob(store, desc.digest, desc.size, blobs)
            _put_bytes(blobs, image.manifest.data, image.manifest.digest)
        if isinstance(artifact, Index):
            _put_bytes(blobs, artifact.document.data, artifact.digest)
    names = {name for name, _ in images}
    kept = [m for m in _read_index(root).get("manifests", []) if _ref_name(m) not in names]
    added = [_index_entry(name, artifact) for name, artifact in images]
    index = Document.of({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": kept + added}, mt.OCI_INDEX)
    atomic_write(root / "index.json", index.data)
    return index


def _index_entry(name: str, artifact: Artifact) -> dict[str, object]:
    if isinstance(artifact, Index):
        return artifact.document.descriptor(annotations={ANNOTATION_REF_NAME: name}).to_json()
    desc = artifact.manifest.descriptor(annotations={ANNOTATION_REF_NAME: name}, platform=artifact.platform)
    return desc.to_json()


def _ref_name(entry: dict[str, object]) -> str | None:
    annotations = entry.get("annotations") or {}
    return annotations.get(ANNOTATION_REF_NAME) if isinstance(annotations, dict) else None


def _copy_blob(store: BlobStore, digest: str, size: int, blobs: Path) -> None:
    dest = blobs / hex_of(digest)
    if dest.exists() and dest.stat().st_size == size:
        return
    store.copy_to(digest, dest)


def _put_bytes(blobs: Path, data: bytes, digest: str) -> None:
    dest = blobs / hex_of(digest)
    if not dest.exists():
        atomic_write(dest, data)


def _read_index(root: Path) -> dict[str, object]:
    path = root / "index.json"
    if not path.exists():
        return {}
    if path.stat().st_size > MAX_DOCUMENT:
        raise too_large(str(path), path.stat().st_size)
    try:
        return check_manifest(path.read_bytes(), mt.OCI_INDEX, str(path))
    except DocumentError as e:
        raise LaminaError(e.message, hint="remove the layout directory and build again") from None


def read_layout_image(root: Path, ref_name: str | None, platform: Platform, store: BlobStore) -> Image:
    """Import an image of a local layout into the store (blobs verified) and return it."""
    index = _read_index(root)
    if not index:
        raise LaminaError(f"{root} is not an OCI layout (no index.json)", hint="check the `from = \"oci:...\"` path")
    entries = index.get("manifests", [])
    assert isinstance(entries, list)
    matching = [e for e in entries if ref_name is None or _ref_name(e) == ref_name]
    if not matching:
        names = ", ".join(sorted(str(_ref_name(e)) for e in entries)) or "none"
        raise LaminaError(f"{root} has no image named {ref_name!r}", hint=f"names in that layout: {names}")
    entry = matching[0]
    if len(matching) > 1:
        entry = next((e for e in matching if e.get("platform") and platform.matches(e["platform"])), entry)
    doc = Document(_import_blob(root, entry["digest"], store), entry.get("mediaType", mt.OCI_MANIFEST))
    what = f"{root}:{ref_name}"
    if doc.media_type in mt.INDEX_TYPES:
        index_obj = check_manifest(doc.data, doc.media_type, what)
        chosen = next((m for m in index_obj["manifests"] if platform.matches(m.get("platform", {}))), None)
        if chosen is None:
            raise LaminaError(f"{root}:{ref_name} has no image for {platform}")
        doc = Document(_import_blob(root, chosen["digest"], store), chosen["mediaType"])
    obj = check_manifest(doc.data, doc.media_type, what)
    config = Document(_import_blob(root, obj["config"]["digest"], store), obj["config"]["mediaType"])
    check_config(config.data, len(obj["layers"]), f"the config of {what}")
    for layer in obj["layers"]:
        _import_blob(root, layer["digest"], store, small=False)
    return Image(doc, config)


def _import_blob(root: Path, digest: str, store: BlobStore, *, small: bool = True) -> bytes:
    """Copy a layout blob into the store (verified); returns its bytes when ``small`` (a document)."""
    src = root / "blobs" / "sha256" / hex_of(digest)
    if not src.is_file():
        raise LaminaError(f"{root} is missing blob {digest}", hint="the layout is incomplete; write it again")
    if small and src.stat().st_size > MAX_DOCUMENT:
        raise too_large(f"{root} blob {digest}", src.stat().st_size)
    if not store.has(digest):
        with open(src, "rb") as f, store.writing(digest) as blob:
            while chunk := f.read(1 << 20):
                blob.write(chunk)
    return store.read_bytes(digest) if small else b""
