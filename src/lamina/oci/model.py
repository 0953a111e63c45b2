"""Image documents: descriptors, configs, manifests and indexes, OCI by default or Docker schema2.

Every document is serialized exactly once, into a :class:`Document`; its bytes are what is hashed,
stored, written to layouts and pushed. Nothing re-serializes a document after hashing it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lamina.errors import LaminaError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import sha256_digest

Format = Literal["oci", "docker"]

ANNOTATION_CREATED = "org.opencontainers.image.created"
ANNOTATION_SOURCE = "org.opencontainers.image.source"
ANNOTATION_REVISION = "org.opencontainers.image.revision"
ANNOTATION_VERSION = "org.opencontainers.image.version"
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"


def rfc3339(epoch: int) -> str:
    """``2024-01-31T12:00:00Z`` for a Unix time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Document:
    """A JSON document as the exact bytes that name it."""

    data: bytes
    media_type: str

    @classmethod
    def of(cls, obj: Mapping[str, Any], media_type: str) -> Document:
        """Serialize ``obj`` once, compactly, keeping its key order."""
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        return cls(text.encode("utf-8"), media_type)

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def json(self) -> dict[str, Any]:
        return json.loads(self.data)

    def descriptor(self, **extra: Any) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, **extra)


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/amd64``, ``linux/arm64/v8``, or just ``arm64``."""
        parts = text.strip().split("/")
        if len(parts) == 1 and parts[0]:
            return cls(architecture=_normalize_arch(parts[0]))
        if 2 <= len(parts) <= 3 and all(parts):
            return cls(parts[0], _normalize_arch(parts[1]), parts[2] if len(parts) == 3 else None)
        raise LaminaError(f"bad platform {text!r}", hint="write it as os/arch, e.g. linux/amd64 or linux/arm64")

    def matches(self, other: Mapping[str, Any]) -> bool:
        """Does an index entry's ``platform`` object describe this platform?"""
        if other.get("os") != self.os or _normalize_arch(other.get("architecture", "")) != self.architecture:
            return False
        theirs = other.get("variant")
        if self.variant is None:
            return theirs in (None, "v8") if self.architecture == "arm64" else True
        return theirs == self.variant

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    """The platform of this machine (``linux/amd64`` on x86_64): what a family is built for by default."""
    import platform as _platform

    return Platform("linux", _normalize_arch(_platform.machine().lower()))


def _normalize_arch(arch: str) -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Descriptor:
        platform = obj.get("platform")
        return cls(
            obj["mediaType"],
            obj["digest"],
            int(obj["size"]),
            obj.get("annotations") or None,
            Platform(platform["os"], platform["architecture"], platform.get("variant")) if platform else None,
        )


@dataclass(frozen=True)
class HealthCheck:
    """Docker's HEALTHCHECK, kept in the config (podman and Docker honour it)."""

    test: Sequence[str]
    interval_s: float = 30
    timeout_s: float = 30
    start_period_s: float = 0
    retries: int = 3

    def to_json(self) -> dict[str, Any]:
        ns = 1_000_000_000
        return {
            "Test": list(self.test),
            "Interval": int(self.interval_s * ns),
            "Timeout": int(self.timeout_s * ns),
            "StartPeriod": int(self.start_period_s * ns),
            "Retries": self.retries,
        }


@dataclass(frozen=True)
class RunConfig:
    """What a container of the image runs with (the config's ``config`` object)."""

    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    workdir: str | None = None
    user: str | None = None
    exposed_ports: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    healthcheck: HealthCheck | None = None
    stop_signal: str | None = None


def env_pairs(entries: Iterable[object] | None) -> dict[str, str]:
    """An image config's ``Env`` (``KEY=VALUE`` strings) as a dict: a bare ``KEY`` maps to ``""``, the last wins."""
    return dict(str(e).partition("=")[::2] for e in entries or [])


def env_of(config: Mapping[str, Any]) -> dict[str, str]:
    """The ``Env`` of a config's ``config`` object (as in an image config's ``"config"``), as a dict."""
    return env_pairs(config.get("Env"))


def merge_run_config(base: Mapping[str, Any], run: RunConfig) -> dict[str, Any]:
    """The base image's ``config`` object with ours applied on top, as Dockerfile instructions do.

    Env entries replace same-named ones; labels and exposed ports are added to; setting an
    entrypoint clears the base's cmd (Docker's rule) unless a cmd is also given.
    """
    out: dict[str, Any] = {k: v for k, v in base.items() if v is not None}
    env = env_pairs(base.get("Env"))
    env.update(run.env)
    if env:
        out["Env"] = [f"{k}={v}" for k, v in env.items()]
    if run.entrypoint is not None:
        out["Entrypoint"] = list(run.entrypoint)
        out.pop("Cmd", None)
    if run.cmd is not None:
        out["Cmd"] = list(run.cmd)
    if run.workdir is not None:
        out["WorkingDir"] = run.workdir
    if run.user is not None:
        out["User"] = run.user
    if run.exposed_ports:
        ports = dict(base.get("ExposedPorts") or {})
        ports.update({p: {} for p in run.exposed_ports})
        out["ExposedPorts"] = dict(sorted(ports.items()))
    if run.labels:
        labels = dict(base.get("Labels") or {})
        labels.update(run.labels)
        out["Labels"] = dict(sorted(labels.items()))
    if run.healthcheck is not None:
        out["Healthcheck"] = run.healthcheck.to_json()
    if run.stop_signal is not None:
        out["StopSignal"] = run.stop_signal
    return out


