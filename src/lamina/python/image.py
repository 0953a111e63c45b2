"""The Python part of one image: lock or resolve its requirements, fetch what uncached layers need,
and return the layer specs (venv first when the image makes it, then the distribution layers).

An image's lock section lists only the distributions it adds; its base's are the constraints it was
resolved with, so a child never changes what its base has and reuses the base's layers as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from lamina.config import ImageSpec, PythonSettings
from lamina.errors import LaminaError, LockStaleError
from lamina.inventory import Component
from lamina.oci.cache import RemoteLayers
from lamina.oci.compress import Compression
from lamina.oci.layer import LayerSpec, cached_layer, input_key
from lamina.oci.model import Image, Platform, env_of
from lamina.oci.store import BlobStore
from lamina.python.findings import ERROR, Finding, allows
from lamina.python.install import IN_PROCESS_BELOW, warm_compile_servers, warm_installers
from lamina.python.layers import LAYER_BUDGET, PythonLayers, check_budget, group_dists, room_for
from lamina.python.requirements import DeclaredRequirement, hashed_lock, read_requirements
from lamina.python.resolve import Indexes, LockedDist, inputs_fingerprint, resolve
from lamina.python.sdist import build_wheel
from lamina.python.sources import materialize
from lamina.python.target import PythonTarget, target_from_config
from lamina.python.venv import venv_entries, venv_env
from lamina.python.wheels import fetch_wheels

LOCK_KIND = "python"
VENV_TOOLS = ("pip",)  # installed with the venv, so `pip list` and `pip check` work in the image


@dataclass(frozen=True)
class PythonState:
    """What an image's venv holds; images built on it start from here."""

    target: PythonTarget
    dists: Mapping[str, LockedDist] = field(default_factory=dict)
    #: distribution → where it comes from, e.g. "base-ml (libs/requirements-ml.txt:3)"
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def pins(self) -> dict[str, str]:
        return {name: d.version for name, d in self.dists.items()}


class PinConflict(LaminaError):
    """A service's requirements contradict what its base has installed (found before resolving)."""

    def __init__(self, image: str, findings: list[Finding]) -> None:
        lines = "\n".join(f"  {f.where}: {f.message}" for f in findings)
        super().__init__(f"image {image!r} conflicts with its base:\n{lines}",
                         hint=findings[0].hint)
        self.findings = findings


@dataclass
class PreparedPython:
    state: PythonState
    section: dict[str, Any]
    resolved: bool
    added: list[LockedDist]
    #: Each layer with the distributions it holds.
    layers: list[tuple[LayerSpec, tuple[Component, ...]]]
    env: dict[str, str]
    downloaded: int = 0


def indexes_of(settings: PythonSettings) -> Indexes:
    return Indexes(settings.index_url, settings.extra_index_urls, settings.find_links, settings.no_index)


