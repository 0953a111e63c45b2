"""The family analysis: every image's layers with the packages in each, what the images share, what
the registry stores, what is duplicated or hidden, and what a package's version change costs.

All numbers come from the images themselves (documents and layer contents), so a report on a layout
written last year, or on images another tool built, means the same as one on lamina's own builds;
lamina's recorded inventory (when the store has it) only adds why each package is there.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamina.report.owners import Owner, canonical, path_owners
from lamina.report.scan import FileEntry, LayerFiles, scan_layer, visible
from lamina.report.source import SourceImage, SourceLayer

#: Container runtimes fail to start images with more layers than this (overlayfs' lower-dir limit).
RUNTIME_LAYER_LIMIT = 127
#: lamina refuses to build more (lamina.python.layers.LAYER_BUDGET).
LAMINA_LAYER_BUDGET = 100
TOP = 25


@dataclass(frozen=True)
class ComponentBytes:
    """The bytes (unpacked) and files one package or file set has in one layer."""

    owner: Owner
    bytes: int
    files: int
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.owner.kind, "name": self.owner.name, "version": self.owner.version,
               "bytes": self.bytes, "files": self.files}
        if self.origin:
            out["origin"] = self.origin
        return out


@dataclass
class LayerReport:
    """One distinct layer of the family (a layer shared by several images appears once)."""

    digest: str
    diff_id: str
    size: int
    media_type: str
    created_by: str
    bytes: int
    files: int
    components: list[ComponentBytes]
    added_by: str = ""
    images: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        text = self.created_by.removeprefix("lamina: ")
        return text or (self.components[0].owner.label if len(self.components) == 1 else f"{len(self.components)} components")

    @property
    def packages(self) -> list[ComponentBytes]:
        return [c for c in self.components if c.owner.kind != "files"]

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "diff_id": self.diff_id, "size": self.size, "media_type": self.media_type,
                "created_by": self.created_by, "description": self.description, "bytes": self.bytes,
                "files": self.files, "added_by": self.added_by, "images": self.images,
                "components": [c.to_json() for c in self.components]}


@dataclass(frozen=True)
class HiddenFile:
    """A file of a lower layer that the image never shows: replaced (``by`` the layer index that
    replaced it) or removed by a whiteout (``by`` = -1)."""

    path: str
    size: int
    layer: int
    by: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.size, "layer": self.layer, "hidden_by": self.by}


@dataclass
class ImageReport:
    name: str
    digest: str
    platform: str
    where: str
    layers: list[LayerReport]
    documents: int
    visible_bytes: int
    hidden: list[HiddenFile]
    base: str = ""
    base_layers: int = 0
    packages: dict[tuple[str, str], str] = field(default_factory=dict)
    document_blobs: tuple[tuple[str, int], ...] = ()

    @property
    def compressed(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def unpacked(self) -> int:
        return sum(layer.bytes for layer in self.layers)

    @property
    def wasted(self) -> int:
        return sum(h.size for h in self.hidden)

    @property
    def efficiency(self) -> float:
        return 1.0 - self.wasted / self.unpacked if self.unpacked else 1.0

    @property
    def added(self) -> list[LayerReport]:
        return self.layers[self.base_layers:]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "digest": self.digest, "platform": self.platform, "source": self.where,
            "compressed_bytes": self.compressed, "documents_bytes": self.documents, "unpacked_bytes": self.unpacked,
            "visible_bytes": self.visible_bytes, "layer_count": len(self.layers),
            "runtime_layer_limit": RUNTIME_LAYER_LIMIT, "lamina_layer_budget": LAMINA_LAYER_BUDGET,
            "base": self.base, "base_layer_count": self.base_layers,
            "added": {"layers": len(self.added), "compressed_bytes": sum(x.size for x in self.added),
                      "unpacked_bytes": sum(x.bytes for x in self.added)},
            "wasted_bytes": self.wasted, "efficiency": round(self.efficiency, 6),
            "layers": [layer.digest for layer in self.layers],
            "hidden_files": [h.to_json() for h in sorted(self.hidden, key=lambda h: -h.size)[:TOP]],
            "hidden_file_count": len(self.hidden),
            "packages": [{"kind": k, "name": n, "version": v} for (k, n), v in sorted(self.packages.items())],
        }


@dataclass(frozen=True)
class Duplicate:
    """One content found in several distinct layers: ``removable`` counts every copy but one."""

    digest: str
    size: int
    paths: tuple[str, ...]
    layers: tuple[str, ...]
    images: tuple[str, ...]

    @property
    def removable(self) -> int:
        return self.size * (len(self.layers) - 1)

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "bytes": self.size, "copies": len(self.layers), "removable_bytes": self.removable,
                "paths": list(self.paths), "layers": list(self.layers), "images": list(self.images)}


@dataclass(frozen=True)
class BlastRow:
    """What moving one package a version rebuilds: its layer, every image carrying that layer, and the
    bytes pushed (the layer again, plus a new config and manifest for each of those images)."""

    owner: Owner
    layer: str
    layer_description: str
    layer_size: int
    added_by: str
    images: tuple[str, ...]
    push_bytes: int
    origin: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.owner.kind, "name": self.owner.name, "version": self.owner.version, "layer": self.layer,
                "layer_description": self.layer_description, "layer_bytes": self.layer_size,
                "added_by": self.added_by, "images": list(self.images), "push_bytes": self.push_bytes,
                "origin": self.origin}


@dataclass(frozen=True)
class PackageTotal:
    owner: Owner
    bytes: int
    files: int
    layers: tuple[str, ...]
    images: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.owner.kind, "name": self.owner.name, "version": self.owner.version, "bytes": self.bytes,
                "files": self.files, "layers": list(self.layers), "images": list(self.images)}


@dataclass
class FamilyReport:
    images: list[ImageReport]
    layers: dict[str, LayerReport]
    duplicates: list[Duplicate]
    blast: list[BlastRow]
    largest: list[PackageTotal]

    def image(self, name: str) -> ImageReport:
        return next(i for i in self.images if i.name == name or i.name.rsplit(":", 1)[0] == name)

    @property
    def registry_bytes(self) -> int:
        """What a registry stores for the whole family: each distinct layer once, plus each image's documents."""
        return sum(layer.size for layer in self.layers.values()) + sum(i.documents for i in self._distinct_images())

    @property
    def images_bytes(self) -> int:
        """The images' sizes added up, as if nothing were shared."""
        return sum(i.compressed + i.documents for i in self._distinct_images())

    @property
    def monolithic_bytes(self) -> int:
        """The seed's former method: every leaf image (a service) built alone on the OS base, sharing
        nothing but the base's layers (see docs/report.md)."""
        parents = {i.base for i in self.images if i.base}
        roots: dict[str, ImageReport] = {}
        total = 0
        for leaf in self._distinct_images():
            if leaf.name in parents:
                continue
            root = self._root_of(leaf)
            roots[root.digest] = root
            total += leaf.compressed - root.compressed + leaf.documents
        return total + sum(r.compressed for r in roots.values())

    def _root_of(self, image: ImageReport) -> ImageReport:
        by_name = {i.name: i for i in self.images}
        while image.base and image.base in by_name:
            image = by_name[image.base]
        return image

    def _distinct_images(self) -> list[ImageReport]:
        seen: dict[str, ImageReport] = {}
        for image in self.images:
            seen.setdefault(image.digest, image)
        return list(seen.values())

    @property
    def duplicate_bytes(self) -> int:
        return sum(d.removable for d in self.duplicates)

    def shared(self, a: ImageReport, b: ImageReport) -> tuple[int, int]:
        """Layers (count, compressed bytes) images ``a`` and ``b`` have in common."""
        common = {x.digest for x in a.layers} & {x.digest for x in b.layers}
        return len(common), sum(self.layers[d].size for d in common)

    def matrix(self) -> list[list[tuple[int, int]]]:
        return [[self.shared(a, b) for b in self.images] for a in self.images]


