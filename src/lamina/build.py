"""Build one image of ``lamina.toml``: resolve its base, make its layers, write its config and manifest.

Building never knows where the image goes; :mod:`lamina.publish` does that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from lamina.config import CopySpec, ImageSpec
from lamina.debian import is_debian_base
from lamina.debian.image import Debian, DebianState, debian_env, uses_debian
from lamina.errors import LaminaError
from lamina.python.image import PythonSession, PythonState
from lamina.oci.compress import Compression
from lamina.oci.layer import BuiltLayer, LayerSpec, build_layers
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
    layer_media_type,
    merge_run_config,
    rfc3339,
)
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries, pull_image
from lamina.oci.store import BlobStore
from lamina.oci.tar import Entry, source_date_epoch, tree_entries

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


@dataclass(frozen=True)
class Base:
    """A resolved base image and the name it is recorded under in annotations (and, for a
    Debian-based image of the project, what it has installed)."""

    image: Image
    name: str
    debian: DebianState | None = None
    python: PythonState | None = None


@dataclass
class BuiltImage:
    name: str
    image: Image
    base: Base | None
    layers: list[BuiltLayer] = field(default_factory=list)
    seconds: float = 0.0
    debian: DebianState | None = None
    packages: int = 0
    downloaded: int = 0
    python: PythonState | None = None
    dists: int = 0

    @property
    def reused(self) -> int:
        return sum(1 for layer in self.layers if layer.reused)


def resolve_base(
    text: str,
    platform: Platform,
    store: BlobStore,
    registries: Registries,
    *,
    project_root: Path,
    siblings: Mapping[str, Base] | None = None,
) -> Base | None:
    """The image ``from`` names: ``scratch``, an image of the project (already built, in
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


def copy_layer(copy: CopySpec) -> LayerSpec:
    """One layer per copy: a change to one source rebuilds only its layer."""

    def entries() -> list[Entry]:
        return tree_entries(copy.src, copy.dest, uid=copy.uid, gid=copy.gid, mode=copy.mode, exclude=copy.exclude)

    identity = f"copy\0{copy.src}\0{copy.dest}\0{copy.uid}:{copy.gid}\0{copy.mode}\0{sorted(copy.exclude)}"
    return LayerSpec(entries, f"copy {copy.src.name} → {copy.dest}", identity=identity)


def symlink_layer(links: Mapping[str, str]) -> LayerSpec:
    """One layer with the image's declared symbolic links (path → target)."""
    return LayerSpec(lambda: [Entry.symlink(path, target) for path, target in links.items()], "symlinks")


def layer_specs(spec: ImageSpec) -> list[LayerSpec]:
    specs = [copy_layer(c) for c in spec.copies]
    if spec.symlinks:
        specs.append(symlink_layer(spec.symlinks))
    return specs


@dataclass
class PlannedImage:
    """An image with everything decided but its new layers: locked, fetched, its layers described.

    ``draft`` has the documents the image will have minus its new layers: enough for the images built
    on it to plan (they read its config), long before any layer is written.
    """

    spec: ImageSpec
    base: Base | None
    layers: list[LayerSpec]
    draft: Image
    debian: DebianState | None = None
    python: PythonState | None = None
    packages: int = 0
    dists: int = 0
    downloaded: int = 0
    seconds: float = 0.0


def plan_image(
    spec: ImageSpec,
    *,
    store: BlobStore,
    registries: Registries,
    options: BuildOptions,
    project_root: Path,
    siblings: Mapping[str, Base] | None,
    debian: Debian,
    python: PythonSession,
    fetch: bool = True,
) -> PlannedImage:
    """Resolve or check the lock of ``spec``, and, with ``fetch``, download what its new layers need
    and describe them (package layers at the bottom, then Python, then the image's own copies).

    Without ``fetch`` nothing is downloaded or described: ``lamina lock`` and ``lamina check``.
    """
    started = time.monotonic()
    user_env = dict(spec.run.env)  # what lamina.toml says wins over what lamina sets
    base = resolve_base(spec.base, spec.platform, store, registries, project_root=project_root, siblings=siblings)
    base_env = _env_of(base.image.config.json().get("config", {})) if base else {}
    media_type = layer_media_type(options.compression, options.format)
    state = base.debian if base else None
    py_state = base.python if base else None
    env: dict[str, str] = {}
    layers: list[LayerSpec] = []
    packages = dists = downloaded = 0
    if uses_debian(spec):
        if fetch:
            prepared = debian.prepare(spec, base, media_type=media_type, mtime=options.mtime, registries=registries,
                                      base_env=base_env)
            state, layers = prepared.state, list(prepared.layers)
            packages, downloaded = len(prepared.packages), prepared.downloaded
            env.update(prepared.env)
        else:
            _, state = debian.lock_image(spec, base, registries)
            env.update(debian_env(spec, state, base_env))
    if spec.uses_python:
        base_image, debian_python = (base.image if base else None), _has_debian_python(state)
        if fetch:
            py = python.prepare(spec, base_image, py_state, own_env=env, debian_python=debian_python,
                                media_type=media_type, mtime=options.mtime)
            py_state, dists, downloaded = py.state, len(py.added), downloaded + py.downloaded
            layers += py.layers
            env.update(py.env)
        else:
            py_state, py_env = python.lock_only(spec, base_image, py_state, own_env=env, debian_python=debian_python)
            env.update(py_env)
    spec = replace(spec, run=replace(spec.run, env={**env, **user_env}))
    if fetch:
        layers += layer_specs(spec)
    draft = assemble(spec, base, [], options)
    store.put_bytes(draft.config.data, draft.config.digest)  # images planned on it may read its config as a blob
    return PlannedImage(spec, base, layers, draft, state, py_state, packages, dists, downloaded,
                        time.monotonic() - started)


def finish_image(planned: PlannedImage, base: Base | None, built: list[BuiltLayer], *, store: BlobStore,
                 options: BuildOptions, seconds: float = 0.0) -> BuiltImage:
    """The image's documents on its (now built) base with its built layers, stored and recorded."""
    image = assemble(planned.spec, base, built, options)
    store.put_bytes(image.config.data, image.config.digest)
    store.put_bytes(image.manifest.data, image.manifest.digest)
    store.record_image(f"built {planned.spec.name}", image.digest, image.manifest.media_type)
    return BuiltImage(planned.spec.name, image, base, built, planned.seconds + seconds, planned.debian,
                      planned.packages, planned.downloaded, planned.python, planned.dists)


def build_image(
    spec: ImageSpec,
    *,
    store: BlobStore,
    registries: Registries,
    options: BuildOptions,
    project_root: Path,
    debian: Debian,
    python: PythonSession,
    siblings: Mapping[str, Base] | None = None,
    on_layer: Callable[[BuiltLayer], None] | None = None,
) -> BuiltImage:
    """Plan, build and finish one image (``siblings``: the project's images built before it).

    :class:`lamina.family.Family` does the same for many images, with every layer in one pool.
    """
    planned = plan_image(spec, store=store, registries=registries, options=options, project_root=project_root,
                         siblings=siblings, debian=debian, python=python)
    started = time.monotonic()
    media_type = layer_media_type(options.compression, options.format)
    built = build_layers(store, planned.layers, compression=options.compression, media_type=media_type,
                         mtime=options.mtime, on_done=on_layer)
    return finish_image(planned, planned.base, built, store=store, options=options,
                        seconds=time.monotonic() - started)


def _has_debian_python(state: DebianState | None) -> bool:
    return state is not None and any(name.startswith("python3.") for name in state.installed)



def _env_of(config: Mapping[str, object]) -> dict[str, str]:
    pairs = (str(e).partition("=") for e in config.get("Env") or [])  # type: ignore[union-attr]
    return {k: v for k, _, v in pairs}


def assemble(spec: ImageSpec, base: Base | None, built: list[BuiltLayer], options: BuildOptions) -> Image:
    """The config and manifest of ``spec`` on top of ``base`` with the ``built`` layers."""
    created = rfc3339(options.mtime)
    base_config = base.image.config.json() if base else {}
    if base and base_config.get("architecture") not in (None, spec.platform.architecture):
        raise LaminaError(
            f"image {spec.name!r} is for {spec.platform} but its base {base.name} is "
            f"{base_config.get('os')}/{base_config.get('architecture')}",
            hint="set the image's platform to the base's, or pick a base for that platform",
        )
    base_layers = [_convert(d, options.format) for d in base.image.layers] if base else []
    layers = base_layers + [Descriptor(b.layer.media_type, b.layer.digest, b.layer.size) for b in built]
    diff_ids = (base.image.diff_ids if base else []) + [b.layer.diff_id for b in built]
    history = list(base_config.get("history", []))
    history += [{"created": created, "created_by": f"lamina: {b.description}", "comment": "lamina"} for b in built]
    config = build_config(
        platform=spec.platform,
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
    if base is None or base.image.origin is None:
        return Image(manifest, config)
    return Image(manifest, config, base.image.origin, base.image.origin_blobs)


def _optional_annotations(options: BuildOptions) -> dict[str, str]:
    pairs = ((ANNOTATION_SOURCE, options.source), (ANNOTATION_REVISION, options.revision), (ANNOTATION_VERSION, options.version))
    return {key: value for key, value in pairs if value}


def _convert(desc: Descriptor, fmt: Format) -> Descriptor:
    return Descriptor(convert_layer_type(desc.media_type, fmt), desc.digest, desc.size)