def build_config(
    *,
    platform: Platform,
    run: Mapping[str, Any],
    diff_ids: Sequence[str],
    history: Sequence[Mapping[str, Any]],
    created: str,
    fmt: Format = "oci",
) -> Document:
    """The image config document."""
    obj: dict[str, Any] = {"created": created, "architecture": platform.architecture, "os": platform.os}
    if platform.variant:
        obj["variant"] = platform.variant
    obj["config"] = dict(run)
    obj["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    obj["history"] = [dict(h) for h in history]
    return Document.of(obj, mt.OCI_CONFIG if fmt == "oci" else mt.DOCKER_CONFIG)


def layer_media_type(compression: str, fmt: Format) -> str:
    if fmt == "docker":
        if not compression.startswith("gzip"):
            raise LaminaError(
                f"Docker schema2 images cannot hold {compression} layers",
                hint="use gzip with format = \"docker\", or the OCI format for zstd",
            )
        return mt.DOCKER_LAYER_GZIP
    return mt.OCI_LAYER_ZSTD if compression == "zstd" else mt.OCI_LAYER_GZIP


def convert_layer_type(media_type: str, fmt: Format) -> str:
    """The same layer blob described in the other format (the bytes do not change)."""
    oci_to_docker = {mt.OCI_LAYER_GZIP: mt.DOCKER_LAYER_GZIP}
    docker_to_oci = {mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP, mt.DOCKER_FOREIGN_LAYER_GZIP: mt.OCI_LAYER_GZIP}
    table = oci_to_docker if fmt == "docker" else docker_to_oci
    if fmt == "docker" and media_type not in (*table, mt.DOCKER_LAYER_GZIP):
        raise LaminaError(
            f"the base image has a {media_type} layer, which Docker schema2 cannot describe",
            hint="build in the OCI format (the default)",
        )
    return table.get(media_type, media_type)


def build_manifest(
    config: Document,
    layers: Sequence[Descriptor],
    *,
    annotations: Mapping[str, str] | None = None,
    fmt: Format = "oci",
) -> Document:
    """The image manifest. Docker schema2 has no annotations: they are dropped there."""
    media_type = mt.OCI_MANIFEST if fmt == "oci" else mt.DOCKER_MANIFEST
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor().to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations and fmt == "oci":
        obj["annotations"] = dict(sorted(annotations.items()))
    return Document.of(obj, media_type)


def build_index(
    manifests: Sequence[Descriptor], *, annotations: Mapping[str, str] | None = None, fmt: Format = "oci"
) -> Document:
    """An image index (Docker: a manifest list) over platform-specific manifests."""
    media_type = mt.OCI_INDEX if fmt == "oci" else mt.DOCKER_MANIFEST_LIST
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations and fmt == "oci":
        obj["annotations"] = dict(sorted(annotations.items()))
    return Document.of(obj, media_type)


@dataclass(frozen=True)
class Image:
    """A built or pulled single-platform image: its two documents and its layer descriptors.

    ``origin`` names a registry repository (``host/repo``) that holds the blobs ``origin_blobs``
    (those of the base the image came from): they can be fetched from there, or cross-mounted
    into another repository of the same registry, instead of being uploaded. ``remote_blobs`` does
    the same for single blobs (digest → ``host/repo``): layers the registry cache had, which were
    neither built nor downloaded here.
    """

    manifest: Document
    config: Document
    origin: str | None = None
    origin_blobs: frozenset[str] = frozenset()
    remote_blobs: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def source_of(self, digest: str) -> str | None:
        """The registry repository (``host/repo``) a blob not in the store can come from, if any."""
        if digest in self.remote_blobs:
            return self.remote_blobs[digest]
        return self.origin if digest in self.origin_blobs else None

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_json(layer) for layer in self.manifest.json()["layers"]]

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.json()["rootfs"]["diff_ids"])

    @property
    def format(self) -> Format:
        return "docker" if self.manifest.media_type == mt.DOCKER_MANIFEST else "oci"

    def blobs(self) -> list[Descriptor]:
        """Config first, then layers: everything a copy of this image must carry."""
        return [self.config.descriptor(), *self.layers]

    @property
    def platform(self) -> Platform:
        """The platform its config states."""
        config = self.config.json()
        return Platform(config.get("os", "linux"), config.get("architecture", "amd64"), config.get("variant"))


@dataclass(frozen=True)
class Index:
    """A multi-platform image: an index (Docker: a manifest list) over one :class:`Image` per platform.

    Like :class:`Image`, it carries the exact bytes of its document; its images are in the order of
    its ``manifests``.
    """

    document: Document
    images: tuple[Image, ...]

    @classmethod
    def of(cls, images: Sequence[Image], *, annotations: Mapping[str, str] | None = None) -> Index:
        """The index over ``images`` (each described with the platform its config states)."""
        if not images:
            raise ValueError("an index needs at least one image")
        fmt = images[0].format
        manifests = [image.manifest.descriptor(platform=image.platform) for image in images]
        return cls(build_index(manifests, annotations=annotations, fmt=fmt), tuple(images))

    @property
    def digest(self) -> str:
        return self.document.digest

    @property
    def media_type(self) -> str:
        return self.document.media_type

    @property
    def platforms(self) -> list[Platform]:
        return [image.platform for image in self.images]

    def blobs(self) -> list[Descriptor]:
        """Every blob of every image, each once (shared layers are shared)."""
        seen: dict[str, Descriptor] = {}
        for image in self.images:
            for desc in image.blobs():
                seen.setdefault(desc.digest, desc)
        return list(seen.values())


#: What an output or a registry receives: one platform's image, or an index over several.
Artifact = Image | Index


def images_of(artifact: Artifact) -> tuple[Image, ...]:
    return artifact.images if isinstance(artifact, Index) else (artifact,)
