"""Documents from outside (a registry, a layout) checked before use: size-capped, JSON, the fields lamina reads.

A registry is not trusted to send what it says: a 300 MB "manifest" would be read whole, a body that is
not JSON or lacks ``config`` would surface as a Python traceback deep in the build. Here every manifest,
index and image config is refused with one :class:`~lamina.errors.DocumentError` naming what was fetched
and what is wrong: over :data:`MAX_DOCUMENT` bytes (the 4 MiB the distribution spec lets registries
refuse above), not a JSON object, or missing or mistyping a field lamina uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from lamina.errors import DocumentError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import is_digest

#: Largest manifest, index or config lamina reads (the distribution spec: registries SHOULD accept 4 MiB).
MAX_DOCUMENT = 4 * 1024 * 1024


def read_capped(chunks: Iterable[bytes], what: str, *, limit: int = MAX_DOCUMENT) -> bytes:
    """Join ``chunks``, refusing as soon as they pass ``limit`` bytes (never holding more than that)."""
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_large(what, size, limit)
        parts.append(chunk)
    return b"".join(parts)


def too_large(what: str, size: int, limit: int = MAX_DOCUMENT) -> DocumentError:
    return DocumentError(f"{what} is over {limit // (1024 * 1024)} MiB ({size} bytes or more); lamina reads "
                         f"documents up to {limit} bytes", hint="the registry sent something else than a "
                         "manifest; check the reference, or the registry")


def parse(data: bytes, what: str) -> dict[str, Any]:
    """``data`` as a JSON object."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        start = data[:60].decode("utf-8", "replace")
        raise DocumentError(f"{what} is not JSON ({e}; it starts {start!r})",
                            hint="the registry (or a proxy in front of it) answered with something else than "
                                 "a manifest; check its URL and health") from None
    if not isinstance(obj, dict):
        raise DocumentError(f"{what} is JSON but not an object", hint="the registry sent a broken document")
    return obj


def check_manifest(data: bytes, media_type: str, what: str) -> dict[str, Any]:
    """A manifest or index, checked for the fields lamina reads; returns it parsed."""
    obj = parse(data, what)
    if media_type in mt.INDEX_TYPES or (media_type not in mt.MANIFEST_TYPES and "manifests" in obj):
        entries = _field(obj, "manifests", list, what)
        for i, entry in enumerate(entries):
            _descriptor(entry, f"{what}: manifests[{i}]")
            platform = entry.get("platform")
            if platform is not None and not (isinstance(platform, dict) and isinstance(platform.get("os"), str)
                                             and isinstance(platform.get("architecture"), str)):
                raise DocumentError(f"{what}: manifests[{i}].platform lacks os or architecture",
                                    hint="the registry sent a broken index")
        return obj
    if obj.get("schemaVersion") != 2:
        raise DocumentError(f"{what}: schemaVersion is {obj.get('schemaVersion')!r}, not 2",
                            hint="lamina reads OCI and Docker schema 2 images only")
    _descriptor(_field(obj, "config", dict, what), f"{what}: config")
    for i, layer in enumerate(_field(obj, "layers", list, what)):
        _descriptor(layer, f"{what}: layers[{i}]")
    return obj


def check_config(data: bytes, layers: int, what: str) -> dict[str, Any]:
    """An image config: a JSON object whose ``rootfs.diff_ids`` has one digest per layer."""
    obj = parse(data, what)
    rootfs = _field(obj, "rootfs", dict, what)
    diff_ids = _field(rootfs, "diff_ids", list, f"{what}: rootfs")
    if not all(isinstance(d, str) and is_digest(d) for d in diff_ids):
        raise DocumentError(f"{what}: rootfs.diff_ids holds something else than digests")
    if len(diff_ids) != layers:
        raise DocumentError(f"{what}: {len(diff_ids)} diff_ids for {layers} layers",
                            hint="the manifest and its config do not belong together")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, what: str) -> Any:
    if key not in obj:
        raise DocumentError(f"{what} has no {key!r}", hint="the registry sent an incomplete document")
    value = obj[key]
    if not isinstance(value, kind):
        raise DocumentError(f"{what}: {key!r} is a {type(value).__name__}, expected a {kind.__name__}",
                            hint="the registry sent a broken document")
    return value


def _descriptor(obj: Any, what: str) -> None:
    if not isinstance(obj, dict):
        raise DocumentError(f"{what} is not a descriptor object")
    if not isinstance(obj.get("mediaType"), str):
        raise DocumentError(f"{what} has no mediaType", hint="the registry sent an incomplete document")
    digest = obj.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise DocumentError(f"{what}: digest {digest!r} is not a sha256 digest",
                            hint="lamina verifies sha256 digests only")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise DocumentError(f"{what}: size {size!r} is not a byte count")
