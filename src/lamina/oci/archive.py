"""docker-archive tars, as ``docker save`` writes them, for ``docker load`` and ``podman load``.

Layout of the tar: ``manifest.json``, ``repositories``, ``<config hex>.json`` and one
``<diff_id hex>/layer.tar`` per layer. Layers are stored uncompressed (every loader accepts that,
and each one is checked against its diff_id while it is unpacked from the store). The tar itself is
written by the deterministic layer writer, so the same image gives the same archive bytes.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import zstandard

from lamina.errors import DigestMismatchError, LaminaError
from lamina.oci.compress import decompressor
from lamina.oci.digest import DigestWriter, hex_of
from lamina.oci.model import Image
from lamina.oci.files import atomic_file, full_disk_reported
from lamina.oci.store import BlobStore
from lamina.oci.tar import Entry, write_tar


def write_docker_archive(path: Path, images: Sequence[tuple[Sequence[str], Image]], store: BlobStore) -> None:
    """Write ``images`` (each with its repo:tag names) to the docker-archive at ``path``, atomically."""
    path = path.absolute()
    with full_disk_reported(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_archive(path, images, store)


def _write_archive(path: Path, images: Sequence[tuple[Sequence[str], Image]], store: BlobStore) -> None:
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".lamina-archive-") as tmp:
        entries: dict[str, Entry] = {}
        manifest = []
        repositories: dict[str, dict[str, str]] = {}
        for tags, image in images:
            config_name = f"{hex_of(image.config.digest)}.json"
            entries[config_name] = Entry.bytes(config_name, image.config.data)
            layer_names = []
            for desc, diff_id in zip(image.layers, image.diff_ids, strict=True):
                name = f"{hex_of(diff_id)}/layer.tar"
                if name not in entries:
                    source = Path(tmp) / hex_of(diff_id)
                    _unpack_layer(store, desc.digest, desc.media_type, diff_id, source)
                    entries[name] = Entry.file(name, source, mode=0o644)
                layer_names.append(name)
            manifest.append({"Config": config_name, "RepoTags": list(tags), "Layers": layer_names})
            for tag in tags if layer_names else ():
                repo, _, version = tag.rpartition(":")
                repositories.setdefault(repo, {})[version] = layer_names[-1].split("/")[0]
        entries["manifest.json"] = Entry.bytes("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
        entries["repositories"] = Entry.bytes("repositories", json.dumps(repositories, sort_keys=True).encode())
        with atomic_file(path) as out:
            write_tar(entries.values(), out)


def _unpack_layer(store: BlobStore, digest: str, media_type: str, diff_id: str, dest: Path) -> None:
    """Decompress a stored layer blob to ``dest``, checking both its digest and its diff_id."""
    make = decompressor(media_type)
    if make is None:
        raise LaminaError(f"layer {digest} has an unsupported media type {media_type}")
    inflate = make()
    with full_disk_reported(dest.parent), store.open(digest) as src, open(dest, "wb") as out:
        content = DigestWriter(out)
        try:
            while chunk := src.read(1 << 20):
                content.write(inflate.decompress(chunk))
            content.write(inflate.flush() if hasattr(inflate, "flush") else b"")
        except DigestMismatchError:
            raise
        except (zlib.error, zstandard.ZstdError, EOFError, ValueError) as e:
            raise DigestMismatchError(
                f"stored layer {digest} is corrupt: it does not decompress ({e})",
                hint="run `lamina store verify --delete`, then build again",
            ) from None
    if content.digest != diff_id:
        raise DigestMismatchError(
            f"layer {digest} does not decompress to its diff_id {diff_id} (got {content.digest})",
            hint="the stored blob is corrupt: run `lamina store verify --delete` and build again",
        )