def analyze(images: Sequence[SourceImage], *, cache: Any = None, inventories: Callable[[str], Any] | None = None,
            on_layer: Callable[[str], None] | None = None) -> FamilyReport:
    """Scan every distinct layer of ``images`` once and analyze the family.

    ``cache``: a store to keep layer scans in; ``inventories``: manifest digest → lamina's recorded
    :class:`lamina.inventory.Inventory` (or None), to name why each package is there.
    """
    scans: dict[str, LayerFiles] = {}
    for image in images:
        for layer in image.layers:
            if layer.digest not in scans:
                if on_layer:
                    on_layer(layer.digest)
                scans[layer.digest] = scan_layer(layer, image.open_blob, cache)
    owners = _Owners(path_owners(scans.values()))
    origins = _origins(images, inventories)
    layer_reports: dict[str, LayerReport] = {}
    for image in images:
        for layer in image.layers:
            if layer.digest not in layer_reports:
                layer_reports[layer.digest] = _layer_report(layer, scans[layer.digest], owners, origins)
    reports = _image_reports(images, scans, layer_reports)
    return FamilyReport(reports, layer_reports, _duplicates(reports, scans), _blast(reports, layer_reports),
                        _largest(reports, layer_reports))


class _Owners:
    """Path → package, falling back for compiled bytecode (``__pycache__/m.cpython-311.pyc`` belongs to
    ``m.py``'s package) and for files in a directory a package owns."""

    def __init__(self, owners: dict[str, Owner]) -> None:
        self.paths = owners
        self.dirs: dict[str, Owner] = {}
        for path, owner in owners.items():
            self.dirs.setdefault(posixpath.dirname(path), owner)

    def __call__(self, path: str) -> Owner | None:
        found = self.paths.get(path)
        if found is not None:
            return found
        directory, base = posixpath.split(path)
        if posixpath.basename(directory) == "__pycache__":
            source = posixpath.join(posixpath.dirname(directory), base.split(".", 1)[0] + ".py")
            found = self.paths.get(source) or self.dirs.get(posixpath.dirname(directory))
            if found is not None:
                return found
        return self.dirs.get(directory) if "-packages/" in path else None


