"""What a user names on the command line, as images to report on or compare.

- a directory holding an OCI layout (``build/oci``), or ``oci:DIR``: every image in it;
- ``DIR:NAME`` or ``oci:DIR:NAME``: one image of that layout (``NAME`` with or without its tag);
- anything else: a registry reference (``host/owner/repo:tag``), read without pulling layers until scanned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from lamina.errors import LaminaError
from lamina.oci.model import Image, Platform
from lamina.oci.remote import Registries, fetch_from_origin
from lamina.oci.store import BlobStore
from lamina.report.source import SourceImage, layout_images, registry_image, source_image


def is_layout(path: Path) -> bool:
    return (path / "index.json").is_file() and (path / "oci-layout").is_file()


def locate(text: str, store: BlobStore, registries: Registries, platform: Platform | None = None,
           base_dir: Path | None = None) -> list[SourceImage]:
    """The images ``text`` names (see the module's docstring)."""
    base_dir = base_dir or Path.cwd()
    explicit = text.startswith("oci:")
    body = text[4:] if explicit else text
    path = base_dir / body
    if is_layout(path):
        return layout_images(path, platform=platform)
    directory, sep, name = body.rpartition(":")
    if sep and directory and is_layout(base_dir / directory):
        return layout_images(base_dir / directory, [name], platform=platform)
    if explicit:
        raise LaminaError(f"{body} is not an OCI layout directory", hint="give the directory `lamina build` wrote, e.g. oci:build/oci")
    if Path(body).exists() or body.startswith((".", "/")):
        raise LaminaError(f"{body} is not an OCI layout (no index.json and oci-layout there)",
                          hint="give a layout directory (build/oci), DIR:NAME, or a registry reference")
    if "/" not in body:
        raise LaminaError(f"{text!r} is neither an OCI layout directory nor a registry reference",
                          hint="write host/owner/name:tag for a registry, or the path of a layout (build/oci)")
    return [registry_image(body, store, registries, platform)]


def built_images(named: Sequence[tuple[str, Image]], store: BlobStore, registries: Registries) -> list[SourceImage]:
    """Images just built (``name:tag``, image): their layers from the store, a base's from its registry if
    the store does not have them (a push-only build never downloads them otherwise)."""
    out = []
    for name, image in named:

        def open_blob(digest: str, image: Image = image) -> BinaryIO:
            if not store.has(digest):
                fetch_from_origin(image, digest, store, registries)
            return store.open(digest)  # type: ignore[return-value]

        out.append(source_image(name, image.manifest, image.config, open_blob, f"store {store.root}"))
    return out
