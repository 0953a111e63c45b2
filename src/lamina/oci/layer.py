"""Turning entries into stored, compressed layers, each made once.

A layer is hashed uncompressed first (a cheap pass: read and sha256). If the store already holds a
compressed blob of that diff_id, that blob is the layer and nothing is compressed. Otherwise a second
pass streams tar → sha256 → compressor → sha256 → store, without holding the layer in memory.
Callers that know a stable key for their inputs (e.g. a wheel's hash) skip even the first pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lamina.errors import LaminaError
from lamina.oci.compress import Compression, compressor, workers
from lamina.oci.digest import DigestWriter
from lamina.oci.store import BlobStore, StoredLayer
from lamina.oci.tar import Entry, tar_chunks

LAYER_KEY_KIND = "layer"


@dataclass(frozen=True)
class LayerSpec:
    """What to put in one layer. ``entries`` is called only when the layer must be (re)made."""

    entries: Callable[[], Iterable[Entry]]
    description: str
    key: str | None = None


@dataclass(frozen=True)
class BuiltLayer:
    layer: StoredLayer
    description: str
    reused: bool


def diff_id_of(entries: Iterable[Entry], mtime: int) -> tuple[str, int]:
    """The uncompressed digest and size of the layer tar of ``entries``."""
    writer = DigestWriter()
    for chunk in tar_chunks(entries, mtime=mtime):
        writer.write(chunk)
    return writer.digest, writer.size


def build_layer(
    store: BlobStore, spec: LayerSpec, *, compression: Compression, media_type: str, mtime: int
) -> BuiltLayer:
    """Make (or find) the compressed layer blob for ``spec``."""
    if spec.key is not None:
        cached = _from_key(store, spec.key, media_type, mtime)
        if cached is not None:
            return BuiltLayer(cached, spec.description, True)
    diff_id, _ = diff_id_of(spec.entries(), mtime)
    found = store.find_layer(diff_id, media_type)
    if found is None:
        found = _compress(store, spec, compression, media_type, mtime, diff_id)
        reused = False
    else:
        reused = True
    if spec.key is not None:
        store.put_key(LAYER_KEY_KIND, _full_key(spec.key, media_type, mtime), {"diff_id": diff_id})
    return BuiltLayer(found, spec.description, reused)


def _full_key(key: str, media_type: str, mtime: int) -> str:
    return f"{key}\0{media_type}\0{mtime}"


def _from_key(store: BlobStore, key: str, media_type: str, mtime: int) -> StoredLayer | None:
    record = store.get_key(LAYER_KEY_KIND, _full_key(key, media_type, mtime))
    return store.find_layer(record["diff_id"], media_type) if record else None


def _compress(
    store: BlobStore, spec: LayerSpec, compression: Compression, media_type: str, mtime: int, diff_id: str
) -> StoredLayer:
    with store.writing() as blob:
        packer = compressor(compression, blob)
        uncompressed = DigestWriter(packer)
        for chunk in tar_chunks(spec.entries(), mtime=mtime):
            uncompressed.write(chunk)
        packer.close()
        if uncompressed.digest != diff_id:
            raise LaminaError(
                f"the content of layer '{spec.description}' changed during the build",
                hint="do not modify the sources while lamina builds; run the build again",
            )
    layer = StoredLayer(diff_id, blob.digest, blob.size, media_type)
    store.record_layer(layer)
    return layer


def build_layers(
    store: BlobStore,
    specs: Sequence[LayerSpec],
    *,
    compression: Compression,
    media_type: str,
    mtime: int,
    on_done: Callable[[BuiltLayer], None] | None = None,
) -> list[BuiltLayer]:
    """Build several layers, two at a time on two cores (order of the result = order of ``specs``)."""

    def one(spec: LayerSpec) -> BuiltLayer:
        built = build_layer(store, spec, compression=compression, media_type=media_type, mtime=mtime)
        if on_done is not None:
            on_done(built)
        return built

    with ThreadPoolExecutor(max_workers=max(1, min(len(specs), workers()))) as pool:
        return list(pool.map(one, specs))


def input_key(*parts: str) -> str:
    """A stable key from input descriptions (for :class:`LayerSpec.key`)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
