"""Building a family of images: plan each (bases first), build all their new layers at once, assemble.

This is the library behind ``lamina build`` and ``lamina lock``: config in, built images out (in the
store, with their inventories, and the lock file updated — the family is the only writer of the
lock); where they go is :mod:`lamina.publish`'s business. An image to build is a (name, platform)
pair; an image of several platforms becomes an index over one image per platform (:meth:`products`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lamina import naming
from lamina.build import Base, BuildOptions, BuiltImage, PlannedImage, finish_image, plan_image
from lamina.config import ImageSpec, ProjectConfig
from lamina.debian.step import DebianStep
from lamina.errors import BaseImageNotFound, ConfigError, NotFoundError
from lamina.files import FilesStep
from lamina.lock import Lock
from lamina.inventory import describe_component
from lamina.oci.cache import RemoteLayers
from lamina.oci.elf import foreign, wrong_architecture
from lamina.oci.layer import BuiltLayer, available, build_layers
from lamina.oci.model import Artifact, Index, Platform
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.plan import build_order
from lamina.python.findings import Finding
from lamina.python.image import PinConflict, PythonSession, PythonState
from lamina.python.step import PythonStep
from lamina.steps import Step, StepLayer

if TYPE_CHECKING:
    from lamina.debian.image import Debian
    from lamina.python.check import CheckedImage

def _publish_command(name: str) -> str:
    return f"`lamina build {name} --push` (or, next to the registry, `lamina build {name} --push --on ssh://USER@HOST`)"


#: (image name, platform): what the family builds one of.
Key = tuple[str, Platform]


@dataclass(frozen=True)
class Product:
    """One image of the project as it is published: its platform images, and the artifact an output
    or a registry receives (the image itself, or an index over several platforms)."""

    spec: ImageSpec
    images: tuple[BuiltImage, ...]
    artifact: Artifact

    @property
    def name(self) -> str:
        return self.spec.name


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
    #: With ``update``: only these Python distributions move in the images updated (``lamina update PACKAGE``).
    upgrade: Iterable[str] = ()
    platforms: Sequence[Platform] = ()
    on_status: Callable[[str, str], None] | None = None
    on_layer: Callable[[str, BuiltLayer], None] | None = None
    #: The registry's layer cache (:mod:`lamina.cache`): layers it has are neither built nor fetched.
    remote: RemoteLayers | None = None
    #: The seed's Step 2: project images that are only bases of the images asked for are taken as
    #: published in the registry — never built here; one missing there, or different here, is an error.
    published_bases: bool = False
    #: False: what is resolved stays in memory (``lamina build --dry-run`` writes nothing).
    save_lock: bool = True
    lock: Lock = field(init=False)

    def __post_init__(self) -> None:
        images = self.config.images
        self.lock = Lock.for_config(self.config.path,
                                    lambda name: str(images[name].platform) if name in images else "linux/amd64")
        update = set(self.update)
        status = self._lock_status

        def debian() -> Debian:  # made when an image first needs it: see DebianStep
            from lamina.debian.image import Debian, settings_of

            session = Debian(self.store, settings_of(self.config), locked=self.locked, update=update,
                             lock_name=self.lock.path.name, on_status=status, remote=self.remote)
            session.compression = self.options.compression
            return session

        self.python = PythonSession(self.store, self.config.python, self.config.root, locked=self.locked,
                                    update=update, upgrade=self.upgrade, lock_name=self.lock.path.name,
                                    on_status=status, remote=self.remote)
        self.python.compression = self.options.compression
        self.steps: list[Step] = [DebianStep(debian), PythonStep(self.python),
                                  FilesStep(str(self.config.root))]
        self.resolved: list[str] = []
        self.conflicts: list[Finding] = []
        #: Published bases of the build (``published_bases``): where each is, and its digest there.
        self._published: dict[Key, tuple[Reference, str]] = {}

    def _lock_status(self, text: str) -> None:
        if self.on_status:
            self.on_status("lock", text)

    # -- what to build ----------------------------------------------------------------------------

    def platforms_of(self, spec: ImageSpec) -> list[Platform]:
        """The image's platforms, narrowed to the build's (``--platform``) when it names some."""
        if not self.platforms:
            return list(spec.platforms)
        return [p for p in spec.platforms if p in self.platforms]

    def keys(self, names: Sequence[str]) -> list[Key]:
        """(name, platform) for ``names`` and the project images they are built on, bases first."""
        return [(name, platform) for name in build_order(self.config, names)
                for platform in self.platforms_of(self.config.image(name))]

    def base_name(self, spec: ImageSpec) -> str:
        """How an image of the project is named as the base of another (its annotation)."""
        return naming.base_name(self.config, spec, self.tag, pushing=self.pushing)

    # -- building ---------------------------------------------------------------------------------

    def build(self, names: Sequence[str], *, lock_only: bool = False) -> list[BuiltImage]:
        """Build ``names`` and their project bases; returns them in build order. Saves the lock.

        Three steps, as the data flows: plan every image in order (lock, fetch, describe its layers:
        cheap, and a child needs only its base's plan), build every new layer of the family in one
        pool (so base-ml's layers are compressed while base-runtime's are), then assemble the images,
        bases first. With ``lock_only``, the first step only, fetching nothing (``lamina lock``).
        """
        try:
            plans = self._plan_all(names, fetch=not lock_only)
            published = self._published
            if lock_only:
                built = [BuiltImage(p.name, p.platform, p.draft, p.base, [], None, p.results, p.states,
                                    p.os_packages, p.seconds) for p in plans.values()]
            else:
                for key in published:
                    self._all_layers_published(plans[key], published[key][0])
                built = self._build_and_finish(plans)
                for b in built:
                    if (b.name, b.platform) in published:
                        self._same_as_published(b, *published[(b.name, b.platform)])
        finally:
            self.close()
        self._save_lock()
        return built

    def _published_at(self, spec: ImageSpec) -> tuple[Reference, str]:
        """Where a base is published and its digest there; an error naming both when it is not there."""
        target = naming.push_target(self.config, spec, naming.tag_for(self.config, spec, self.tag))
        found = self.registries.client(target.registry).head_manifest(target.repository, target.identifier)
        if found is None:
            raise BaseImageNotFound(f"base image {target} not found: {spec.name!r} has not been published there",
                                    hint=f"publish it first with {_publish_command(spec.name)}, or check registry, "
                                         "owner and base_version in lamina.toml")
        return target, found[0]

    def _all_layers_published(self, plan: PlannedImage, target: Reference) -> None:
        """An error when a published base's layers, as planned here, are not all in the store or the
        registry's cache (it would be built here: lamina.toml or lamina.lock changed since)."""
        mt, mtime = self.options.media_type, self.options.mtime
        missing = [layer.spec.description for layer in plan.layers
                   if not available(self.store, layer.spec, mt, mtime, remote=self.remote)]
        if missing:
            raise BaseImageNotFound(
                f"{plan.name!r} as lamina.toml and lamina.lock describe it is not what {target} holds: "
                f"{len(missing)} of its layers are in neither the store nor the registry's layer cache "
                f"(first: {missing[0]})",
                hint=f"publish this version with {_publish_command(plan.name)}, or check out the lamina.lock "
                     "it was published from")

    def _base_not_found(self, spec: ImageSpec) -> BaseImageNotFound:
        """The seed's "Base image not found", for a ``from`` reference the registry lacks: which command
        publishes it when it is one of the project's own images, else what to check."""
        publishes = None
        for other in self.config.images.values():
            try:
                if spec.base == str(naming.push_target(self.config, other, naming.own_tag(self.config, other))):
                    publishes = other.name
            except ConfigError:
                continue
        if publishes is not None:
            hint = f"it is the project's {publishes!r}: publish it first with {_publish_command(publishes)}"
        else:
            hint = "push it first (the seed: ./scripts/build-base-images.sh), or fix the tag or owner in `from`"
        return BaseImageNotFound(f"base image {spec.base} of {spec.name!r} not found in its registry", hint=hint)

    def _same_as_published(self, built: BuiltImage, target: Reference, digest: str) -> None:
        if built.image.digest != digest and len(self.config.image(built.name).platforms) == 1:
            raise BaseImageNotFound(
                f"{built.name!r} built from its layers here is {built.image.digest}, but {target} is {digest}",
                hint=f"its settings changed since it was published: publish it with `lamina build {built.name} --push`")

    def plan(self, names: Sequence[str], *, download: bool = True) -> dict[Key, PlannedImage]:
        """The first step of :meth:`build` alone: every image planned, its layers described (keys,
        descriptions, components), nothing built. Without ``download`` nothing is downloaded either
        (``lamina build --dry-run``). Call :meth:`close` after."""
        return self._plan_all(names, fetch=True, download=download)

    def _plan_all(self, names: Sequence[str], *, fetch: bool, download: bool = True) -> dict[Key, PlannedImage]:
        self.conflicts = []
        self._published = {}
        plans: dict[Key, PlannedImage] = {}
        for name, platform in self.keys(names):
            spec = self.config.image(name)
            if spec.base in self.config.images and (spec.base, platform) not in plans:
                self._missing_base_platform(spec, platform)
                continue  # its base could not be planned (a conflict, reported)
            if self.published_bases and fetch and name not in names:
                self._published[(name, platform)] = self._published_at(spec)  # before anything is fetched for it
            drafts = {b: p.as_base(self.base_name(p.spec)) for (b, pf), p in plans.items() if pf == platform}
            planned = self._plan(spec, platform, drafts, fetch=fetch, download=download)
            if planned is not None:
                plans[(name, platform)] = planned
        return plans

    def _save_lock(self) -> None:
        if self.save_lock:
            self.lock.save()

    def _missing_base_platform(self, spec: ImageSpec, platform: Platform) -> None:
        base = self.config.image(spec.base)
        if platform not in base.platforms:
            raise ConfigError(
                f"image {spec.name!r} is built for {platform}, but its base {base.name!r} is not "
                f"(its platforms: {', '.join(map(str, base.platforms))})",
                hint=f"add {platform} to the platforms of {base.name!r}, or remove it from {spec.name!r}",
            )

    def _plan(self, spec: ImageSpec, platform: Platform, drafts: dict[str, Base], *,
              fetch: bool, download: bool = True) -> PlannedImage | None:
        """Plan one image; a pin conflict becomes a finding (the image is skipped) so every one is
        reported. New lock sections are recorded (and the lock saved, so a later failure keeps them)."""
        if self.on_status:
            self.on_status(spec.name, "resolving" if fetch else "locking")
        where = str(platform)
        try:
            planned = plan_image(spec, platform, steps=self.steps, store=self.store, registries=self.registries,
                                 options=self.options, project_root=self.config.root,
                                 lock_section=lambda kind: self.lock.section(spec.name, where, kind),
                                 siblings=drafts, fetch=fetch, download=download)
        except PinConflict as conflict:
            self.conflicts.extend(conflict.findings)
            return None
        except NotFoundError as missing:
            if spec.base in self.config.images or spec.base not in missing.message:
                raise
            raise self._base_not_found(spec) from None
        resolved = [r for r in planned.results if r.resolved and r.lock is not None]
        for result in resolved:
            self.lock.set_section(spec.name, where, result.kind, result.lock)
        if resolved:
            self.resolved.append(spec.name)
            self._save_lock()
        return planned

    def _build_and_finish(self, plans: dict[Key, PlannedImage]) -> list[BuiltImage]:
        owners = [(key, i) for key, plan in plans.items() for i in range(len(plan.layers))]
        specs = [plans[key].layers[i].spec for key, i in owners]
        started = time.monotonic()
        by_description: dict[str, str] = {}  # the first image, in build order, that holds each layer
        for key, i in owners:
            by_description.setdefault(plans[key].layers[i].spec.description, key[0])

        def done(layer: BuiltLayer) -> None:
            if self.on_layer is not None:
                self.on_layer(by_description.get(layer.description, "layers"), layer)

        layers = build_layers(self.store, specs, compression=self.options.compression,
                              media_type=self.options.media_type, mtime=self.options.mtime, on_done=done,
                              remote=self.remote)
        seconds = time.monotonic() - started
        per_image: dict[Key, list[BuiltLayer]] = {key: [] for key in plans}
        for (key, i), layer in zip(owners, layers, strict=True):
            self._check_architecture(key, plans[key].layers[i], layer)
            per_image[key].append(layer)
        built: dict[Key, BuiltImage] = {}
        for key, plan in plans.items():
            base = plan.base
            parent_key = (plan.spec.base, key[1])
            if parent_key in built:  # a project image: on its finished documents, not its draft
                parent = built[parent_key]
                base = parent.as_base(self.base_name(self.config.image(parent.name)))
            built[key] = finish_image(plan, base, per_image[key], store=self.store, options=self.options,
                                      seconds=seconds)
        return list(built.values())

    @staticmethod
    def _check_architecture(key: Key, planned: StepLayer, layer: BuiltLayer) -> None:
        """Every ELF binary in a platform's layer must be for that platform's CPU (a layer shared by
        several platforms is checked for each)."""
        name, platform = key
        bad = foreign(layer.elf, platform.architecture)
        if bad is not None:
            origin = ", ".join(describe_component(c) for c in planned.components) or planned.spec.description
            raise wrong_architecture(name, str(platform), platform.architecture, bad[0], bad[1], origin)

    # -- what comes out ---------------------------------------------------------------------------

    def products(self, built: Sequence[BuiltImage]) -> list[Product]:
        """The built images grouped by name, in build order: a single-platform image is published as
        itself (its manifest), several platforms as an index (in the order the config lists them)."""
        by_name: dict[str, list[BuiltImage]] = {}
        for b in built:
            by_name.setdefault(b.name, []).append(b)
        products = []
        for name, images in by_name.items():
            spec = self.config.image(name)
            order = {p: i for i, p in enumerate(spec.platforms)}
            images.sort(key=lambda b: order.get(b.platform, len(order)))
            if len(spec.platforms) == 1 and len(images) == 1:
                artifact: Artifact = images[0].image
            else:
                artifact = Index.of([b.image for b in images])
            products.append(Product(spec, tuple(images), artifact))
        return products

    def check(self, built: Sequence[BuiltImage]) -> list[Finding]:
        """``lamina check`` on built (or locked) images: what would fail at run time, found now."""
        from lamina.python.check import check_family  # parses the services' code: imported only to check

        firsts = {b.name: b for b in reversed(built)}  # one platform of each image: its code is the same
        checked = [self._checked(b) for b in built
                   if firsts[b.name] is b and isinstance(b.states.get("python"), PythonState)]
        return self.conflicts + check_family(checked, self.store)

    def _checked(self, built: BuiltImage) -> CheckedImage:
        from lamina.python.check import CheckedImage

        spec = self.config.image(built.name)
        state = built.states["python"]
        base_state = built.base.states.get("python") if built.base else None
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
            service=service,
        )

    def close(self) -> None:
        for step in self.steps:
            step.close()

