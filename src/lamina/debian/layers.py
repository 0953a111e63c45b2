"""Which Debian packages go in which layer (:func:`group_by_source`).

The unit is a *source* package: its binaries (libc6 and libc-bin from glibc, the four python3.11
packages from python3.11) are built and updated together, so a security update of one source moves all
of them and rebuilds one layer. Each source gets a layer of its own while an image's sources fit in
:data:`DEBIAN_ROOM` layers; above it, sources whose ``.deb`` files add up to a size threshold (the first
of :data:`SIZE_LADDER` at which the layers fit) keep their own layer, and the smaller ones share one of
:data:`BUCKETS` layers chosen by a hash of the source's name. A package's layer depends on its source's
name and size and on the image's threshold only, never on other packages' versions: updating one
source rebuilds its layer (or its bucket), adding a package moves no other.

The layers go biggest first, as Python's do (:func:`lamina.python.layers.deploy_order`): a node lays out
again every layer above a changed one, so small layers on top make a security update cheap to deploy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lamina.debian.image import LockedPackage

#: Layers an image's Debian packages may take, one per source package, before they are grouped.
DEBIAN_ROOM = 24
#: Size thresholds tried in turn above :data:`DEBIAN_ROOM` (0: every source alone; the last: all in buckets).
SIZE_LADDER = (0, 256 * 1024, 1 << 20, 4 << 20, 16 << 20, 1 << 62)
#: Smaller sources share one of this many layers, chosen by a hash of the source's name.
BUCKETS = 8


def group_by_source(packages: Sequence[LockedPackage]) -> list[tuple[str, list[LockedPackage]]]:
    """(description, packages) per layer, biggest first (then by description)."""
    sources: dict[str, list[LockedPackage]] = {}
    for p in sorted(packages, key=lambda p: p.name):
        sources.setdefault(source_of(p), []).append(p)
    groups: list[tuple[str, list[LockedPackage]]] = []
    for threshold in SIZE_LADDER:
        buckets: dict[int, list[LockedPackage]] = {}
        alone: list[tuple[str, list[LockedPackage]]] = []
        for source, members in sorted(sources.items()):
            if threshold == 0 or sum(p.size for p in members) >= threshold:
                alone.append((_describe_source(source, members), members))
            else:
                buckets.setdefault(int(hashlib.sha256(source.encode()).hexdigest(), 16) % BUCKETS, []).extend(members)
        groups = [(f"debian packages, group {b} ({len(ps)}: {names(ps)})", ps) for b, ps in sorted(buckets.items())]
        groups += alone
        if len(groups) <= DEBIAN_ROOM:
            break
    return sorted(groups, key=lambda group: (-sum(p.size for p in group[1]), group[0]))


def source_of(package: LockedPackage) -> str:
    """The source package: as the lock records it, else from the pool path
    (``pool/main/g/glibc/libc6_….deb``), else the package's own name."""
    if package.source:
        return package.source
    parts = package.filename.split("/")
    return parts[3] if len(parts) >= 5 and parts[0] == "pool" else package.name


def names(packages: Sequence[LockedPackage]) -> str:
    listed = [p.name for p in packages]
    return ", ".join(listed) if len(listed) <= 4 else ", ".join(listed[:3]) + ", …"


def _describe_source(source: str, members: Sequence[LockedPackage]) -> str:
    if len(members) == 1:
        return f"debian package {members[0].name} {members[0].version}"
    return f"debian source {source} {members[0].version} ({names(members)})"
