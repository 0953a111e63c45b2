"""The rebuild graph: what ``lamina build`` would do, said before it does anything.

:meth:`lamina.family.Family.plan` (without downloads) gives every image's layers with their input keys,
descriptions and components. Here each layer is looked up in the store (:func:`cached_layer`: the same
lookup the build makes, so "to build" here is what the build then builds), and each image whose layers
are all in the store is assembled as the build would assemble it (same code, :func:`assemble`): its digest
is then known, and so is exactly what a push would send. Why a layer is new is told against the image
published now (the output layout's, or the registry's when pushing): which package moved, which files.

Push bytes are predicted the way :mod:`lamina.oci.remote` pushes: a blob the repository has is skipped,
one an earlier image of the push (or the base's repository) holds is mounted, the rest are uploaded;
manifests are put. A registry keeps each blob once, so uploads plus manifests are what its storage grows by.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lamina import naming
from lamina.build import Base, BuildOptions, PlannedImage, assemble
from lamina.config import ProjectConfig
from lamina.family import Family, Key
from lamina.inventory import Component, load_inventory
from lamina.oci import mediatypes as mt
from lamina.oci.layer import BuiltLayer, cached_layer
from lamina.oci.model import Image
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries, split_origin
from lamina.oci.store import BlobStore, StoredLayer
from lamina.oci.tar import Entry, signature


@dataclass
class LayerPlan:
    description: str
    key: str
    stored: StoredLayer | None
    components: tuple[Component, ...] = ()
    #: The layer's entries, when listing them was how its key was found (copies of project files).
    entries: list[Entry] | None = None
    #: Why it is built: what differs from the image published now (empty for a reused layer).
    why: list[str] = field(default_factory=list)

    @property
    def build(self) -> bool:
        return self.stored is None

    def to_json(self) -> dict[str, Any]:
        return {"description": self.description, "build": self.build, "why": self.why,
                "digest": self.stored.digest if self.stored else None,
                "size": self.stored.size if self.stored else None}


@dataclass
class ImagePlan:
    name: str
    platform: str
    ref: str
    layers: list[LayerPlan]
    #: The image's manifest digest, when every layer (and its base's) is in the store.
    digest: str | None
    #: What is published under its name now (the output layout's or the registry's), if anything.
    published: str | None
    why: list[str] = field(default_factory=list)
    image: Image | None = None

    @property
    def changes(self) -> bool:
        return self.digest is None or self.digest != self.published

    @property
    def to_build(self) -> list[LayerPlan]:
        return [layer for layer in self.layers if layer.build]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "platform": self.platform, "ref": self.ref, "digest": self.digest,
                "published": self.published, "changes": self.changes, "why": self.why,
                "layers": [layer.to_json() for layer in self.layers]}


@dataclass
class PushPlan:
    """What a push of the images would send: per target, blobs by outcome and the bytes uploaded."""

    targets: list[dict[str, Any]] = field(default_factory=list)
    #: False when some image has layers still to build (their sizes are known once built).
    exact: bool = True

    @property
    def upload_bytes(self) -> int:
        return sum(t["upload_bytes"] for t in self.targets)

    @property
    def manifest_bytes(self) -> int:
        return sum(t["manifest_bytes"] for t in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {"exact": self.exact, "upload_bytes": self.upload_bytes, "manifest_bytes": self.manifest_bytes,
                "targets": self.targets}


@dataclass
class FamilyPlan:
    images: list[ImagePlan]
    push: PushPlan | None = None

    @property
    def layers_to_build(self) -> list[str]:
        """Each distinct layer the build will make (the family builds a layer once, whoever needs it)."""
        return list(dict.fromkeys(layer.key for image in self.images for layer in image.to_build))

    def to_json(self) -> dict[str, Any]:
        return {"images": [i.to_json() for i in self.images], "layers_to_build": len(self.layers_to_build),
                "push": self.push.to_json() if self.push else None}


def options_for(config: ProjectConfig, *, format: str | None = None, compression: str | None = None) -> BuildOptions:
    """The build options ``lamina build`` uses for ``config`` (the plan must assemble the same documents)."""
    return BuildOptions(format=format or config.format, compression=compression or config.compression,  # type: ignore[arg-type]
                        source=config.source, revision=config.revision, version=config.version)


def plan_family(config: ProjectConfig, store: BlobStore, registries: Registries, options: BuildOptions,
                names: Sequence[str], *, tag: str, pushing: bool = False, locked: bool = False,
                published: Mapping[str, str] | None = None, previous: Mapping[str, str] | None = None) -> FamilyPlan:
    """The rebuild graph of ``names`` (and their project bases): nothing is built, downloaded or written
    (a stale lock is resolved in memory). ``published`` maps an image name to the digest published now
    (see :func:`published_in_layout` and :func:`published_in_registry`); ``previous`` the digest to tell
    changes against when the image's tag moved (its last build under another tag), default ``published``."""
    family = Family(config, store, registries, options, tag, pushing=pushing, locked=locked, save_lock=False)
    try:
        plans = family.plan(names, download=False)
    finally:
        family.close()
    images: list[ImagePlan] = []
    assembled: dict[Key, Base] = {}
    for key, planned in plans.items():
        spec = config.image(planned.name)
        ref = naming.output_name(config, spec, tag)
        layers = [_layer_plan(store, layer.spec, layer.components, options) for layer in planned.layers]
        base = _base_of(planned, assembled, key, family)
        image = None
        if all(layer.stored for layer in layers) and (base is not None or planned.base is None):
            built = [BuiltLayer(layer.stored, layer.description, True) for layer in layers]  # type: ignore[arg-type]
            image = assemble(planned.spec, planned.platform, base, built, options)
            assembled[key] = Base(image, family.base_name(spec), planned.states, planned.os_packages)
        before = (published or {}).get(planned.name)
        plan = ImagePlan(planned.name, str(planned.platform), ref, layers, image.digest if image else None, before,
                         image=image)
        _explain(plan, store, planned, (previous or {}).get(planned.name) or before, images)
        images.append(plan)
    return FamilyPlan(images)