def _origins(images: Sequence[SourceImage], inventories: Callable[[str], Any] | None) -> dict[tuple[str, str, str], str]:
    """(layer digest, kind, name) → why lamina installed it, from recorded inventories."""
    out: dict[tuple[str, str, str], str] = {}
    if inventories is None:
        return out
    for image in images:
        inventory = inventories(image.digest)
        for placed in getattr(inventory, "items", ()) or ():
            component = placed.component
            if component.kind == "files":  # names the layer's own files: "svc-forms code"
                out.setdefault((placed.layer, "files", ""), component.name)
                continue
            name = canonical(component.name) if component.kind == "python" else component.name
            out.setdefault((placed.layer, component.kind, name), component.origin)
    return out


def _layer_report(layer: SourceLayer, scan: LayerFiles, owners: _Owners,
                  origins: dict[tuple[str, str, str], str]) -> LayerReport:
    description = layer.created_by.removeprefix("lamina: ") or "files"
    files_owner = Owner("files", origins.get((layer.digest, "files", ""), "") or description)
    totals: dict[Owner, list[int]] = {}
    for entry in scan.files:
        if entry.kind != "file":
            continue
        owner = owners(entry.path) or files_owner
        slot = totals.setdefault(owner, [0, 0])
        slot[0] += entry.size
        slot[1] += 1
    named = (layer.digest, "files", "") in origins
    if not named and files_owner in totals and len(totals) > 1:  # packages, and a few files none of them lists
        totals[Owner("files", "other files")] = totals.pop(files_owner)
    components = [ComponentBytes(o, b, n, origins.get((layer.digest, o.kind, o.name), ""))
                  for o, (b, n) in sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))]
    return LayerReport(layer.digest, layer.diff_id, layer.size, layer.media_type, layer.created_by, scan.bytes,
                       scan.file_count, components)


def _parent(image: SourceImage, others: Sequence[SourceImage]) -> SourceImage | None:
    """The image this one is built on: the other image whose layers are the longest proper prefix of
    its layers (its base-digest annotation breaks ties)."""
    mine = [x.digest for x in image.layers]
    best: SourceImage | None = None
    for other in others:
        theirs = [x.digest for x in other.layers]
        if other is image or not theirs or len(theirs) >= len(mine) or mine[: len(theirs)] != theirs:
            continue
        if best is None or len(theirs) > len(best.layers) or (
                len(theirs) == len(best.layers) and other.digest == image.base_digest):
            best = other
    return best


