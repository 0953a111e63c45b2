"""An image's supply-chain documents, made from what the store recorded, and attached where the image is.

For each platform image: its SPDX and CycloneDX SBOMs (always), and with a key its SLSA provenance in a
signed DSSE envelope (the provenance lists the SBOMs' digests, so the signature covers them too). They
become OCI artifacts whose ``subject`` is the image (:mod:`lamina.oci.referrers`), pushed next to it in
a registry or written into the OCI layout beside it.

Artifact types: ``application/spdx+json``, ``application/vnd.cyclonedx+json`` and
``application/vnd.in-toto+json`` (one layer, ``application/vnd.dsse.envelope.v1+json``, annotated with
the predicate type), the names ORAS, Trivy and the OCI referrers examples use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from lamina.errors import LaminaError
from lamina.inventory import Inventory, load_inventory
from lamina.oci import mediatypes as mt
from lamina.oci.model import ANNOTATION_CREATED
from lamina.oci.referrers import Artifact, Blob, attach_to_layout, make_artifact, push_artifacts
from lamina.oci.registry.client import RegistryClient
from lamina.oci.store import BlobStore
from lamina.supply import dsse, sbom_cyclonedx, sbom_spdx
from lamina.supply.facts import SbomInput
from lamina.supply.keys import PrivateKey
from lamina.supply.provenance import PREDICATE_TYPE, BuildFacts, provenance_statement

SPDX_TYPE = sbom_spdx.MEDIA_TYPE
CYCLONEDX_TYPE = sbom_cyclonedx.MEDIA_TYPE
ATTESTATION_TYPE = dsse.IN_TOTO
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
FORMATS = {"spdx": SPDX_TYPE, "cyclonedx": CYCLONEDX_TYPE}


@dataclass(frozen=True)
class Documents:
    """The documents of one platform image (``envelope`` only when signed)."""

    source: SbomInput
    spdx: bytes
    cyclonedx: bytes
    statement: bytes
    envelope: bytes | None = None

    def sbom(self, fmt: str) -> bytes:
        return self.spdx if fmt == "spdx" else self.cyclonedx

    def artifacts(self) -> list[Artifact]:
        """The artifacts to attach: both SBOMs, and the signed provenance when there is one."""
        src = self.source
        subject = {"mediaType": src.manifest_media_type, "digest": src.digest, "size": src.manifest_size}
        created = {ANNOTATION_CREATED: src.created}
        out = [
            make_artifact(subject, SPDX_TYPE, [Blob(self.spdx, SPDX_TYPE)], annotations=created),
            make_artifact(subject, CYCLONEDX_TYPE, [Blob(self.cyclonedx, CYCLONEDX_TYPE)], annotations=created),
        ]
        if self.envelope is not None:
            layer = Blob(self.envelope, dsse.MEDIA_TYPE, {PREDICATE_ANNOTATION: PREDICATE_TYPE})
            out.append(make_artifact(subject, ATTESTATION_TYPE, [layer],
                                     annotations={**created, PREDICATE_ANNOTATION: PREDICATE_TYPE}))
        return out


def documents(source: SbomInput, facts: BuildFacts, key: PrivateKey | None = None,
              base: Documents | None = None) -> Documents:
    """SBOMs (pointing at ``base``'s, when given) and the provenance of one image."""
    spdx = sbom_spdx.spdx_sbom(replace(source, base_sbom=base.spdx if base else None))
    cyclonedx = sbom_cyclonedx.cyclonedx_sbom(replace(source, base_sbom=base.cyclonedx if base else None))
    statement = provenance_statement(source, facts, [("sbom.spdx.json", spdx, SPDX_TYPE),
                                                     ("sbom.cdx.json", cyclonedx, CYCLONEDX_TYPE)])
    envelope = dsse.sign_envelope(statement, key) if key is not None else None
    return Documents(source, spdx, cyclonedx, statement, envelope)


def recorded_documents(store: BlobStore, digest: str, facts: BuildFacts, key: PrivateKey | None = None, *,
                       distro: str = "", reference: str = "", project: str = "",
                       version_of: Callable[[str], str] = lambda _name: "") -> Documents:
    """The documents of the image with manifest ``digest`` that this store built (its inventory is
    recorded); its base's SBOMs are made the same way, when lamina built the base too, so they are the
    very bytes attached to the base (``version_of`` gives an image's version from its name)."""
    source = recorded_input(store, digest, distro=distro, reference=reference)
    source = replace(source, project=project, version=version_of(source.inventory.image))
    base = None
    if source.inventory.base_digest and load_inventory(store, source.inventory.base_digest) is not None:
        base = recorded_documents(store, source.inventory.base_digest, BuildFacts(), distro=distro, project=project,
                                  version_of=version_of)
    return documents(source, facts, key, base)


def recorded_input(store: BlobStore, digest: str, *, distro: str = "", reference: str = "",
                   version: str = "") -> SbomInput:
    inventory = load_inventory(store, digest)
    if inventory is None:
        raise LaminaError(
            f"no inventory is recorded for image {digest} in the store at {store.root}",
            hint="SBOMs come from what lamina built: build the image with this store (LAMINA_STORE) first",
        )
    manifest = store.read_bytes(digest)
    media_type = json.loads(manifest).get("mediaType", mt.OCI_MANIFEST)
    config = json.loads(store.read_bytes(json.loads(manifest)["config"]["digest"]))
    return SbomInput(inventory, str(config.get("created", "1970-01-01T00:00:00Z")), media_type, len(manifest),
                     distro=distro or _distro_of(inventory), version=version, reference=reference)


def _distro_of(inventory: Inventory) -> str:
    return inventory.extra.get("distro", "") or inventory.extra.get("debian_release", "")


def attach_to_registry(client: RegistryClient, repo: str, docs: Documents) -> list[str]:
    """Push the documents as referrers of the image in ``repo``; returns the digests of those that were
    not attached already."""
    return push_artifacts(client, repo, docs.artifacts(), replace_type=True)


def attach_to_oci_layout(root: Path, docs: Sequence[Documents]) -> None:
    """Write the documents of images already in the layout at ``root`` as their referrers."""
    attach_to_layout(root, [a for d in docs for a in d.artifacts()])
