"""Where built images go: an OCI layout directory (the default), a docker-archive tar, a registry.

Building never knows about outputs; outputs never build. Each output gets the images and the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lamina.errors import LaminaError
from lamina.oci.archive import write_docker_archive
from lamina.oci.layout import write_layout
from lamina.oci.model import Image
from lamina.oci.reference import Reference
from lamina.oci.remote import PushReport, Registries, ensure_blobs, push_image
from lamina.oci.store import BlobStore

OutputKind = Literal["oci", "docker-archive"]


@dataclass(frozen=True)
class Output:
    """A local output: ``oci:DIR`` or ``docker-archive:FILE``."""

    kind: OutputKind
    path: Path

    @classmethod
    def parse(cls, text: str, base_dir: Path) -> Output:
        kind, sep, path = text.partition(":")
        if not sep or kind not in ("oci", "docker-archive") or not path:
            raise LaminaError(
                f"unknown output {text!r}",
                hint="use oci:DIR (an OCI layout directory) or docker-archive:FILE (for docker/podman load)",
            )
        return cls(kind, (base_dir / path).absolute())  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}"


@dataclass(frozen=True)
class Named:
    """An image with the name it gets in outputs: ``name:tag``."""

    name: str
    tag: str
    image: Image

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"


def write_output(output: Output, images: Sequence[Named], store: BlobStore, registries: Registries) -> int:
    """Write ``images`` to a local output; returns the bytes of base layers fetched to do it."""
    fetched = sum(ensure_blobs(n.image, store, registries) for n in images)
    if output.kind == "oci":
        write_layout(output.path, [(n.ref_name, n.image) for n in images], store)
    else:
        write_docker_archive(output.path, [([n.ref_name], n.image) for n in images], store)
    return fetched


def push(
    images: Sequence[tuple[Named, Reference]],
    store: BlobStore,
    registries: Registries,
    *,
    on_blob: Callable[[str, str], None] | None = None,
) -> list[PushReport]:
    """Push each image to its target reference (uploading only blobs the registry lacks).

    Images are pushed in order; blobs of one are mounted into the next from the repositories
    already pushed to on the same registry (a base and the images on it share layers).
    """
    reports = []
    holders: dict[str, dict[str, list[str]]] = {}  # registry → digest → repositories holding it
    for named, target in images:
        known = holders.setdefault(target.registry, {})
        reports.append(
            push_image(named.image, target, [target.identifier], store, registries, mount_sources=known, on_blob=on_blob)
        )
        for desc in named.image.blobs():
            known.setdefault(desc.digest, []).append(target.repository)
    return reports
