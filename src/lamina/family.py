"""Building a family of images: plan each (bases first), build all their new layers at once, assemble.

This is the library behind ``lamina build`` and ``lamina lock``: config in, built images out (in the
store, with the lock file updated); where they go is :mod:`lamina.publish`'s business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lamina.build import Base, BuildOptions, BuiltImage, PlannedImage, finish_image, plan_image
from lamina.config import ImageSpec, ProjectConfig
from lamina.debian.image import Debian, settings_of
from lamina.lock import Lock
from lamina.oci.layer import BuiltLayer, build_layers
from lamina.oci.model import layer_media_type
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.plan import build_order
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

    def build(self, names: Sequence[str], *, lock_only: bool = False) -> list[BuiltImage]:
        """Build ``names`` and their project bases; returns them in build order. Saves the lock.

        Three steps, as the data flows: plan every image in order (lock, fetch, describe its layers:
        cheap, and a child needs only its base's plan), build every new layer of the family in one
        pool (so base-ml's layers are compressed while base-runtime's are), then assemble the images,
        bases first. With ``lock_only``, the first step only, fetching nothing (``lamina lock``).
        """
        order = build_order(self.config, names)
        self.conflicts: list[Finding] = []
        plans: dict[str, PlannedImage] = {}
        drafts: dict[str, Base] = {}
        try:
            for name in order:
                spec = self.config.image(name)
                if spec.base in self.config.images and spec.base not in plans:
                    continue  # its base could not be planned (a conflict, reported)
                planned = self._plan(spec, drafts, fetch=not lock_only)
                if planned is not None:
                    plans[name] = planned
                    drafts[name] = Base(planned.draft, self.base_name(spec), planned.debian, planned.python)
            if lock_only:
                built = [BuiltImage(n, p.draft, p.base, [], p.seconds, p.debian, python=p.python)
                         for n, p in plans.items()]
            else:
                built = self._build_and_finish(plans)
        finally:
            self.close()
        self.lock.save()
        return built

    def base_name(self, spec: ImageSpec) -> str:
        """How an image of the project is named as the base of another (its annotation)."""
        if self.pushing or self.config.registry:
            return str(self.config.target(spec, self.tag if spec.service else None))
        return f"{spec.name}:{self.tag if spec.service else self.config.tag_of(spec)}"

    def _plan(self, spec: ImageSpec, drafts: dict[str, Base], *, fetch: bool) -> PlannedImage | None:
        """Plan one image; a pin conflict becomes a finding (the image is skipped) so every one is reported."""
        if self.on_status:
            self.on_status(spec.name, "resolving" if fetch else "locking")
        try:
            return plan_image(spec, store=self.store, registries=self.registries, options=self.options,
                              project_root=self.config.root, siblings=drafts, debian=self.debian,
                              python=self.python, fetch=fetch)
        except PinConflict as conflict:
            self.conflicts.extend(conflict.findings)
            return None

    def _build_and_finish(self, plans: dict[str, PlannedImage]) -> list[BuiltImage]:
        owners = [(name, i) for name, plan in plans.items() for i in range(len(plan.layers))]
        specs = [plans[name].layers[i] for name, i in owners]
        started = time.monotonic()

        def done(layer: BuiltLayer) -> None:
            if self.on_layer is not None:
                self.on_layer(next((n for n, i in owners if plans[n].layers[i].description == layer.description),
                                   "layers"), layer)

        media_type = layer_media_type(self.options.compression, self.options.format)
        layers = build_layers(self.store, specs, compression=self.options.compression, media_type=media_type,
                              mtime=self.options.mtime, on_done=done)
        seconds = time.monotonic() - started
        per_image: dict[str, list[BuiltLayer]] = {name: [] for name in plans}
        for (name, _), layer in zip(owners, layers, strict=True):
            per_image[name].append(layer)
        built: dict[str, BuiltImage] = {}
        for name, plan in plans.items():
            base = plan.base
            if plan.spec.base in built:  # a project image: on its finished documents, not its draft
                parent = built[plan.spec.base]
                base = Base(parent.image, self.base_name(self.config.image(parent.name)), parent.debian, parent.python)
            built[name] = finish_image(plan, base, per_image[name], store=self.store, options=self.options,
                                       seconds=seconds)
        return list(built.values())

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
