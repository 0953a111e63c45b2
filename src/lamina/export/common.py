"""Rendering shared by the Dockerfiles, the scripts and the bake file: headers, image references, build args."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from lamina.config import CODE_EXCLUDES, ImageSpec
from lamina.errors import LaminaError
from lamina.export.model import MARK, Export, ExportImage
from lamina.oci.reference import names_registry


def check_exportable(export: Export, image: ExportImage) -> None:
    spec = image.spec
    if spec.base.startswith("oci:"):
        raise LaminaError(f"image {spec.name!r} is built on an OCI layout ({spec.base}), which a Dockerfile cannot name",
                          hint="push that image to a registry and use its reference as `from`")
    if spec.uses_python and image.python is None:
        raise LaminaError(f"the Python packages of {spec.name!r} are missing from lamina.lock",
                          hint="run `lamina lock` (or `lamina export --lock`)")
    if spec.packages and image.debian is None:
        raise LaminaError(f"the Debian packages of {spec.name!r} are missing from lamina.lock",
                          hint="run `lamina lock` (or `lamina export --lock`)")


def header(comment: str, what: str) -> list[str]:
    return [f"{comment} {MARK} from lamina.toml and lamina.lock ({what}): do not edit.",
            f"{comment} Regenerate with `lamina export dockerfiles`; `lamina export dockerfiles --check` tells when it is stale."]


def locked_dists(image: ExportImage) -> list[Mapping]:
    return list(image.python.get("dists", [])) if image.python else []


def tag_expr(export: Export, spec: ImageSpec) -> str:
    """The tag of an image as the Dockerfiles and scripts write it (a build arg when it is one)."""
    config = export.config
    if spec.tags:
        return spec.tags[0]
    if spec.service is None and spec.base_version:  # a base moved on its own by `lamina update`
        return spec.base_version
    if spec.service is None:
        return "${BASE_VERSION}" if config.base_version else (config.version or "latest")
    return "${VERSION}"


def ref_expr(export: Export, spec: ImageSpec, tag: str | None = None) -> str:
    """``${REGISTRY}/${OWNER}/NAME:TAG`` (literal where lamina.toml gives the image its own repository)."""
    tag = tag or tag_expr(export, spec)
    if spec.repository:
        if names_registry(spec.repository):
            return f"{spec.repository}:{tag}"
        return f"${{REGISTRY}}/{spec.repository}:{tag}"
    owner = "${OWNER}/" if export.config.owner else ""
    return f"${{REGISTRY}}/{owner}{spec.name}:{tag}"


def build_args(export: Export) -> list[tuple[str, str]]:
    config = export.config
    assert config.registry is not None
    args = [("REGISTRY", config.registry)]
    if config.owner:
        args.append(("OWNER", config.owner))
    args.append(("BASE_VERSION", config.base_version or config.version or "latest"))
    return args


def as_json(items: Sequence[str]) -> str:
    return json.dumps(list(items), ensure_ascii=False)


def bases_and_services(export: Export) -> tuple[list[str], list[str]]:
    bases = [n for n, i in export.images.items() if i.spec.service is None]
    services = [n for n, i in export.images.items() if i.spec.service is not None]
    return bases, services


def dockerignore(export: Export) -> str:
    """What lamina leaves out of the code it copies (and its own output), for the build context."""
    lines = [f"# {MARK} from lamina.toml: what lamina leaves out of the code layers it makes.",
             "# BuildKit reads NAME.Dockerfile.dockerignore next to each Dockerfile; buildah/podman: --ignorefile."]
    lines += ["**/" + pattern for pattern in CODE_EXCLUDES]
    output = export.config.output
    kind, _, where = output.partition(":")
    if kind in ("oci", "docker-archive") and where and not Path(where).is_absolute():
        lines.append(Path(where).as_posix().strip("/"))
    return "\n".join(lines) + "\n"
