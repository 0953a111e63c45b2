"""Image references such as ``python:3.12``, ``ghcr.io/acme/app:v1`` or ``localhost:5000/x@sha256:...``.

Parsing follows Docker's rules: the first path component names a registry only if it contains
``.`` or ``:`` or is ``localhost``; otherwise the image is on Docker Hub, where a one-component
name lives under ``library/``. A reference with neither tag nor digest gets the tag ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from lamina.errors import LaminaError
from lamina.oci.digest import is_digest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = {"docker.io", "index.docker.io"}

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST_RE = re.compile(
    r"^(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)
_MAX_NAME = 255


def _bad(text: str, why: str) -> LaminaError:
    return LaminaError(
        f"invalid image reference {text!r}: {why}",
        hint="write it as [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. ghcr.io/acme/app:1.0",
    )


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; ``str()`` gives the canonical ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text`` with Docker's rules; raise :class:`LaminaError` saying what is wrong."""
        if not text or text != text.strip() or any(c.isspace() for c in text):
            raise _bad(text, "it is empty or contains whitespace")
        name, digest = text, None
        if "@" in text:
            name, digest = text.rsplit("@", 1)
            if not is_digest(digest):
                raise _bad(text, f"{digest!r} is not a sha256 digest (sha256: and 64 lowercase hex digits)")
        tag = None
        slash = name.rfind("/")
        colon = name.rfind(":")
        if colon > slash:
            name, tag = name[:colon], name[colon + 1 :]
            if not _TAG_RE.match(tag):
                raise _bad(text, f"tag {tag!r} may only hold letters, digits, '_', '.', '-' (at most 128)")
        registry, repository = _split_registry(name)
        _check_registry(text, registry)
        _check_repository(text, repository)
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry, repository, tag, digest)

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in a registry URL: the digest if set, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def api_host(self) -> str:
        """The host to send API requests to (Docker Hub's API lives on ``registry-1.docker.io``)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_tag(self, tag: str) -> Reference:
        """The same repository at ``tag`` (any digest is dropped: a new tag names new content)."""
        if not _TAG_RE.match(tag):
            raise _bad(f"{self.registry}/{self.repository}:{tag}", f"tag {tag!r} is not valid")
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """The same reference pinned to ``digest`` (the tag, if any, is kept for readability)."""
        if not is_digest(digest):
            raise _bad(f"{self.registry}/{self.repository}@{digest}", "not a sha256 digest")
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_registry_host(component: str) -> bool:
    """Whether the first component of a name is a registry host (Docker's rule): it has a ``.`` or a
    ``:`` or is ``localhost``. ``ghcr.io/acme/app`` names a host; ``acme/app`` is on Docker Hub."""
    return "." in component or ":" in component or component == "localhost"


def names_registry(name: str) -> bool:
    """Whether ``name`` (``host/repo`` or ``repo``) starts with a registry host."""
    first, sep, _ = name.partition("/")
    return bool(sep) and is_registry_host(first)


def _split_registry(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and is_registry_host(first):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return registry, repository


def _check_registry(text: str, registry: str) -> None:
    if not _HOST_RE.match(registry):
        raise _bad(text, f"{registry!r} is not a valid registry host[:port]")


def _check_repository(text: str, repository: str) -> None:
    if not repository:
        raise _bad(text, "the repository name is empty")
    if len(repository) > _MAX_NAME:
        raise _bad(text, f"the repository name is longer than {_MAX_NAME} characters")
    for component in repository.split("/"):
        if not _COMPONENT_RE.match(component):
            if component.lower() != component and _COMPONENT_RE.match(component.lower()):
                raise _bad(text, "repository names must be lowercase")
            raise _bad(
                text,
                f"repository component {component!r} must be lowercase letters and digits, "
                "separated by '.', '_', '__' or '-'",
            )
