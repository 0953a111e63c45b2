"""Which installed distributions go in which layer, and the layers themselves.

The rule (:func:`group_dists`): every distribution gets a layer of its own while the image's own
distributions fit in its share of the layer budget (``room``); a one-version move then rebuilds and
pushes exactly that distribution's layer. Above the room, grouping starts, by a ladder of size
thresholds: the first threshold at which the layers fit is used; distributions whose wheel is at
least that big keep a layer of their own, the smaller ones share one of :data:`BUCKETS` layers chosen
by a hash of their *family* (the first part of their name: ``opentelemetry-api`` and
``opentelemetry-sdk``, ``pydantic`` and ``pydantic-core``, which are released together), so what
changes together is rebuilt together. A distribution's layer depends on its own name and wheel size
and on the image's threshold only, never on other distributions' versions: bumping one changes only
its layer (or its bucket's), adding or removing one moves no other. A whole image stays well under
the runtimes' ~127-layer limit: lamina refuses more than :data:`LAYER_BUDGET` layers and says which
image is too big.

The layers go biggest first (:func:`deploy_order`). A node's container storage keeps a layer together
with everything under it, so when one layer changes, a node that pulls the new image downloads only the
changed layer but lays out again every layer above it. Big distributions at the bottom and small ones on
top make that re-laying cost the least for a change anywhere (numpy moved: the small layers above it;
joblib moved: not numpy and scipy). The order changes no layer's digest, only the image's manifest.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path

from lamina.errors import LaminaError
from lamina.oci.layer import LAYER_BUDGET, LayerSpec, check_budget, input_key
from lamina.oci.tar import Entry
from lamina.oci.store import BlobStore
from lamina.python.install import compile_site_packages, install_wheels, staged_entries
from lamina.python.resolve import LockedDist
from lamina.python.target import PythonTarget
from lamina.python.wheels import fetch_wheels, verified_wheel

#: Size thresholds tried in turn when an image's distributions do not fit its room one per layer (0:
#: every distribution alone). The last resort puts every distribution in a bucket.
THRESHOLDS = (0, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024, 1 << 62)
BUCKETS = 8
#: The layers an image's own distributions may take when the caller does not say (see :func:`room_for`).
ROOM = 40
#: Layers kept free by :func:`room_for` for the images built on this one (their code, their own packages).
RESERVE = 16
#: Part of every Python layer's key: change it whenever what goes into a layer changes (v3: bytecode by
#: compile servers; v4: in even chunks of at most 32 files instead of 128: the same bytes for scipy's and
#: joblib's files, but which files share a process is part of what the bytes may depend on).
LAYOUT_VERSION = "python-layer-v4"


def family(name: str) -> str:
    """The first part of a distribution's normalized name: members of a family are released together."""
    return re.split(r"[-_.]+", name.lower(), maxsplit=1)[0]


@cache
def installer_version() -> str:
    """The release of pypa ``installer`` that lays the wheels out: part of every Python layer's key."""
    return version("installer")


def bucket_of(name: str) -> int:
    """The bucket of a distribution below the image's threshold: by its family, so families stay together."""
    return int(hashlib.sha256(family(name).encode()).hexdigest()[:8], 16) % BUCKETS


def room_for(base_layers: int) -> int:
    """The layers an image's own distributions may take: at most :data:`ROOM`, and what the budget leaves
    above its base less :data:`RESERVE` for the images built on it (never fewer than :data:`BUCKETS`)."""
    return max(BUCKETS, min(ROOM, LAYER_BUDGET - base_layers - RESERVE))


def group_dists(dists: Sequence[LockedDist], room: int = ROOM) -> list[list[LockedDist]]:
    """Layers for an image's own distributions: each alone when they fit in ``room`` layers, else the
    smaller ones by family in buckets; in :func:`deploy_order`."""
    groups: list[list[LockedDist]] = []
    for threshold in THRESHOLDS:
        groups = _grouped(dists, threshold)
        if len(groups) <= room:
            break
    return deploy_order(groups)


def deploy_order(groups: Sequence[list[LockedDist]]) -> list[list[LockedDist]]:
    """Groups by their wheels' total size, biggest first (then by first name): what is laid out again
    above a changed layer on a node is then as small as it can be, whichever layer changed."""
    return sorted(groups, key=lambda g: (-sum(d.size or 0 for d in g), g[0].name))


def _grouped(dists: Sequence[LockedDist], threshold: int) -> list[list[LockedDist]]:
    buckets: dict[int, list[LockedDist]] = {}
    alone = []
    for dist in sorted(dists, key=lambda d: d.name):
        if threshold == 0 or (dist.size or 0) >= threshold:
            alone.append([dist])
        else:
            buckets.setdefault(bucket_of(dist.name), []).append(dist)
    return [buckets[b] for b in sorted(buckets)] + alone


class PythonLayers:
    """Layer specs for groups of wheels; staging directories live until :meth:`cleanup`."""

    def __init__(self, target: PythonTarget, wheels: dict[str, Path], scratch: Path, *, uid: int = 0,
                 gid: int = 0, store: BlobStore | None = None) -> None:
        self.target = target
        self.wheels = wheels
        self.store = store
        self.compile = target.host_can_compile
        self.uid, self.gid = uid, gid
        self._root = Path(tempfile.mkdtemp(prefix="python-layers-", dir=scratch))

    def spec(self, group: Sequence[LockedDist]) -> LayerSpec:
        names = ", ".join(d.pin for d in group)
        description = f"python {names}" if len(group) <= 3 else f"python {len(group)} packages ({names[:80]}…)"
        key = input_key(LAYOUT_VERSION, f"installer={installer_version()}", self.target.version, self.target.venv, self.target.interpreter,
                        str(self.compile), str(self.uid), str(self.gid), *(f"{d.pin}:{d.sha256}" for d in group))
        return LayerSpec(lambda: self._entries(group), description, key, weight=sum(d.size or 0 for d in group))

    def _entries(self, group: Sequence[LockedDist]) -> list[Entry]:
        """Install the group's wheels, then compile them in one go (its chunks on every core)."""
        staging = Path(tempfile.mkdtemp(prefix="stage-", dir=self._root))
        wheels = [self._named_wheel(dist) for dist in group]  # fetched now if the caller did not
        install_wheels([(wheel, dist.name) for dist, wheel in zip(group, wheels)], self.target, staging)
        if self.compile:
            compile_site_packages(staging, self.target)
        return staged_entries(staging, uid=self.uid, gid=self.gid)

    def _named_wheel(self, dist: LockedDist) -> Path:
        """The stored wheel under its real file name (installer reads name and version from it), re-hashed
        against the lock's sha256 first: a wheel swapped in the store is refused, never installed. A wheel the
        caller did not fetch is fetched now, by the layer that needs it, while other layers work."""
        link = self._root / "wheels" / dist.filename
        if not link.exists():
            link.parent.mkdir(exist_ok=True)
            wheel = self.wheels.get(dist.name)
            if wheel is None:
                if self.store is None:
                    raise LaminaError(f"the wheel of {dist.pin} was not fetched", hint="a bug in lamina; please report it")
                wheel = fetch_wheels([dist], self.store)[dist.name]
            link.symlink_to(verified_wheel(wheel, dist))
        return link

    def cleanup(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
