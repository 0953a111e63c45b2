"""``lamina rebase``: put a pushed image on a new base without building it again (crane's and buildpacks'
``rebase``).

An image lamina built says what it was built on: the ``org.opencontainers.image.base.name`` and
``.base.digest`` annotations of its manifest. The old base's layers must be the bottom of the image; they
are swapped for the new base's, the image's own layers are kept as they are (same blobs), and its config
gets the new base's diff_ids and history under its own. Only documents change: the new config and
manifest are the only uploads (the new base's layers are mounted from its repository).

This is sound only when the image's own layers do not depend on what changed in the base. lamina refuses:
a new base with another Python minor (the image's wheels and bytecode are for the old one), an older glibc
(its manylinux wheels may need the newer), or an image whose bottom layers are not its recorded base's.
Everything else in the config (env, command, labels) is the image's, as crane keeps it; when the new
base's env differs, rebuild instead (``lamina build``), which merges them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lamina.debian.resolve import version_compare
from lamina.debian.status import read_base_facts
from lamina.errors import LaminaError
from lamina.inventory import load_inventory
from lamina.oci.model import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME, Document, Image, Platform, env_of
from lamina.oci.reference import Reference
from lamina.oci.remote import PushReport, Registries, ensure_blobs, pull_image, push_image
from lamina.oci.store import BlobStore


class RebaseRefused(LaminaError):
    """The image cannot be put on that base without being rebuilt."""


@dataclass
class Rebased:
    image: Image
    old_base: str
    new_base: str
    kept_layers: int
    python: str | None
    glibc: str | None
    report: PushReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.image.digest, "old_base": self.old_base, "new_base": self.new_base,
                "kept_layers": self.kept_layers, "python": self.python, "glibc": self.glibc,
                "pushed": self.report.target if self.report else None,
                "bytes_uploaded": self.report.bytes_uploaded if self.report else 0}


def rebase(image_ref: Reference, onto: Reference, store: BlobStore, registries: Registries, *,
           platform: Platform = Platform(), target: Reference | None = None, push: bool = True) -> Rebased:
    """Rebase the image at ``image_ref`` onto ``onto`` and (with ``push``) push it to ``target`` (default:
    ``image_ref``'s tag). Raises :class:`RebaseRefused` with the reason when the ABI does not allow it."""
    image = pull_image(image_ref, platform, store, registries)
    annotations = image.manifest.json().get("annotations") or {}
    old_name, old_digest = annotations.get(ANNOTATION_BASE_NAME), annotations.get(ANNOTATION_BASE_DIGEST)
    if not old_name or not old_digest:
        raise RebaseRefused(f"{image_ref} does not say what it was built on (no {ANNOTATION_BASE_NAME} and "
                            f"{ANNOTATION_BASE_DIGEST} annotations)",
                            hint="rebuild it with lamina (which records its base), then rebase")
    old_ref = Reference.parse(old_name)
    old = pull_image(Reference(old_ref.registry, old_ref.repository, old_ref.tag, old_digest), platform, store,
                     registries)
    new = pull_image(onto, platform, store, registries)
    new_name = str(Reference(onto.registry, onto.repository, onto.tag, None)) if onto.tag else str(onto)
    own = _own_layers(image, old, image_ref, old_name)
    python = _check_python(old, new, old_name, str(onto))
    glibc = _check_glibc(old, new, store, registries, old_name, str(onto))
    rebased = _assemble(image, old, new, own, new_name)
    store.put_bytes(rebased.config.data, rebased.config.digest)
    store.put_bytes(rebased.manifest.data, rebased.manifest.digest)
    result = Rebased(rebased, old_name, new_name, own, python, glibc)
    if push:
        where = target or image_ref
        result.report = push_image(rebased, where, [where.tag or where.identifier], store, registries,
                                   mount_sources={d: [image_ref.repository] for d in _top_digests(image, own)})
    return result


def _own_layers(image: Image, old: Image, image_ref: Reference, old_name: str) -> int:
    """How many layers the image has on top of its old base (checked: the bottom ones are the base's)."""
    base_ids = old.diff_ids
    ids = image.diff_ids
    if ids[:len(base_ids)] != base_ids or [d.digest for d in image.layers[:len(old.layers)]] != \
            [d.digest for d in old.layers]:
        raise RebaseRefused(f"the bottom layers of {image_ref} are not those of its recorded base {old_name}",
                            hint="the image was changed after it was built; rebuild it with `lamina build`")
    return len(ids) - len(base_ids)


def python_minor(image: Image) -> str | None:
    """The Python minor an image runs, from its config (PYTHON_VERSION, or LAMINA_PYTHON's name)."""
    env = env_of(image.config.json().get("config", {}))
    if m := re.match(r"(3\.\d+)", env.get("PYTHON_VERSION", "")):
        return m.group(1)
    if m := re.search(r"python(3\.\d+)$", env.get("LAMINA_PYTHON", "")):
        return m.group(1)
    return None


def _check_python(old: Image, new: Image, old_name: str, new_name: str) -> str | None:
    before, after = python_minor(old), python_minor(new)
    if before != after:
        raise RebaseRefused(f"{new_name} runs Python {after or 'none'}, but the image was built for Python "
                            f"{before or 'none'} on {old_name}: its wheels and bytecode are for that one",
                            hint="rebuild the image on the new base with `lamina build`")
    return after


def glibc_of(image: Image, store: BlobStore, registries: Registries, label: str) -> str | None:
    """The version of Debian's libc6 in the image (its inventory when this store built it, else its dpkg
    status, read from its layers); None when it has none (not Debian-based)."""
    inventory = load_inventory(store, image.digest)
    if inventory is not None:
        found = [p.component.version for p in inventory.of_kind("deb") if p.component.name == "libc6"]
        return found[0] if found else None
    ensure_blobs(image, store, registries)
    try:
        facts = read_base_facts(image, store, label)
    except LaminaError:
        return None
    libc = facts.installed.get("libc6")
    return libc.version if libc else None


def _check_glibc(old: Image, new: Image, store: BlobStore, registries: Registries, old_name: str,
                 new_name: str) -> str | None:
    before = glibc_of(old, store, registries, old_name)
    if before is None:
        return glibc_of(new, store, registries, new_name)
    after = glibc_of(new, store, registries, new_name)
    if after is None or version_compare(after, before) < 0:
        raise RebaseRefused(f"{new_name} has glibc {after or 'none'}, older than the {before} of {old_name}: "
                            "the image's compiled wheels may need the newer one",
                            hint="rebase onto a base with the same or a newer glibc, or rebuild")
    return after


def _assemble(image: Image, old: Image, new: Image, own: int, new_name: str) -> Image:
    config: dict[str, Any] = json.loads(image.config.data)
    old_history = len(old.config.json().get("history", []))
    config["rootfs"]["diff_ids"] = new.diff_ids + image.diff_ids[len(image.diff_ids) - own:]
    config["history"] = list(new.config.json().get("history", [])) + config.get("history", [])[old_history:]
    config_doc = Document.of(config, image.config.media_type)
    manifest: dict[str, Any] = json.loads(image.manifest.data)
    manifest["config"] = config_doc.descriptor().to_json()
    top = manifest["layers"][len(manifest["layers"]) - own:] if own else []
    manifest["layers"] = [d.to_json() for d in new.layers] + top
    annotations = dict(manifest.get("annotations") or {})
    if annotations:
        annotations[ANNOTATION_BASE_NAME] = new_name
        annotations[ANNOTATION_BASE_DIGEST] = new.digest
        manifest["annotations"] = dict(sorted(annotations.items()))
    manifest_doc = Document.of(manifest, image.manifest.media_type)
    return Image(manifest_doc, config_doc, new.origin, new.origin_blobs)


def _top_digests(image: Image, own: int) -> list[str]:
    return [d.digest for d in image.layers[len(image.layers) - own:]] if own else []
