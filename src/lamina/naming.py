"""What every image is called: its tag, its push target, its name in outputs and as a base.

One place for the seed's naming rules, used by building, publishing, export and the CLI:

- a base (an image that is not a service) is tagged its own ``base_version``, else the project's, when set (the seed's
  ``BASE_VERSION``), a service the build's tag (``--tag``, else ``version``); an image's own ``tags``
  win; ``latest`` when nothing is set;
- it is pushed to ``registry/owner/name`` unless ``repository`` says otherwise (a repository that
  starts with a host, by Docker's rule in :func:`lamina.oci.reference.names_registry`, keeps it);
- in an OCI layout or docker-archive it is ``name:tag``; as the base of another image, its push
  target when the family has a registry, else ``name:tag``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lamina.errors import ConfigError
from lamina.oci.reference import Reference, names_registry

if TYPE_CHECKING:
    from lamina.config.model import ImageSpec, ProjectConfig


def own_tag(config: ProjectConfig, spec: ImageSpec) -> str:
    """An image's tag when the build does not give one: its own ``tags``, else for bases their own
    ``base_version`` or the project's when set, else ``version``, else ``latest``."""
    if spec.tags:
        return spec.tags[0]
    if spec.service is None and (spec.base_version or config.base_version):
        return spec.base_version or config.base_version  # type: ignore[return-value]
    return config.version or "latest"


def tag_for(config: ProjectConfig, spec: ImageSpec, build_tag: str | None) -> str:
    """The tag an image gets in this build: services take the build's tag, bases keep their own."""
    if spec.service is not None and build_tag:
        return build_tag
    return own_tag(config, spec)


def push_target(config: ProjectConfig, spec: ImageSpec, tag: str | None = None) -> Reference:
    """Where ``spec`` is pushed: ``registry/owner/name:tag`` unless configured otherwise."""
    repository = spec.repository or "/".join(p for p in (config.owner, spec.name) if p)
    if not names_registry(repository):
        if config.registry is None:
            raise ConfigError(
                f"image {spec.name!r} has no registry to push to",
                hint="set `registry` in [project], LAMINA_REGISTRY, or pass --registry",
            )
        repository = f"{config.registry}/{repository}"
    return Reference.parse(repository).with_tag(tag or own_tag(config, spec))


def output_name(config: ProjectConfig, spec: ImageSpec, build_tag: str | None) -> str:
    """The image's name in an OCI layout or docker-archive: ``name:tag``."""
    return f"{spec.name}:{tag_for(config, spec, build_tag)}"


def base_name(config: ProjectConfig, spec: ImageSpec, build_tag: str | None, *, pushing: bool) -> str:
    """How an image of the project is named as the base of another (its ``base.name`` annotation)."""
    if pushing or config.registry:
        return str(push_target(config, spec, tag_for(config, spec, build_tag)))
    return output_name(config, spec, build_tag)
