"""Pushing to a registry: each image or index to its target, uploading only what the registry lacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lamina.oci.model import Index
from lamina.oci.reference import Reference
from lamina.oci.remote import PushReport, Registries, push_image, push_index
from lamina.oci.store import BlobStore
from lamina.publish.named import Named


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
        artifact = named.artifact
        if isinstance(artifact, Index):
            report = push_index(artifact, target, [target.identifier], store, registries, mount_sources=known,
                                on_blob=on_blob)
        else:
            report = push_image(artifact, target, [target.identifier], store, registries, mount_sources=known,
                                on_blob=on_blob)
        reports.append(report)
        for image in named.images:
            for desc in image.blobs():
                known.setdefault(desc.digest, []).append(target.repository)
    return reports
