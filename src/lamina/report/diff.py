"""What changed between two images, or between two states of a family (two layouts, two lock states).

Bytes to push are the blobs (layers, configs, manifests) of the new state that the old one does not
have: exactly what a registry holding the old state receives. Bytes to pull are, per image, what a
host running the old image downloads to run the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lamina.report.family import FamilyReport, ImageReport, LayerReport


@dataclass(frozen=True)
class PackageChange:
    kind: str
    name: str
    before: str
    after: str

    @property
    def change(self) -> str:
        return "added" if not self.before else "removed" if not self.after else "changed"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "before": self.before, "after": self.after, "change": self.change}


@dataclass(frozen=True)
class LayerChange:
    """A layer only one side has, at ``index`` in that side's image."""

    index: int
    digest: str
    size: int
    description: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "digest": self.digest, "bytes": self.size, "description": self.description}

    @classmethod
    def of(cls, index: int, layer: LayerReport) -> LayerChange:
        return cls(index, layer.digest, layer.size, layer.description)


@dataclass(frozen=True)
class ImageDiff:
    name: str
    before: str
    after: str
    packages: tuple[PackageChange, ...]
    removed_layers: tuple[LayerChange, ...]
    added_layers: tuple[LayerChange, ...]
    pull_bytes: int

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "before": self.before, "after": self.after, "changed": self.changed,
                "packages": [p.to_json() for p in self.packages],
                "layers_removed": [x.to_json() for x in self.removed_layers],
                "layers_added": [x.to_json() for x in self.added_layers], "pull_bytes": self.pull_bytes}


@dataclass(frozen=True)
class FamilyDiff:
    images: tuple[ImageDiff, ...]
    only_before: tuple[str, ...]
    only_after: tuple[str, ...]
    push_bytes: int
    push_blobs: int

    @property
    def pull_bytes(self) -> int:
        return sum(i.pull_bytes for i in self.images)

    @property
    def packages(self) -> list[PackageChange]:
        """Every package change, once (a base's change shows in each image on it)."""
        return list(dict.fromkeys(p for i in self.images for p in i.packages))

    def to_json(self) -> dict[str, Any]:
        return {"images": [i.to_json() for i in self.images], "only_before": list(self.only_before),
                "only_after": list(self.only_after), "packages": [p.to_json() for p in self.packages],
                "push_bytes": self.push_bytes, "push_blobs": self.push_blobs, "pull_bytes": self.pull_bytes}


def diff_images(a: ImageReport, b: ImageReport, name: str | None = None) -> ImageDiff:
    keys = sorted(set(a.packages) | set(b.packages))
    changes = tuple(PackageChange(k, n, a.packages.get((k, n), ""), b.packages.get((k, n), ""))
                    for k, n in keys if a.packages.get((k, n), "") != b.packages.get((k, n), ""))
    mine, theirs = {x.digest for x in a.layers}, {x.digest for x in b.layers}
    removed = tuple(LayerChange.of(i, x) for i, x in enumerate(a.layers) if x.digest not in theirs)
    added = tuple(LayerChange.of(i, x) for i, x in enumerate(b.layers) if x.digest not in mine)
    pull = sum(x.size for x in added) + (b.documents if a.digest != b.digest else 0)
    return ImageDiff(name or b.name, a.digest, b.digest, changes, removed, added, pull)


def diff_families(before: FamilyReport, after: FamilyReport) -> FamilyDiff:
    """Pair images by name (the tag is ignored when the names differ only there) and diff each pair."""
    pairs, only_before, only_after = _pair(before.images, after.images)
    images = tuple(diff_images(a, b, _repo(b.name) if _repo(a.name) == _repo(b.name) else f"{a.name} → {b.name}")
                   for a, b in pairs)
    old_blobs = set(before.layers) | {d for i in before.images for d in _documents(i)}
    new: dict[str, int] = {}
    for image in after.images:
        for layer in image.layers:
            if layer.digest not in old_blobs:
                new[layer.digest] = layer.size
        for digest, size in _documents(image).items():
            if digest not in old_blobs:
                new[digest] = size
    return FamilyDiff(images, only_before, only_after, sum(new.values()), len(new))


def _documents(image: ImageReport) -> dict[str, int]:
    """The image's manifest and config digests with their sizes (kept on the report for diffs)."""
    return dict(image.document_blobs)


def _repo(name: str) -> str:
    return name.rsplit(":", 1)[0]


def _pair(a: Sequence[ImageReport], b: Sequence[ImageReport]):
    if len(a) == len(b) == 1:  # two images named on the command line: compared whatever their names
        return [(a[0], b[0])], (), ()
    by_name = {i.name: i for i in b}
    by_repo = {_repo(i.name): i for i in b}
    pairs, only_a, used = [], [], set()
    for image in a:
        other = by_name.get(image.name) or by_repo.get(_repo(image.name))
        if other is None or other.name in used:
            only_a.append(image.name)
        else:
            pairs.append((image, other))
            used.add(other.name)
    only_b = tuple(i.name for i in b if i.name not in used)
    return pairs, tuple(only_a), only_b
