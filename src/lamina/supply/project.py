"""A project's images and their supply-chain documents: what ``lamina build``, ``sbom`` and ``sign`` share.

Ties :mod:`lamina.supply.attach` to a project: which Debian release an image's packages come from (its
``from = "debian:RELEASE"`` chain), the build facts of the provenance (lamina.toml and lamina.lock by
digest, the git commit), and where documents go (the OCI layout written, the registry pushed to).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path

from lamina.config import ProjectConfig
from lamina.debian import is_debian_base, release_of
from lamina.oci.model import Image
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.publish.named import Named
from lamina.supply.attach import Documents, attach_to_oci_layout, attach_to_registry, recorded_documents
from lamina.supply.keys import PrivateKey
from lamina.supply.provenance import BuildFacts
from lamina.supply.sign import Signed, sign_image


def distro_of(config: ProjectConfig, name: str) -> str:
    """The Debian release of ``name``'s packages: the ``debian:RELEASE`` its base chain starts from."""
    seen: set[str] = set()
    spec = config.images.get(name)
    while spec is not None and spec.name not in seen:
        seen.add(spec.name)
        if is_debian_base(spec.base):
            return release_of(spec.base)
        spec = config.images.get(spec.base)
    return ""


def build_facts(config: ProjectConfig) -> BuildFacts:
    """lamina.toml and lamina.lock by digest, and the commit (``[project] revision``, else git's HEAD)."""
    root = config.path.parent
    lock = next((p for p in (root / "lamina.lock", config.path.with_suffix(".lock")) if p.is_file()), None)
    return BuildFacts(
        config=(config.path.name, _sha256(config.path)),
        lock=(lock.name, _sha256(lock)) if lock else ("", ""),
        source=config.source or _git(root, "remote", "get-url", "origin"),
        revision=config.revision or _git(root, "rev-parse", "HEAD"),
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def image_documents(config: ProjectConfig, store: BlobStore, name: str, image: Image, *,
                    key: PrivateKey | None = None) -> Documents:
    """The documents of project image ``name`` (built into ``store``).

    They do not name where the image is published: the same image has the same SBOM bytes in a layout,
    in any registry, and when printed by ``lamina sbom``."""
    return recorded_documents(store, image.digest, build_facts(config), key, distro=distro_of(config, name),
                              project=config.owner or config.path.parent.name,
                              version_of=lambda image: config.tag_of(config.images[image]) if image in config.images else "")


def attach_to_layout(config: ProjectConfig, store: BlobStore, layout: Path, named: Sequence[Named],
                     key: PrivateKey | None = None) -> list[Documents]:
    """SBOMs (and, with ``key``, signed provenance) of every platform image of ``named`` into the OCI
    layout they were written to."""
    docs = [image_documents(config, store, n.name, image, key=key) for n in named for image in n.images]
    attach_to_oci_layout(layout, docs)
    return docs


def attach_and_sign(config: ProjectConfig, store: BlobStore, registries: Registries,
                    pushed: Sequence[tuple[Named, Reference]], key: PrivateKey | None = None) -> list[Signed]:
    """After a push: attach the SBOMs (and signed provenance) of each platform image, then, with ``key``,
    sign what was pushed (an index and each of its platform manifests)."""
    signed: list[Signed] = []
    for named, target in pushed:
        client = registries.client(target.registry)
        for image in named.images:
            attach_to_registry(client, target.repository, image_documents(config, store, named.name, image, key=key))
        if key is not None:
            signed += sign_image(client, target, named.digest, key)
    return signed
