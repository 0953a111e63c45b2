"""Building a family of images: bases first, then the images on them, as many at once as cores allow.

This is the library behind ``lamina build`` and ``lamina lock``: config in, built images out (in the
store, with the lock file updated); where they go is :mod:`lamina.publish`'s business.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lamina.build import Base, BuildOptions, BuiltImage, build_image, lock_image
from lamina.config import ImageSpec, ProjectConfig
from lamina.debian.image import Debian, settings_of
from lamina.lock import Lock
from lamina.oci.compress import workers
from lamina.oci.layer import BuiltLayer
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.plan import build_order, project_base
from lamina.python.check import CheckedImage, Finding, check_family
from lamina.python.image import PinConflict, PythonSession


@dataclass
class Family:
    """One build of some images of a project (and the project images they are built on)."""

    config: ProjectConfig
    store: BlobStore
    registries: Registries
    options: BuildOptions
    tag: str
    pushing: bool = False
    locked: bool = False
    update: Iterable[str] = ()
    on_status: Callable[[str, str], None] | None = None
    on_layer: Callable[[str, BuiltLayer], None] | None = None
    lock: Lock = field(init=False)

    def __post_init__(self) -> None:
        self.lock = Lock.for_config(self.config.path)
        update = set(self.update)
        status = (lambda text: self.on_status("lock", text)) if self.on_status else None
        self.debian = Debian(self.store, self.lock, settings_of(self.config), locked=self.locked, update=update,
                             on_status=status)
        self.python = PythonSession(self.store, self.lock, self.config.python, locked=self.locked, update=update,
                                    on_status=status)
        self._prepare_lock = threading.Lock()

    def build(self, names: Sequence[str], *, lock_only: bool = False) -> list[BuiltImage]:
        """Build ``names`` and their project bases; returns them in build order. Saves the lock.

        With ``lock_only``, resolve and lock without building a layer (``lamina lock``).
        """
        order = build_order(self.config, names)
        self.conflicts: list[Finding] = []
        done: dict[str, BuiltImage] = {}
        siblings: dict[str, Base] = {}
        try:
            for wave in _waves(self.config, order):
                with ThreadPoolExecutor(max_workers=max(1, min(len(wave), workers()))) as pool:
                    one = self._lock_one if lock_only else self._build_one
                    results = list(pool.map(lambda n: self._collecting(one, self.config.image(n), siblings), wave))
                for built in filter(None, results):
                    done[built.name] = built
                    spec = self.config.image(built.name)
                    siblings[built.name] = Base(built.image, self.base_name(spec), built.debian, built.python)
        finally:
            self.close()
        self.lock.save()
        return [done[n] for n in order if n in done]

    def _collecting(self, one: Callable[[ImageSpec, dict[str, Base]], BuiltImage], spec: ImageSpec,
                    siblings: dict[str, Base]) -> BuiltImage | None:
        """Build one image; a pin conflict becomes a finding (the image is skipped) so every one is reported."""
        try:
            return one(spec, siblings)
        except PinConflict as conflict:
            self.conflicts.extend(conflict.findings)
            return None

    def base_name(self, spec: ImageSpec) -> str:
        """How an image of the project is named as the base of another (its annotation)."""
        if self.pushing or self.config.registry:
            return str(self.config.target(spec, self.tag if spec.service else None))
        return f"{spec.name}:{self.tag if spec.service else self.config.tag_of(spec)}"

    def _build_one(self, spec: ImageSpec, siblings: dict[str, Base]) -> BuiltImage:
        if self.on_status:
            self.on_status(spec.name, "building")
        return build_image(
            spec,
            store=self.store,
            registries=self.registries,
            options=self.options,
            project_root=self.config.root,
            siblings=dict(siblings),
            on_layer=(lambda layer: self.on_layer(spec.name, layer)) if self.on_layer else None,
            debian=_Serialized(self.debian, self._prepare_lock),  # type: ignore[arg-type]
            python=_Serialized(self.python, self._prepare_lock),  # type: ignore[arg-type]
        )

    def _lock_one(self, spec: ImageSpec, siblings: dict[str, Base]) -> BuiltImage:
        if self.on_status:
            self.on_status(spec.name, "locking")
        with self._prepare_lock:
            return lock_image(spec, store=self.store, registries=self.registries, options=self.options,
                              project_root=self.config.root, siblings=dict(siblings), debian=self.debian,
                              python=self.python)

    def check(self, built: Sequence[BuiltImage]) -> list[Finding]:
        """``lamina check`` on built (or locked) images: what would fail at run time, found now."""
        return self.conflicts + check_family([self._checked(b) for b in built if b.python is not None], self.store)

    def _checked(self, built: BuiltImage) -> CheckedImage:
        spec = self.config.image(built.name)
        state = built.python
        assert state is not None
        base_state = built.base.python if built.base else None
        base_dists = base_state.dists if base_state else {}
        added = tuple(d for name, d in sorted(state.dists.items()) if name not in base_dists)
        service = spec.service
        return CheckedImage(
            name=built.name,
            all_dists=tuple(d for _, d in sorted(state.dists.items())),
            added=added,
            base_name=built.base.name if built.base else None,
            base_pins=base_state.pins if base_state else {},
            service_code=service.code if service else None,
            service_requirements=service.requirements if service else None,
        )

    def close(self) -> None:
        self.debian.close()
        self.python.close()


class _Serialized:
    """Runs a session's resolving and fetching one image at a time (layers are still built in parallel)."""

    def __init__(self, session: object, lock: threading.Lock) -> None:
        self._session = session
        self._lock = lock

    def prepare(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        with self._lock:
            return self._session.prepare(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._session, name)


def _waves(config: ProjectConfig, order: Sequence[str]) -> list[list[str]]:
    """Groups of images whose project bases are all in earlier groups (bases first, in order)."""
    depth: dict[str, int] = {}
    for name in order:
        base = project_base(config, config.image(name).base)
        depth[name] = depth[base] + 1 if base is not None else 0
    waves: dict[int, list[str]] = {}
    for name in order:
        waves.setdefault(depth[name], []).append(name)
    return [waves[d] for d in sorted(waves)]
