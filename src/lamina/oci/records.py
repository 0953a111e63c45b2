"""The small JSON records that make the blob store a build cache, all written atomically under its root.

    layers/<diff_id hex>.<compressor>.<zip>  which compressed blob holds an uncompressed layer
    keys/<kind>/<hex>.json                   records keyed by a hash of inputs (e.g. a layer's inputs)
    images/<hex>.json                        recorded images: the roots that ``gc`` keeps

A record is a cache entry, never the only copy of anything: one that cannot be read is treated as absent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.oci.digest import hex_of
from lamina.oci.files import atomic_write

if TYPE_CHECKING:
    from lamina.oci.store import BlobStore

RECORD_DIRS = ("layers", "keys", "images")


@dataclass(frozen=True)
class StoredLayer:
    """A compressed layer blob and the uncompressed content it holds."""

    diff_id: str
    digest: str
    size: int
    media_type: str


def key_hex(key: str) -> str:
    """The file name of a record keyed by any string."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a record torn by a crash of an older version: treat as absent


def write_json(store: BlobStore, path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically, unless the file already holds exactly these bytes: a rebuild that
    changes nothing then writes (and fsyncs) nothing."""
    data = json.dumps(record, sort_keys=True).encode()
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass  # absent or unreadable: write it
    atomic_write(path, data, tmp_dir=store.tmp_dir)


# -- layers: uncompressed content -> the compressed blob one compressor made of it ----------------------


def _layer_record(store: BlobStore, diff_id: str, media_type: str, compressor: str) -> Path:
    suffix = media_type.rsplit("+", 1)[-1] if "+" in media_type else "tar"
    return store.root / "layers" / f"{hex_of(diff_id)}.{key_hex(compressor)[:16]}.{suffix}"


def find_layer(store: BlobStore, diff_id: str, media_type: str, compressor: str) -> StoredLayer | None:
    """The blob ``compressor`` (its exact identity: name, version, settings) already made for this
    content, if still stored. Another compressor's blob is not reused: its digest would differ from
    what a cold build with this one gives elsewhere."""
    record = read_json(_layer_record(store, diff_id, media_type, compressor))
    if record is None or not store.has(record["digest"]):
        return None
    return StoredLayer(diff_id, record["digest"], record["size"], media_type)


def record_layer(store: BlobStore, layer: StoredLayer, compressor: str) -> None:
    data = {"diff_id": layer.diff_id, "digest": layer.digest, "size": layer.size, "compressor": compressor}
    write_json(store, _layer_record(store, layer.diff_id, layer.media_type, compressor), data)


def drop_dangling_layers(store: BlobStore) -> None:
    """Remove layer records whose blob is gone (after ``gc``)."""
    for path in (store.root / "layers").iterdir():
        record = read_json(path)
        if record is None or not store.has(record["digest"]):
            path.unlink()


# -- keyed records ---------------------------------------------------------------------------------------


def get_key(store: BlobStore, kind: str, key: str) -> dict[str, Any] | None:
    return read_json(store.root / "keys" / kind / f"{key_hex(key)}.json")


def put_key(store: BlobStore, kind: str, key: str, record: dict[str, Any]) -> None:
    write_json(store, store.root / "keys" / kind / f"{key_hex(key)}.json", record)


# -- recorded images (gc roots) --------------------------------------------------------------------------


def record_image(store: BlobStore, name: str, digest: str, media_type: str) -> None:
    record = {"name": name, "digest": digest, "mediaType": media_type}
    write_json(store, store.root / "images" / f"{key_hex(name)}.json", record)


def images(store: BlobStore) -> list[dict[str, str]]:
    found = (read_json(p) for p in sorted((store.root / "images").glob("*.json")))
    return [r for r in found if r is not None]
