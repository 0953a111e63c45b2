"""The one interface every package source implements: a *step* of an image's build.

An image is its base plus, in order, what each step adds: Debian packages (:mod:`lamina.debian.step`),
Python distributions (:mod:`lamina.python.step`), then files and app code (:mod:`lamina.files`).
A step takes the state the image has reached (its base's, then the earlier steps') and returns:

- its lock section (what its inputs resolved to; only the family writes the lock file),
- the layers it adds (each with the components it holds: the inventory SBOMs and reports read),
- environment defaults and the state the next steps and the images built on this one start from.

Steps know nothing of the family, the CLI or each other; they meet only through :class:`StepContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lamina.config import ImageSpec
from lamina.inventory import Component
from lamina.oci.layer import LayerSpec
from lamina.oci.model import HealthCheck, Image, Platform
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore


@dataclass(frozen=True)
class StepLayer:
    """A layer a step adds, and what is in it."""

    spec: LayerSpec
    components: tuple[Component, ...] = ()


@dataclass
class StepContext:
    """What a step sees of the image being planned.

    ``states`` maps a step's kind to its state after the base and the earlier steps (a project base
    passes its states on, so a child never resolves again what its base has). ``os_packages`` is
    what the image's operating system has installed (name → version), for steps that care (the
    Python step uses the distribution's interpreter when one is installed). ``lock_section`` reads
    the lock (this image, this platform) for a kind.
    """

    spec: ImageSpec
    platform: Platform
    store: BlobStore
    registries: Registries
    base_image: Image | None
    base_name: str | None
    base_env: Mapping[str, str]
    lock_section: Callable[[str], dict[str, Any] | None]
    media_type: str
    mtime: int
    fetch: bool = True
    #: With ``fetch``: download what the uncached layers need. False describes the layers (their keys,
    #: descriptions and components) without downloading anything: ``lamina build --dry-run``.
    download: bool = True
    states: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    os_packages: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class StepResult:
    """What one step adds to one image."""

    kind: str
    state: Any = None
    lock: dict[str, Any] | None = None
    #: The lock section was resolved now (not read from the lock file).
    resolved: bool = False
    layers: list[StepLayer] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Run-config defaults the image's own config does not set (e.g. a service's command).
    cmd: list[str] | None = None
    #: A health check and labels for the image when its config sets none (a service's, by its kind).
    healthcheck: HealthCheck | None = None
    labels: dict[str, str] = field(default_factory=dict)
    #: OS packages the image has after this step (name → version), for later steps.
    os_packages: dict[str, str] = field(default_factory=dict)
    #: Facts about the image for its inventory (e.g. ``distro = "debian-12"``, read by SBOMs).
    facts: dict[str, str] = field(default_factory=dict)
    #: How many packages/distributions it adds, and the bytes it downloaded.
    added: int = 0
    downloaded: int = 0

    @property
    def components(self) -> list[Component]:
        return [c for layer in self.layers for c in layer.components]


class Step(Protocol):
    """A package source: Debian, Python, files."""

    #: Names the step's lock section and state (``debian``, ``python``, ``files``).
    kind: str

    def applies(self, spec: ImageSpec) -> bool:
        """Whether the image has anything for this step to do."""
        ...

    def run(self, ctx: StepContext) -> StepResult:
        """Lock (or resolve) and, with ``ctx.fetch``, fetch what the new layers need and describe them."""
        ...

    def close(self) -> None:
        """Release what the step holds for the command (clients, staging directories)."""
        ...


def run_steps(steps: Sequence[Step], ctx: StepContext) -> list[StepResult]:
    """Run the steps that apply, in order, each seeing what the earlier ones set."""
    results = []
    for step in steps:
        if not step.applies(ctx.spec):
            continue
        result = step.run(ctx)
        if result.state is not None:
            ctx.states[result.kind] = result.state
        ctx.env.update(result.env)
        ctx.os_packages.update(result.os_packages)
        results.append(result)
    return results