def _layer_plan(store: BlobStore, spec: Any, components: tuple[Component, ...], options: BuildOptions) -> LayerPlan:
    entries = None if spec.key else list(spec.entries())
    key = spec.key or "sig:" + signature(entries or [])  # the key build_layer looks up
    stored = cached_layer(store, key, options.media_type, options.mtime)
    return LayerPlan(spec.description, key, stored, components, entries)


def _base_of(planned: PlannedImage, assembled: Mapping[Key, Base], key: Key, family: Family) -> Base | None:
    """The image's base as the build would assemble it on: a project base once assembled here, else
    (a pulled base, an OCI layout) the one planned; None when a project base cannot be assembled yet."""
    spec = planned.spec
    if spec.base in family.config.images:
        return assembled.get((spec.base, key[1]))
    return planned.base


def _explain(plan: ImagePlan, store: BlobStore, planned: PlannedImage, before: str | None,
             earlier: Sequence[ImagePlan]) -> None:
    previous = load_inventory(store, before) if before else None
    old = {p.component.key: p.component for p in previous.items} if previous else {}
    old_layers = {p.component.key: p.layer for p in previous.items} if previous else {}
    for layer in plan.to_build:
        layer.why = _component_changes(layer.components, old) if previous else \
            ["new: " + ", ".join(_label(c) for c in layer.components[:6]) if layer.components else "new"]
        files = [c for c in layer.components if c.kind == "files" and c.key in old_layers]
        if previous and layer.entries is not None and len(files) == 1:
            changed = file_changes(layer.entries, store, old_layers[files[0].key])
            if changed is not None:
                layer.why = [f"files of {files[0].filename or files[0].name}: {changed}"]
    base = next((p for p in earlier if p.name == planned.spec.base and p.platform == plan.platform), None)
    if base is not None and base.changes:
        plan.why.append(f"its base {base.name} changes")
    if plan.to_build:
        plan.why.append(f"{len(plan.to_build)} layer(s) to build")
    if previous is not None and planned.base is not None and previous.base and previous.base != planned.base.name:
        plan.why.append(f"its base is now {_short(planned.base.name)} (was {_short(previous.base)})")
    if not plan.why and plan.changes:
        plan.why.append("not published yet" if plan.published is None else "its documents change")


