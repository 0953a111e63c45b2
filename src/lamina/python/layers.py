"""Which installed distributions go in which layer, and the layers themselves.

The rule, stable by construction: a distribution whose wheel is at least :data:`ALONE_BYTES` (1 MiB) gets a
layer of its own; the others share one of :data:`BUCKETS` layers chosen by a hash of their name
alone. So bumping a package changes only its layer (or its bucket's), and adding or removing one
never moves the others. A whole image stays well under the runtimes' ~127-layer limit: lamina
refuses more than :data:`LAYER_BUDGET` layers and says which image is too big.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path

from lamina.oci.layer import LAYER_BUDGET, LayerSpec, check_budget, input_key
from lamina.oci.tar import Entry
from lamina.python.install import install_wheel, staged_entries
from lamina.python.resolve import LockedDist
from lamina.python.target import PythonTarget
from lamina.python.wheels import verified_wheel

ALONE_BYTES = 1024 * 1024
BUCKETS = 8
LAYOUT_VERSION = "python-layer-v2"  # change whenever what goes into a layer changes


@cache
def installer_version() -> str:
    """The release of pypa ``installer`` that lays the wheels out: part of every Python layer's key."""
    return version("installer")


def bucket_of(name: str) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % BUCKETS


def group_dists(dists: Sequence[LockedDist]) -> list[list[LockedDist]]:
    """Buckets of small distributions (by bucket number), then big ones alone (by name)."""
    buckets: dict[int, list[LockedDist]] = {}
    alone = []
    for dist in sorted(dists, key=lambda d: d.name):
        if (dist.size or 0) >= ALONE_BYTES:
            alone.append([dist])
        else:
            buckets.setdefault(bucket_of(dist.name), []).append(dist)
    return [buckets[b] for b in sorted(buckets)] + alone


class PythonLayers:
    """Layer specs for groups of wheels; staging directories live until :meth:`cleanup`."""

    def __init__(self, target: PythonTarget, wheels: dict[str, Path], scratch: Path, *, uid: int = 0,
                 gid: int = 0) -> None:
        self.target = target
        self.wheels = wheels
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
        staging = Path(tempfile.mkdtemp(prefix="stage-", dir=self._root))
        for dist in group:
            install_wheel(self._named_wheel(dist), dist.name, self.target, staging, compile_bytecode=self.compile)
        return staged_entries(staging, uid=self.uid, gid=self.gid)

    def _named_wheel(self, dist: LockedDist) -> Path:
        """The stored wheel under its real file name (installer reads name and version from it), re-hashed
        against the lock's sha256 first: a wheel swapped in the store is refused, never installed."""
        link = self._root / "wheels" / dist.filename
        if not link.exists():
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(verified_wheel(self.wheels[dist.name], dist))
        return link

    def cleanup(self) -> None:
        shutil.rmtree(self._root, ignore_errors=True)
