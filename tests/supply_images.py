"""Tiny real images for the supply-chain tests: one layer, pushed to a loopback registry or a layout."""

from __future__ import annotations

import gzip
import io
import tarfile

from lamina.oci import mediatypes as mt
from lamina.oci.digest import sha256_digest
from lamina.oci.model import Descriptor, Image, Platform, build_config, build_manifest
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries, push_image
from lamina.oci.store import BlobStore


def tiny_image(store: BlobStore, text: str = "hello") -> Image:
    """A one-layer linux/amd64 image whose only file is /hello.txt holding ``text``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        data = text.encode()
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    store.put_bytes(layer)
    config = build_config(platform=Platform(), run={"Cmd": ["/bin/sh"]}, diff_ids=[sha256_digest(raw.getvalue())],
                          history=[{"created": "1970-01-01T00:00:00Z"}], created="1970-01-01T00:00:00Z")
    store.put_bytes(config.data)
    manifest = build_manifest(config, [Descriptor(mt.OCI_LAYER_GZIP, sha256_digest(layer), len(layer))])
    store.put_bytes(manifest.data)
    return Image(manifest, config)


def push_tiny(store: BlobStore, host: str, repo: str, tag: str = "1", text: str = "hello") -> tuple[Reference, Image]:
    """Push a tiny image to ``host/repo:tag``; returns its reference and the image."""
    image = tiny_image(store, text)
    ref = Reference.parse(f"{host}/{repo}:{tag}")
    registries = Registries(insecure=frozenset({host}))
    try:
        push_image(image, ref, [tag], store, registries)
    finally:
        registries.close()
    return ref, image
