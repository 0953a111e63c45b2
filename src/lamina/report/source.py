"""Where the images a report reads live: an OCI layout directory, the store's built images, a registry.

Each source yields :class:`SourceImage` values: the exact manifest and config bytes, the layer
descriptors with the history line that made each layer, and a way to open a layer blob as a verified
stream. Nothing is unpacked here; :mod:`lamina.report.scan` streams each layer once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lamina.errors import LaminaError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import hex_of
from lamina.oci.model import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME, ANNOTATION_REF_NAME, Document, Platform
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries, fetch_from_origin, pull_image
from lamina.oci.store import BlobStore, VerifyingReader

Opener = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class SourceLayer:
    """A layer as its image describes it: ``size`` is the compressed blob's, ``created_by`` its history line."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    created_by: str = ""


@dataclass(frozen=True)
class SourceImage:
    """One platform image to report on, with the exact bytes of its documents."""

    name: str
    manifest: Document
    config: Document
    layers: tuple[SourceLayer, ...]
    open_blob: Opener
    where: str = ""

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.manifest.json().get("annotations") or {})

    @property
    def base_name(self) -> str:
        return self.annotations.get(ANNOTATION_BASE_NAME, "")

    @property
    def base_digest(self) -> str:
        return self.annotations.get(ANNOTATION_BASE_DIGEST, "")

    @property
    def platform(self) -> str:
        config = self.config.json()
        return str(Platform(config.get("os", "linux"), config.get("architecture", "amd64"), config.get("variant")))

    @property
    def documents_size(self) -> int:
        """Bytes of the manifest and config: what a registry stores for this image besides its layers."""
        return self.manifest.size + self.config.size


def source_image(name: str, manifest: Document, config: Document, open_blob: Opener, where: str = "") -> SourceImage:
    """Pair the manifest's layers with the config's diff_ids and the history lines that made them."""
    obj, cfg = manifest.json(), config.json()
    diff_ids = list(cfg.get("rootfs", {}).get("diff_ids", []))
    descs = obj.get("layers", [])
    if len(diff_ids) != len(descs):
        raise LaminaError(f"image {name} ({where}) has {len(descs)} layers but its config lists {len(diff_ids)} diff_ids",
                          hint="the image is malformed; build or pull it again")
    history = [h for h in cfg.get("history", []) if not h.get("empty_layer")]
    if len(history) != len(descs):
        history = [{}] * len(descs)
    layers = tuple(
        SourceLayer(d["digest"], diff_id, int(d["size"]), d.get("mediaType", mt.OCI_LAYER_GZIP),
                    str(h.get("created_by", "")))
        for d, diff_id, h in zip(descs, diff_ids, history, strict=True)
    )
    return SourceImage(name, manifest, config, layers, open_blob, where)


# -- an OCI layout directory -------------------------------------------------------------------------


def layout_images(root: Path, names: Sequence[str] = (), platform: Platform | None = None) -> list[SourceImage]:
    """The images of the layout at ``root`` (those whose ref name is in ``names``, or all), in index order.

    A name matches the full ref name (``base-ml:v1.0.1``) or its part before the tag (``base-ml``).
    """
    root = Path(root)
    index_path = root / "index.json"
    if not index_path.is_file():
        raise LaminaError(f"{root} is not an OCI layout (no index.json)", hint="give the directory `lamina build` wrote, e.g. build/oci")
    try:
        index = json.loads(index_path.read_bytes())
    except ValueError as e:
        raise LaminaError(f"{index_path} is not valid JSON ({e})") from None
    opener = _layout_opener(root)
    images = []
    for entry in index.get("manifests", []):
        if entry.get("artifactType"):  # an attachment (SBOM, signature, provenance), not an image
            continue
        ref = (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME) or entry["digest"][:19]
        if names and not _name_matches(ref, names):
            continue
        manifest = Document(_read_small(opener, entry["digest"]), entry.get("mediaType", mt.OCI_MANIFEST))
        if manifest.media_type in mt.INDEX_TYPES:
            manifest = _pick(manifest, opener, platform or Platform(), f"{root}:{ref}")
        if not is_image_manifest(manifest):
            continue
        config_desc = manifest.json()["config"]
        config = Document(_read_small(opener, config_desc["digest"]), config_desc["mediaType"])
        images.append(source_image(ref, manifest, config, opener, f"oci:{root}"))
    _check_all_found(images, names, f"the layout {root}")
    return images


