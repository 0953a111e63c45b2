"""Local outputs: an OCI layout directory (``oci:DIR``) or a docker-archive tar (``docker-archive:FILE``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lamina.errors import LaminaError
from lamina.oci.archive import write_docker_archive
from lamina.oci.layout import write_layout
from lamina.oci.remote import Registries, ensure_blobs
from lamina.oci.store import BlobStore
from lamina.publish.named import Named

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


def write_output(output: Output, images: Sequence[Named], store: BlobStore, registries: Registries) -> int:
    """Write ``images`` to a local output; returns the bytes of base layers fetched to do it.

    A docker-archive holds one platform per image (``docker load`` knows no index): an image built for
    several platforms is refused, naming them (an index of one platform is written as that image)."""
    if output.kind == "docker-archive":
        for named in images:
            if len(named.images) > 1:
                platforms = ", ".join(str(i.platform) for i in named.images)
                raise LaminaError(
                    f"{named.ref_name} is built for {platforms}, and a docker-archive holds one platform",
                    hint="build one platform for the archive (--platform linux/amd64), or write an OCI layout",
                )
    fetched = sum(ensure_blobs(image, store, registries) for n in images for image in n.images)
    if output.kind == "oci":
        write_layout(output.path, [(n.ref_name, n.artifact) for n in images], store)
    else:
        write_docker_archive(output.path, [([n.ref_name], n.images[0]) for n in images], store)
    return fetched