#: Above this many bytes of files, a layer's files are not compared one by one (the layer is named only).
FILE_DIFF_LIMIT = 64 << 20


def file_changes(entries: Sequence[Entry], store: BlobStore, layer_digest: str) -> str | None:
    """Which files differ between ``entries`` and the stored layer ``layer_digest`` (a gzip tar): e.g.
    ``apps/svc_forms/app.py changed, +x.py``; None when the old layer is not in the store or too big."""
    if not store.has(layer_digest) or sum(e.stat[0] for e in entries if e.stat) > FILE_DIFF_LIMIT:
        return None
    now = {}
    for e in entries:
        if e.kind == "file":
            data = e.data if e.data is not None else (e.source.read_bytes() if e.source else b"")
            now[e.path] = (hashlib.sha256(data).hexdigest(), e.mode)
        elif e.kind == "symlink":
            now[e.path] = (f"-> {e.target}", e.mode)
    before = {}
    try:
        with store.open(layer_digest) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:  # type: ignore[call-overload]
            for member in tar:
                path = member.name.removeprefix("./").rstrip("/")
                if member.isfile():
                    handle = tar.extractfile(member)
                    before[path] = (hashlib.sha256(handle.read() if handle else b"").hexdigest(), member.mode)
                elif member.issym():
                    before[path] = (f"-> {member.linkname}", member.mode)
    except (tarfile.TarError, OSError, EOFError):
        return None
    now = {p.lstrip("/"): v for p, v in now.items()}
    changes = [f"{p} changed" for p in sorted(now.keys() & before.keys()) if now[p] != before[p]]
    changes += [f"+{p}" for p in sorted(now.keys() - before.keys())]
    changes += [f"-{p}" for p in sorted(before.keys() - now.keys())]
    if not changes:
        return "the same content (file times changed)"
    return ", ".join(changes[:5]) + (f" (+{len(changes) - 5} more)" if len(changes) > 5 else "")


def _short(ref: str) -> str:
    """``host/owner/base-ml:v1.0.2`` → ``base-ml:v1.0.2``."""
    return ref.rsplit("/", 1)[-1]


def _component_changes(components: Sequence[Component], old: Mapping[tuple[str, str], Component]) -> list[str]:
    why = []
    for c in components:
        before = old.get(c.key)
        if before is None:
            why.append(f"+{_label(c)}")
        elif c.kind == "files":
            why.append(f"files of {c.filename or c.name} changed")
        elif before.version != c.version:
            why.append(f"{c.name} {before.version} → {c.version}")
        elif before.sha256 != c.sha256:
            why.append(f"{c.name} {c.version} (another build of it)")
    return why or ["its inputs changed"]


def _label(c: Component) -> str:
    return f"{c.name} {c.version}".strip() if c.kind != "files" else (c.filename or c.name)


# -- what is published now ----------------------------------------------------------------------------


def published_in_layout(layout: Path, config: ProjectConfig, tag: str, *, any_tag: bool = False) -> dict[str, str]:
    """Image name → the digest its ``name:tag`` has in an OCI layout (missing names are not published);
    with ``any_tag``, the last entry of that name whatever its tag (what it was before its tag moved)."""
    try:
        index = json.loads((layout / "index.json").read_bytes())
    except (OSError, ValueError):
        return {}
    refs = {m.get("annotations", {}).get("org.opencontainers.image.ref.name"): m["digest"]
            for m in index.get("manifests", [])}
    out = {}
    by_name = {str(ref).rsplit(":", 1)[0]: digest for ref, digest in refs.items() if ref}
    for name, spec in config.images.items():
        digest = refs.get(naming.output_name(config, spec, tag)) or (by_name.get(name) if any_tag else None)
        if digest:
            out[name] = digest
    return out


