"""Build one platform image of ``lamina.toml``: resolve its base, run its steps, write its documents.

An image is planned (its base resolved; each step locks its inputs, fetches what the new layers need
and describes them), its new layers are built (by :mod:`lamina.oci.layer`, for the whole family at
once), then it is assembled: config and manifest on top of its base, and its inventory recorded.
Building never knows where the image goes; :mod:`lamina.publish` does that. Which package sources
exist is the steps' business (:mod:`lamina.steps`): nothing here knows Debian or Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lamina.config import ImageSpec
from lamina.debian import is_debian_base
from lamina.errors import LaminaError
from lamina.inventory import Inventory, Placed, placed, save_inventory
from lamina.oci.compress import Compression
from lamina.oci.layer import BuiltLayer, check_budget
from lamina.oci.layout import read_layout_image
from lamina.oci.model import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    ANNOTATION_CREATED,
    ANNOTATION_REVISION,
    ANNOTATION_SOURCE,
    ANNOTATION_VERSION,
    Descriptor,
    Format,
    Image,
    Platform,
    build_config,
    build_manifest,
    convert_layer_type,
    env_of,
    layer_media_type,
    merge_run_config,
    rfc3339,
)
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries, pull_image
from lamina.oci.store import BlobStore
from lamina.oci.tar import source_date_epoch
from lamina.steps import Step, StepContext, StepLayer, StepResult, run_steps

SCRATCH = "scratch"


@dataclass(frozen=True)
class BuildOptions:
    """How images are written, whatever they contain."""

    format: Format = "oci"
    compression: Compression = "gzip"
    epoch: int | None = None
    source: str | None = None
    revision: str | None = None
    version: str | None = None

    @property
    def mtime(self) -> int:
        return source_date_epoch() if self.epoch is None else self.epoch

    @property
    def media_type(self) -> str:
        return layer_media_type(self.compression, self.format)


@dataclass(frozen=True)
class Base:
    """A resolved base image, the name it is recorded under in annotations, and — for an image of
    the project — what its steps left (``states`` by step kind, its OS packages, its inventory)."""

    image: Image
    name: str
    states: Mapping[str, Any] = field(default_factory=dict)
    os_packages: Mapping[str, str] = field(default_factory=dict)
    inventory: Inventory | None = None


@dataclass
class PlannedImage:
    """An image with everything decided but its new layers: locked, fetched, its layers described.

    ``draft`` has the documents the image will have minus its new layers: enough for the images built
    on it to plan (they read its config), long before any layer is written.
    """

    spec: ImageSpec
    platform: Platform
    base: Base | None
    layers: list[StepLayer]
    draft: Image
    results: list[StepResult]
    states: dict[str, Any]
    os_packages: dict[str, str]
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name

    def result(self, kind: str) -> StepResult | None:
        return next((r for r in self.results if r.kind == kind), None)

    def as_base(self, name: str, image: Image | None = None, inventory: Inventory | None = None) -> Base:
        """This image as the base of another (its draft until it is built)."""
        return Base(image or self.draft, name, self.states, self.os_packages, inventory)


@dataclass
class BuiltImage:
    """One platform image, built: its documents, new layers, inventory and what its steps did."""

    name: str
    platform: Platform
    image: Image
    base: Base | None
    layers: list[BuiltLayer] = field(default_factory=list)
    inventory: Inventory | None = None
    results: list[StepResult] = field(default_factory=list)
    states: Mapping[str, Any] = field(default_factory=dict)
    os_packages: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def reused(self) -> int:
        return sum(1 for layer in self.layers if layer.reused)

    @property
    def downloaded(self) -> int:
        return sum(r.downloaded for r in self.results)

    def added(self, kind: str) -> int:
        """How many packages (``debian``) or distributions (``python``) it adds to its base."""
        return sum(r.added for r in self.results if r.kind == kind)

    def as_base(self, name: str) -> Base:
        return Base(self.image, name, self.states, self.os_packages, self.inventory)


def resolve_base(
    text: str,
    platform: Platform,
    store: BlobStore,
    registries: Registries,
    *,
    project_root: Path,
    siblings: Mapping[str, Base] | None = None,
) -> Base | None:
    """The image ``from`` names: ``scratch``, an image of the project (already planned, in
    ``siblings``), ``oci:DIR[:NAME]`` (a local layout), or a registry reference. ``debian:RELEASE``
    has no base image: its packages make the whole root filesystem."""
    if text == SCRATCH or is_debian_base(text):
        return None
    if siblings and text in siblings:
        return siblings[text]
    if text.startswith("oci:"):
        path_text, _, ref_name = text[4:].partition(":")
        root = (project_root / path_text).absolute()
        return Base(read_layout_image(root, ref_name or None, platform, store), text)
    ref = Reference.parse(text)
    return Base(pull_image(ref, platform, store, registries), str(ref))


def plan_image(
    spec: ImageSpec,
    platform: Platform,
    *,
    steps: Sequence[Step],
    store: BlobStore,
    registries: Registries,
    options: BuildOptions,
    project_root: Path,
    lock_section: Callable[[str], dict[str, Any] | None],
    siblings: Mapping[str, Base] | None = None,
    fetch: bool = True,
    download: bool = True,
) -> PlannedImage:
    """Resolve the base of ``spec`` for ``platform`` and run its steps: each locks its inputs and,
    with ``fetch``, downloads what its new layers need and describes them (packages at the bottom,
    then Python, then the image's own files). Without ``fetch`` nothing is downloaded or described:
    ``lamina lock`` and ``lamina check``. With ``fetch`` but not ``download``, the layers are described
    and nothing is downloaded: the plan ``lamina build --dry-run`` shows."""
    started = time.monotonic()
    base = resolve_base(spec.base, platform, store, registries, project_root=project_root, siblings=siblings)
    ctx = StepContext(
        spec=spec,
        platform=platform,
        store=store,
        registries=registries,
        base_image=base.image if base else None,
        base_name=base.name if base else None,
        base_env=env_of(base.image.config.json().get("config", {})) if base else {},
        lock_section=lock_section,
        media_type=options.media_type,
        mtime=options.mtime,
        fetch=fetch,
        download=download,
        states=dict(base.states) if base else {},
        os_packages=dict(base.os_packages) if base else {},
    )
    results = run_steps(steps, ctx)
    cmd = next((r.cmd for r in results if r.cmd is not None), None)
    run = replace(spec.run, env={**ctx.env, **spec.run.env})  # what lamina.toml says wins over what lamina sets
    if cmd is not None:
        run = replace(run, cmd=cmd)
    healthcheck = next((r.healthcheck for r in results if r.healthcheck is not None), None)
    if healthcheck is not None and run.healthcheck is None:
        run = replace(run, healthcheck=healthcheck)
    labels = {k: v for r in results for k, v in r.labels.items()}
    if labels:
        run = replace(run, labels={**labels, **run.labels})
    spec = replace(spec, run=run)
    layers = [layer for r in results for layer in r.layers]
    check_budget(spec.name, len(base.image.layers) if base else 0, len(layers))  # every step's layers
    draft = assemble(spec, platform, base, [], options)
    store.put_bytes(draft.config.data, draft.config.digest)  # images planned on it may read its config as a blob
    return PlannedImage(spec, platform, base, layers, draft, results, ctx.states, ctx.os_packages,
                        time.monotonic() - started)


def finish_image(planned: PlannedImage, base: Base | None, built: list[BuiltLayer], *, store: BlobStore,
                 options: BuildOptions, seconds: float = 0.0) -> BuiltImage:
    """The image's documents on its (now built) base with its built layers, stored and recorded with
    its inventory."""
    image = assemble(planned.spec, planned.platform, base, built, options)
    store.put_bytes(image.config.data, image.config.digest)
    store.put_bytes(image.manifest.data, image.manifest.digest)
    store.record_image(f"built {planned.name} {planned.platform}", image.digest, image.manifest.media_type)
    inventory = inventory_of(planned, base, built, image)
    save_inventory(store, inventory)
    return BuiltImage(planned.name, planned.platform, image, base, built, inventory, planned.results,
                      planned.states, planned.os_packages, planned.seconds + seconds)


def inventory_of(planned: PlannedImage, base: Base | None, built: Sequence[BuiltLayer], image: Image) -> Inventory:
    """The base's inventory plus what each new layer holds, placed at the layer's digest."""
    own: list[Placed] = []
    for layer, result in zip(planned.layers, built, strict=True):
        own += placed(layer.components, layer=result.layer.digest, diff_id=result.layer.diff_id,
                      added_by=planned.name)
    facts = dict(base.inventory.extra) if base and base.inventory else {}
    for r in planned.results:
        facts.update(r.facts)
    empty = Inventory(planned.name, str(planned.platform), digest=image.digest,
                      base=base.name if base else "", base_digest=base.image.digest if base else "", extra=facts)
    return empty.on(base.inventory if base else None, own)


def assemble(spec: ImageSpec, platform: Platform, base: Base | None, built: list[BuiltLayer],
             options: BuildOptions) -> Image:
    """The config and manifest of ``spec`` for ``platform`` on top of ``base`` with the ``built`` layers."""
    created = rfc3339(options.mtime)
    base_config = base.image.config.json() if base else {}
    if base and base_config.get("architecture") not in (None, platform.architecture):
        raise LaminaError(
            f"image {spec.name!r} is for {platform} but its base {base.name} is "
            f"{base_config.get('os')}/{base_config.get('architecture')}",
            hint="set the image's platforms to the base's, or pick a base for that platform",
        )
    base_layers = [_convert(d, options.format) for d in base.image.layers] if base else []
    layers = base_layers + [Descriptor(b.layer.media_type, b.layer.digest, b.layer.size) for b in built]
    diff_ids = (base.image.diff_ids if base else []) + [b.layer.diff_id for b in built]
    history = list(base_config.get("history", []))
    history += [{"created": created, "created_by": f"lamina: {b.description}", "comment": "lamina"} for b in built]
    config = build_config(
        platform=platform,
        run=merge_run_config(base_config.get("config", {}), spec.run),
        diff_ids=diff_ids,
        history=history,
        created=created,
        fmt=options.format,
    )
    annotations = {ANNOTATION_CREATED: created, **_optional_annotations(options)}
    if base:
        annotations[ANNOTATION_BASE_NAME] = base.name
        annotations[ANNOTATION_BASE_DIGEST] = base.image.digest
    annotations.update(spec.annotations)
    manifest = build_manifest(config, layers, annotations=annotations, fmt=options.format)
    remote = {**(base.image.remote_blobs if base else {}),
              **{b.layer.digest: b.origin for b in built if b.origin is not None}}
    if base is None or base.image.origin is None:
        return Image(manifest, config, remote_blobs=remote)
    return Image(manifest, config, base.image.origin, base.image.origin_blobs, remote)


def _optional_annotations(options: BuildOptions) -> dict[str, str]:
    pairs = ((ANNOTATION_SOURCE, options.source), (ANNOTATION_REVISION, options.revision), (ANNOTATION_VERSION, options.version))
    return {key: value for key, value in pairs if value}


def _convert(desc: Descriptor, fmt: Format) -> Descriptor:
    return Descriptor(convert_layer_type(desc.media_type, fmt), desc.digest, desc.size)