def is_image_manifest(manifest: Document) -> bool:
    """A container image, not an artifact stored as a manifest (an SBOM or signature with a ``subject``)."""
    obj = manifest.json()
    config_type = (obj.get("config") or {}).get("mediaType", "")
    return manifest.media_type in mt.MANIFEST_TYPES and not obj.get("artifactType") and not obj.get("subject") \
        and config_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG)


def _layout_opener(root: Path) -> Opener:
    def open_blob(digest: str) -> BinaryIO:
        path = root / "blobs" / "sha256" / hex_of(digest)
        if not path.is_file():
            raise LaminaError(f"{root} is missing blob {digest}", hint="the layout is incomplete; write it again")
        return VerifyingReader(path, digest)  # type: ignore[return-value]

    return open_blob


def _pick(index: Document, opener: Opener, platform: Platform, label: str) -> Document:
    for entry in index.json().get("manifests", []):
        if platform.matches(entry.get("platform") or {}):
            return Document(_read_small(opener, entry["digest"]), entry.get("mediaType", mt.OCI_MANIFEST))
    raise LaminaError(f"{label} has no image for {platform}", hint="pass --platform with one of its platforms")


def _read_small(opener: Opener, digest: str) -> bytes:
    with opener(digest) as f:
        return f.read()


# -- the store's built images -------------------------------------------------------------------------


def built_names(store: BlobStore) -> list[tuple[str, str]]:
    """(image, platform) of every image the store recorded as built (``built NAME [PLATFORM]``)."""
    out = []
    for record in store.images():
        label = record.get("name", "")
        if label.startswith("built "):
            name, _, platform = label.removeprefix("built ").partition(" ")
            out.append((name, platform))
    return out


def store_images(store: BlobStore, names: Sequence[str] = (), platform: Platform | None = None) -> list[SourceImage]:
    """The images the store last built (``lamina build`` records each as ``built NAME PLATFORM``)."""
    images = []
    for record in store.images():
        label = record.get("name", "")
        if not label.startswith("built "):
            continue
        name, _, built_for = label.removeprefix("built ").partition(" ")
        if names and not _name_matches(name, names):
            continue
        if platform is not None and built_for and built_for != str(platform):
            continue
        if not store.has(record["digest"]) or record["mediaType"] not in mt.MANIFEST_TYPES:
            continue
        manifest = Document(store.read_bytes(record["digest"]), record["mediaType"])
        config_desc = manifest.json()["config"]
        config = Document(store.read_bytes(config_desc["digest"]), config_desc["mediaType"])
        images.append(source_image(name, manifest, config, store.open, f"store {store.root}"))  # type: ignore[arg-type]
    _check_all_found(images, names, f"the store at {store.root}")
    return images


# -- a registry ---------------------------------------------------------------------------------------


def registry_image(text: str, store: BlobStore, registries: Registries, platform: Platform | None = None) -> SourceImage:
    """``host/repo:tag``: documents now, each layer fetched into the store (verified) when scanned."""
    ref = Reference.parse(text)
    image = pull_image(ref, platform or Platform(), store, registries)

    def open_blob(digest: str) -> BinaryIO:
        if not store.has(digest):
            fetch_from_origin(image, digest, store, registries)
        return store.open(digest)  # type: ignore[return-value]

    name = ref.repository.rsplit("/", 1)[-1] + (f":{ref.tag}" if ref.tag else "")
    return source_image(name, image.manifest, image.config, open_blob, str(ref))


def _name_matches(ref: str, names: Sequence[str]) -> bool:
    return ref in names or ref.rsplit(":", 1)[0] in names


def _check_all_found(images: Sequence[SourceImage], names: Sequence[str], where: str) -> None:
    missing = [n for n in names if not any(_name_matches(i.name, [n]) for i in images)]
    if missing:
        have = ", ".join(i.name for i in images) or "none"
        raise LaminaError(f"{where} has no image named {', '.join(missing)}", hint=f"images there: {have}")
