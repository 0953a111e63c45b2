"""``lamina update``: re-lock what is asked, say what moved, and move the changed bases' versions.

The seed's "Step 3: Update Base Images" by hand is: edit the requirements, rebuild base-ml under a new
``BASE_VERSION``, edit every service Dockerfile's ``BASE_VERSION``, rebuild the services. Here:

1. the images asked for (named, or those locking a named package, or those with a security update, or
   all) are resolved again by the family (``Family(update=...)``, the lock's only writer): requirements'
   specifiers and base pins hold, and the images built on them follow;
2. the lock before and after are compared: every package that moved, per image and platform;
3. a base whose lock changed (or whose project base did) gets the next version in lamina.toml
   (:mod:`lamina.updates.versions`); the images on it are named after it by the next build. Nothing
   else moves: an unchanged base keeps its tag, so the images on it keep their digests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lamina.build import BuildOptions
from lamina.config import ProjectConfig, load_config
from lamina.errors import ConfigError
from lamina.family import Family
from lamina.lock import Lock
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.plan import build_order
from lamina.updates.outdated import find_outdated
from lamina.oci.store import atomic_write
from lamina.updates.versions import VersionMove, apply_moves, set_key, version_moves

#: The list of records each lock section kind holds.
RECORDS = {"python": "dists", "debian": "packages"}


@dataclass(frozen=True)
class Moved:
    """One package whose locked version changed (``old`` None: added; ``new`` None: removed)."""

    image: str
    platform: str
    kind: str
    name: str
    old: str | None
    new: str | None

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "platform": self.platform, "kind": self.kind, "name": self.name,
                "old": self.old, "new": self.new}

    def __str__(self) -> str:
        if self.old is None:
            return f"+{self.name} {self.new}"
        if self.new is None:
            return f"-{self.name} {self.old}"
        return f"{self.name} {self.old} → {self.new}"


@dataclass
class UpdateResult:
    asked: list[str]
    moved: list[Moved] = field(default_factory=list)
    #: Images whose content changes: their lock moved, or their project base's did.
    changed: list[str] = field(default_factory=list)
    versions: list[VersionMove] = field(default_factory=list)
    config: ProjectConfig | None = None

    def to_json(self) -> dict[str, Any]:
        return {"asked": self.asked, "moved": [m.to_json() for m in self.moved], "changed": self.changed,
                "versions": [v.to_json() for v in self.versions]}


def images_to_update(config: ProjectConfig, lock: Lock, *, images: Sequence[str] = (), packages: Sequence[str] = (),
                     security: Sequence[str] | None = None) -> list[str]:
    """The images ``lamina update`` re-resolves: those named, those locking one of ``packages``, those
    in ``security`` (images with a security update); all when nothing narrows it."""
    chosen = list(images)
    if packages:
        wanted = {p.lower().replace("_", "-") for p in packages}
        for name in config.images:
            for platform in lock.platforms(name):
                for kind, key in RECORDS.items():
                    section = lock.section(name, platform, kind) or {}
                    if any(r["name"].lower().replace("_", "-") in wanted for r in section.get(key, [])):
                        chosen.append(name)
    if security is not None:
        chosen += list(security)
    if not images and not packages and security is None:
        chosen = list(config.images)
    return list(dict.fromkeys(chosen))


def update(config: ProjectConfig, store: BlobStore, registries: Registries, *, images: Sequence[str] = (),
           packages: Sequence[str] = (), security_only: bool = False, move_versions: bool = True,
           options: BuildOptions | None = None, on_status: Callable[[str, str], None] | None = None) -> UpdateResult:
    """Re-lock, compare, move versions (see the module). lamina.lock and lamina.toml are written."""
    for name in images:
        config.image(name)  # an unknown name fails here, with a suggestion
    lock = Lock.for_config(config.path)
    before = copy.deepcopy(lock.data)
    security = None
    if security_only:
        report = find_outdated(config, lock, store, registries, names=list(images), kinds=("debian", "python"))
        security = report.images(("debian", "python"), security_only=True)
        packages = list(packages) + [i.name for i in report.items if i.security and i.kind == "python"]
    asked = images_to_update(config, lock, images=images, packages=packages, security=security)
    unknown = [p for p in packages if not images_to_update(config, lock, packages=[p])]
    if unknown and not security_only:
        raise ConfigError(f"no image is named {unknown[0]!r}, and no image of {lock.path.name} locks a package of "
                          "that name", hint=f"images: {', '.join(config.images)}; `lamina outdated` lists the packages")
    result = UpdateResult(asked)
    if not asked:
        return result
    pins = [] if security_only else repin_bases(config, store, registries, asked)
    if pins:
        config = load_config(config.path)
        result.moved += pins
    family = Family(config, store, registries, options or BuildOptions(), config.version or "latest", update=asked,
                    upgrade=packages)
    family.on_status = on_status
    family.build(list(config.images), lock_only=True)
    after = family.lock.data
    result.moved += lock_moves(before, after)
    touched = {m.image for m in result.moved}
    result.changed = [n for n in build_order(config, list(config.images))
                      if n in touched or _base_chain(config, n) & touched]
    if move_versions:
        result.versions = version_moves(config, result.changed)
        if result.versions:
            apply_moves(config.path, result.versions)
            result.config = load_config(config.path)
    return result


def repin_bases(config: ProjectConfig, store: BlobStore, registries: Registries, names: Sequence[str]) -> list[Moved]:
    """Move each ``from = "IMAGE:TAG@sha256:…"`` of the images ``names`` to the digest its tag names now (a
    line edit of lamina.toml); returns what moved. A base pulled by tag alone follows the tag at each build."""
    text = config.path.read_text(encoding="utf-8")
    moved = []
    pinned = [config.image(n) for n in names if "@sha256:" in config.image(n).base and config.image(n).service is None]
    if not pinned:
        return []
    report = find_outdated(config, Lock.for_config(config.path), store, registries, names=[s.name for s in pinned],
                           kinds=("base",))
    for item in report.items:
        if item.wanted is None:
            continue
        spec = config.image(item.image)
        new = f"{spec.base.split('@', 1)[0]}@{item.wanted}"
        text = set_key(text, f"images.{spec.name}", "from", new, where=str(config.path))
        moved.append(Moved(spec.name, item.platform, "base", item.name, item.current, item.wanted))
    if moved:
        atomic_write(config.path, text.encode("utf-8"))
    return moved


def lock_moves(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Moved]:
    """Every package whose version differs between two lock documents."""
    moves = []
    old_images, new_images = before.get("images", {}), after.get("images", {})
    for image in sorted(set(old_images) | set(new_images)):
        old_platforms, new_platforms = old_images.get(image, {}), new_images.get(image, {})
        for platform in sorted(set(old_platforms) | set(new_platforms)):
            for kind, key in RECORDS.items():
                old = {r["name"]: r["version"] for r in (old_platforms.get(platform, {}).get(kind) or {}).get(key, [])}
                new = {r["name"]: r["version"] for r in (new_platforms.get(platform, {}).get(kind) or {}).get(key, [])}
                for name in sorted(set(old) | set(new)):
                    if old.get(name) != new.get(name):
                        moves.append(Moved(image, platform, kind, name, old.get(name), new.get(name)))
    return moves


def _base_chain(config: ProjectConfig, name: str) -> set[str]:
    """The project images ``name`` is built on, nearest first."""
    chain: set[str] = set()
    base = config.image(name).base
    while base in config.images and base not in chain:
        chain.add(base)
        base = config.images[base].base
    return chain