class PythonSession:
    """Python packages for one command: the wheels and staging for installs. It reads lock sections it
    is given and returns new ones; it never writes the lock file. ``root`` is the project's folder
    (paths in lock sections are relative to it)."""

    def __init__(self, store: BlobStore, settings: PythonSettings, root: Path, *, locked: bool = False,
                 update: Iterable[str] = (), upgrade: Iterable[str] = (), lock_name: str = "lamina.lock",
                 on_status: Callable[[str], None] | None = None, remote: RemoteLayers | None = None) -> None:
        self.store = store
        #: The registry's layer cache: a layer it has needs no wheel downloaded.
        self.remote = remote
        #: The build's compressor (two gzip flavours share a media type): which cached layers count.
        self.compression: Compression | None = None
        self.settings = settings
        self.root = root
        self.indexes = indexes_of(settings)
        self.locked = locked
        self.update = set(update)
        #: When set, an image re-resolved because it is in ``update`` keeps every other distribution it
        #: locked at its version (``lamina update PACKAGE``): only these move (and what they need).
        self.upgrade = {canonicalize_name(n) for n in upgrade}
        self.lock_name = lock_name
        self.on_status = on_status
        self._layer_sets: list[PythonLayers] = []

    # -- the target and the lock ----------------------------------------------------------------

    def target_for(self, spec: ImageSpec, platform: Platform, base_state: PythonState | None,
                   base_config: Mapping[str, Any], own_env: Mapping[str, str], debian_python: bool) -> PythonTarget:
        if base_state is not None:
            return base_state.target
        config = {"config": {**base_config.get("config", {})}}
        env = list(config["config"].get("Env") or []) + [f"{k}={v}" for k, v in own_env.items()]
        config["config"]["Env"] = env
        minor = _minor_from_env(env)
        interpreter = spec.python or (f"/usr/bin/python{minor}" if debian_python and minor else None)
        return target_from_config(config, platform, interpreter=interpreter, manylinux=self.settings.manylinux,
                                  where=f"image {spec.name!r} for {platform}")

    def lock_image(self, spec: ImageSpec, target: PythonTarget, base_state: PythonState | None,
                   current: Mapping[str, Any] | None, *,
                   makes_venv: bool) -> tuple[dict[str, Any], PythonState, bool]:
        """The image's lock section (``current`` when fresh; re-resolved when stale or asked to), the
        resulting state, and whether it was resolved now."""
        constraints = base_state.pins if base_state else {}
        files = self.requirement_files(spec)
        declared = [r for path in files for r in read_requirements(path)]
        self._check_pins(spec, declared, base_state)
        extra = list(spec.python_packages) + ([t for t in VENV_TOOLS if t not in constraints] if makes_venv else [])
        fingerprint = inputs_fingerprint(files, extra, target, constraints, self.indexes)
        section = dict(current) if current is not None else None
        fresh = section is not None and section.get("inputs") == fingerprint and spec.name not in self.update
        if not fresh:
            if self.locked:
                state = "missing from" if section is None else "out of date in"
                raise LockStaleError(f"the Python packages of {spec.name!r} ({target.platform}) are {state} "
                                     f"{self.lock_name}",
                                     hint="run `lamina lock` and commit the lock file, or build without --locked")
            held = {} if not self.upgrade or section is None else {
                str(d["name"]): str(d["version"]) for d in section.get("dists", [])
                if canonicalize_name(str(d["name"])) not in self.upgrade and d["name"] not in constraints}
            section = self._resolve(spec, files, target, extra, constraints, fingerprint, held)
        added = [LockedDist.from_lock(d) for d in section["dists"]]
        dists = dict(base_state.dists) if base_state else {}
        dists.update({d.name: d for d in added})
        where = {r.name: r.where for r in declared}
        origins = dict(base_state.origins) if base_state else {}
        origins.update({d.name: f"{spec.name} ({_short(where[d.name], self.root)})" if d.name in where
                        else f"{spec.name} (a dependency)" for d in added})
        return section, PythonState(target, dists, origins), not fresh

    def _check_pins(self, spec: ImageSpec, declared: Sequence[DeclaredRequirement],
                    base_state: PythonState | None) -> None:
        if base_state is None:
            return
        findings = []
        for req in declared:
            version = base_state.pins.get(req.name)
            if version is not None and not allows(req, version):
                origin = base_state.origins.get(req.name, "its base")
                findings.append(Finding(ERROR, "conflicting-pin", spec.name, req.where,
                                        f"requires {req.requirement}, but {req.name}=={version} is installed by {origin}",
                                        "a service cannot change what its base has: use the base's version, or change "
                                        "it in the base's requirements and rebuild the base"))
        if findings:
            raise PinConflict(spec.name, findings)

    def requirement_files(self, spec: ImageSpec) -> list[Path]:
        """The image's requirements files, its pyproject.toml and uv.lock sources written as such."""
        folder = self.store.tmp_dir / "requirements"
        return [*spec.requirements, *(materialize(source, folder) for source in spec.sources)]

    def _resolve(self, spec: ImageSpec, files: Sequence[Path], target: PythonTarget, extra: Sequence[str],
                 constraints: Mapping[str, str], fingerprint: str,
                 held: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Resolve with the base's pins as constraints; ``held`` pins are kept too when they can be (a
        resolution they make impossible is done again without them). A hashed requirements file is the
        lock itself: exactly its pins, each wheel checked against its hashes."""
        if self.on_status:
            self.on_status(f"resolving Python packages of {spec.name} for {target.describe()}")
        if not files and not extra:  # a service with no requirements of its own, on a base with a venv
            return {"python": target.version, "platform": target.uv_platform, "venv": target.venv,
                    "inputs": fingerprint, "requirements": [], "dists": []}
        where = f"image {spec.name!r} for {target.platform} (Python {target.minor})"
        locks = [hashed_lock(path) for path in files]
        exact = bool(files) and all(lock is not None for lock in locks)
        dists = None
        if held and not exact:
            try:
                dists = resolve(files, target, extra=extra, constraints={**held, **constraints},
                                indexes=self.indexes, where=where)
            except LaminaError:
                dists = None  # what was asked to move needs another version of a held one
        if dists is None:
            dists = resolve(files, target, extra=extra, constraints=constraints, indexes=self.indexes,
                            where=where, no_deps=exact)
        check_hashes(spec.name, [r for lock in locks if lock for r in lock], dists, exact=exact)
        dists = [build_wheel(d, self.store, self.indexes, where=where) if d.unbuilt_sdist else d
                 for d in dists]
        added = [d for d in dists if d.name not in constraints]
        changed = [d for d in dists if d.name in constraints and d.version != constraints[d.name]]
        if changed:
            raise LaminaError(f"image {spec.name!r}: resolving changed its base's {changed[0].name} "
                              f"({constraints[changed[0].name]} → {changed[0].version})")
        section = {
            "python": target.version,
            "platform": target.uv_platform,
            "venv": target.venv,
            "inputs": fingerprint,
            "requirements": ([_relative(p, self.root) for p in spec.requirements] + [s.label for s in spec.sources]
                             + list(extra)),
            "dists": [d.to_lock() for d in added],
        }
        return section

    # -- layers ---------------------------------------------------------------------------------

    def plan(self, spec: ImageSpec, platform: Platform, base: Image | None, base_state: PythonState | None, *,
             own_env: Mapping[str, str], debian_python: bool) -> tuple[PythonTarget, bool, dict[str, str]]:
        """The image's target, whether it makes the venv, and the env the venv needs."""
        base_config = base.config.json() if base else {}
        base_env = env_of(base_config.get("config", {}))
        target = self.target_for(spec, platform, base_state, base_config, own_env, debian_python)
        makes_venv = base_env.get("VIRTUAL_ENV") != target.venv and base_state is None
        return target, makes_venv, venv_env(target, base_env.get("PATH") or own_env.get("PATH"))

    def prepare(self, spec: ImageSpec, platform: Platform, base: Image | None, base_state: PythonState | None,
                current: Mapping[str, Any] | None, *, own_env: Mapping[str, str], debian_python: bool,
                media_type: str, mtime: int, fetch: bool = True, download: bool = True, uid: int = 0,
                gid: int = 0) -> PreparedPython:
        """Lock (or resolve) the image's distributions; with ``fetch``, fetch the wheels the uncached
        layers need (unless not ``download``: a dry run) and describe the layers."""
        target, makes_venv, env = self.plan(spec, platform, base, base_state, own_env=own_env,
                                            debian_python=debian_python)
        section, state, resolved = self.lock_image(spec, target, base_state, current, makes_venv=makes_venv)
        added = [LockedDist.from_lock(d) for d in section["dists"]]
        prepared = PreparedPython(state, section, resolved, added, [], env)
        if not fetch:
            return prepared
        groups = group_dists(added, room_for(len(base.layers) if base else 0))
        check_budget(spec.name, len(base.layers) if base else 0, len(groups) + 1)
        needed = self._uncached(groups, target, media_type, mtime, uid, gid) if download else []
        if needed:
            _start_helpers(groups, needed, target)

        def count(_: LockedDist, size: int) -> None:
            prepared.downloaded += size

        if needed and self.on_status:
            self.on_status(f"fetching {len(needed)} wheels for {spec.name}")
        wheels = fetch_wheels(needed, self.store, on_done=count) if needed else {}
        installer = PythonLayers(target, wheels, self.store.staging_dir, uid=uid, gid=gid)
        self._layer_sets.append(installer)
        if makes_venv:
            prepared.layers.append((self._venv_layer(target), (Component("files", f"python venv {target.venv}",
                                                                         origin="lamina"),)))
        origins = state.origins
        prepared.layers += [(installer.spec(g), tuple(_component(d, origins.get(d.name, ""), target) for d in g))
                            for g in groups]
        return prepared

    def _uncached(self, groups: Sequence[Sequence[LockedDist]], target: PythonTarget, media_type: str, mtime: int,
                  uid: int, gid: int) -> list[LockedDist]:
        probe = PythonLayers(target, {}, self.store.staging_dir, uid=uid, gid=gid)
        try:
            return [d for g in groups if cached_layer(self.store, probe.spec(g).key or "", media_type, mtime, self.compression,
                                                       remote=self.remote) is None
                    for d in g]
        finally:
            probe.cleanup()

    @staticmethod
    def _venv_layer(target: PythonTarget) -> LayerSpec:
        key = input_key("python-venv-v1", target.venv, target.interpreter, target.version)
        return LayerSpec(lambda: venv_entries(target), f"python venv {target.venv} ({target.describe()})", key)

    def close(self) -> None:
        for layer_set in self._layer_sets:
            layer_set.cleanup()
        self._layer_sets.clear()