def _image_reports(images: Sequence[SourceImage], scans: dict[str, LayerFiles],
                   layers: dict[str, LayerReport]) -> list[ImageReport]:
    reports: list[ImageReport] = []
    parents = {image.name: _parent(image, images) for image in images}
    for image in sorted(images, key=lambda i: len(i.layers)):  # bases before the images on them
        parent = parents[image.name]
        for i, layer in enumerate(image.layers):
            report = layers[layer.digest]
            if image.name not in report.images:
                report.images.append(image.name)
            if not report.added_by and (parent is None or i >= len(parent.layers)):
                report.added_by = image.name
    for image in images:
        stack = [scans[x.digest] for x in image.layers]
        tree = visible(stack)
        parent = parents[image.name]
        reports.append(ImageReport(
            name=image.name, digest=image.digest, platform=image.platform, where=image.where,
            layers=[layers[x.digest] for x in image.layers], documents=image.documents_size,
            visible_bytes=sum(e.size for _, e in tree.values() if e.kind == "file"),
            hidden=_hidden(stack, tree), base=parent.name if parent else "",
            base_layers=len(parent.layers) if parent else 0, packages=_packages(image, layers),
            document_blobs=((image.manifest.digest, image.manifest.size), (image.config.digest, image.config.size))))
    order = {image.name: n for n, image in enumerate(images)}
    for layer in layers.values():
        layer.images.sort(key=order.__getitem__)
        if not layer.added_by and layer.images:
            layer.added_by = layer.images[0]
    return reports


def _hidden(stack: Sequence[LayerFiles], tree: dict[str, tuple[int, FileEntry]]) -> list[HiddenFile]:
    hidden = []
    for i, layer in enumerate(stack):
        for entry in layer.files:
            if entry.kind != "file" or entry.size == 0:
                continue
            shown = tree.get(entry.path)
            if shown is None:
                hidden.append(HiddenFile(entry.path, entry.size, i, -1))
            elif shown[0] != i:
                hidden.append(HiddenFile(entry.path, entry.size, i, shown[0]))
    return hidden


def _packages(image: SourceImage, layers: dict[str, LayerReport]) -> dict[tuple[str, str], str]:
    """(kind, name) → version of every package in the image (the topmost layer's wins)."""
    out: dict[tuple[str, str], str] = {}
    for layer in image.layers:
        for c in layers[layer.digest].packages:
            out[(c.owner.kind, c.owner.name)] = c.owner.version
    return out


def _duplicates(images: Sequence[ImageReport], scans: dict[str, LayerFiles]) -> list[Duplicate]:
    """Contents held by more than one distinct layer (a layer shared by images counts once)."""
    where: dict[str, dict[str, list[str]]] = {}
    size: dict[str, int] = {}
    for digest, scan in scans.items():
        for entry in scan.files:
            if entry.kind == "file" and entry.size > 0:
                where.setdefault(entry.digest, {}).setdefault(digest, []).append(entry.path)
                size[entry.digest] = entry.size
    users: dict[str, list[str]] = {}
    for image in images:
        for layer in image.layers:
            users.setdefault(layer.digest, []).append(image.name)
    out = []
    for content, layers in where.items():
        if len(layers) < 2:
            continue
        paths = tuple(sorted({p for ps in layers.values() for p in ps}))
        names = tuple(dict.fromkeys(n for d in layers for n in users.get(d, [])))
        out.append(Duplicate(content, size[content], paths, tuple(layers), names))
    return sorted(out, key=lambda d: (-d.removable, d.paths))


def _blast(images: Sequence[ImageReport], layers: dict[str, LayerReport]) -> list[BlastRow]:
    by_name = {i.name: i for i in images}
    rows = []
    for layer in layers.values():
        carriers = tuple(layer.images)
        distinct = {by_name[n].digest: by_name[n].documents for n in carriers}  # one image under two tags: once
        push = layer.size + sum(distinct.values())
        for c in layer.packages:
            rows.append(BlastRow(c.owner, layer.digest, layer.description, layer.size, layer.added_by, carriers, push,
                                 c.origin))
    return sorted(rows, key=lambda r: (-r.push_bytes, r.owner))


def _largest(images: Sequence[ImageReport], layers: dict[str, LayerReport]) -> list[PackageTotal]:
    totals: dict[Owner, list[Any]] = {}
    for layer in layers.values():
        for c in layer.packages:
            slot = totals.setdefault(c.owner, [0, 0, [], []])
            slot[0] += c.bytes
            slot[1] += c.files
            slot[2].append(layer.digest)
            slot[3].extend(n for n in layer.images if n not in slot[3])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [PackageTotal(o, b, f, tuple(ls), tuple(ims)) for o, (b, f, ls, ims) in ranked[:TOP]]