def published_in_registry(config: ProjectConfig, registries: Registries, tag: str,
                          names: Sequence[str]) -> dict[str, str]:
    """Image name → the digest its push target's tag names now (one HEAD each)."""
    out = {}
    for name in names:
        spec = config.image(name)
        target = naming.push_target(config, spec, naming.tag_for(config, spec, tag))
        found = registries.client(target.registry).head_manifest(target.repository, target.identifier)
        if found is not None:
            out[name] = found[0]
    return out


# -- what a push would send ------------------------------------------------------------------------------


def plan_push(plan: FamilyPlan, config: ProjectConfig, registries: Registries, tag: str) -> PushPlan:
    """What pushing the planned images would do, without writing to the registry (HEAD and GET only)."""
    push = PushPlan()
    holders: dict[str, dict[str, list[str]]] = {}
    for image in plan.images:
        spec = config.image(image.name)
        target = naming.push_target(config, spec, naming.tag_for(config, spec, tag))
        if len(spec.platforms) > 1:  # pushed as an index over its platforms: not predicted here (yet)
            push.exact = False
            push.targets.append({"target": str(target), "image": image.name, "platform": image.platform,
                                 "exact": False, "upload_bytes": 0, "manifest_bytes": 0, "blobs": {},
                                 "new_layers": len(image.to_build), "note": "multi-platform: pushed as an index"})
            continue
        if image.image is None:
            push.exact = False
            push.targets.append({"target": str(target), "image": image.name, "exact": False, "upload_bytes": 0,
                                 "manifest_bytes": 0, "blobs": {}, "new_layers": len(image.to_build)})
            continue
        known = holders.setdefault(target.registry, {})
        push.targets.append(_plan_image_push(image.image, target, registries, known))
        for desc in image.image.blobs():
            known.setdefault(desc.digest, []).append(target.repository)
    return push


def _plan_image_push(image: Image, target: Reference, registries: Registries,
                     known: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    client = registries.client(target.registry)
    entry: dict[str, Any] = {"target": str(target), "image": target.repository.rsplit("/", 1)[-1], "exact": True,
                             "digest": image.digest, "upload_bytes": 0, "manifest_bytes": 0, "blobs": {}}
    now = client.head_manifest(target.repository, target.identifier, accept=image.manifest.media_type)
    if now is not None and now[0] == image.digest:
        entry["blobs"] = {d.digest: "exists" for d in image.blobs()}
        return entry
    present: set[str] = set()
    if now is not None and now[1] in mt.MANIFEST_TYPES:
        old = json.loads(client.get_manifest(target.repository, now[0], accept=now[1]).data)
        present = {old["config"]["digest"], *(layer["digest"] for layer in old.get("layers", []))}
    origin_repo = None
    if image.origin is not None:
        host, repo = split_origin(image.origin)
        origin_repo = repo if host == target.registry else None
    for desc in image.blobs():
        if desc.digest in present or client.blob_size(target.repository, desc.digest) is not None:
            outcome = "exists"
        elif any(r != target.repository for r in known.get(desc.digest, ())) or (
                origin_repo and desc.digest in image.origin_blobs):
            outcome = "mounted"
        else:
            outcome = "uploaded"
            entry["upload_bytes"] += desc.size
        entry["blobs"][desc.digest] = outcome
    entry["manifest_bytes"] = len(image.manifest.data)
    return entry


__all__ = ["FamilyPlan", "ImagePlan", "LayerPlan", "PushPlan", "plan_family", "plan_push",
           "published_in_layout", "published_in_registry"]