def check_hashes(image: str, hashed: Sequence[DeclaredRequirement], dists: Sequence[LockedDist], *,
                 exact: bool) -> None:
    """pip's ``--require-hashes``: each chosen wheel's sha256 is one the file lists for that pin; with
    ``exact`` (every file a hashed lock), the distributions are exactly the file's pins."""
    by_name = {r.name: r for r in hashed}
    for dist in dists:
        req = by_name.get(dist.name)
        if req is None:
            if exact and dist.name not in VENV_TOOLS:
                raise LaminaError(f"image {image!r}: {dist.pin} was added, but the hashed requirements list every "
                                  "distribution and do not name it", hint="regenerate the file with pip-compile")
            continue
        if req.pinned is not None and dist.version != req.pinned:
            raise LaminaError(f"image {image!r}: {req.where} pins {req.name}=={req.pinned}, but {dist.version} was chosen",
                              hint="a base image pins another version: align the two files")
        if dist.sha256 not in req.hashes:
            raise LaminaError(f"{req.where}: {dist.filename} (the wheel for this platform) has sha256 {dist.sha256}, "
                              f"which is not among the {len(req.hashes)} hashes listed for {req.name}",
                              hint="the file's hashes are for other files; regenerate it with "
                              "`pip-compile --generate-hashes` (or add this wheel's hash)")


def _component(dist: LockedDist, origin: str, target: PythonTarget) -> Component:
    return Component("python", dist.name, dist.version, "", dist.sha256, dist.size or 0, dist.filename, dist.url,
                     origin=origin)


def _minor_from_env(env: Sequence[str]) -> str | None:
    for item in env:
        if item.startswith("PYTHON_VERSION=") and (m := re.match(r"(3\.\d+)", item.split("=", 1)[1])):
            return m.group(1)
    return None


def _short(where: str, root: Path) -> str:
    path, _, line = where.rpartition(":")
    return f"{_relative(Path(path), root)}:{line}"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _start_helpers(groups: Sequence[Sequence[LockedDist]], needed: Sequence[LockedDist], target: PythonTarget) -> None:
    """Start the helper processes the layers to build will use (an installer per big group, compile
    servers) now: their interpreters start while the rest of the family plans and fetches."""
    pending = set(needed)
    big = [g for g in groups if not pending.isdisjoint(g) and sum(d.size or 0 for d in g) >= IN_PROCESS_BELOW]
    warm_installers(len(big))
    if target.host_can_compile:
        warm_compile_servers()


__all__ = ["LAYER_BUDGET", "PreparedPython", "PythonSession", "PythonState"]
