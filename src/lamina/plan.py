"""The image family graph: which image is built on which, and the order to build them in."""

from __future__ import annotations

from collections.abc import Iterable

from lamina.config import ProjectConfig
from lamina.errors import ConfigError


def project_base(config: ProjectConfig, base: str) -> str | None:
    """The project image that ``from = base`` names, if it names one (project names win)."""
    return base if base in config.images else None


def build_order(config: ProjectConfig, names: Iterable[str]) -> list[str]:
    """``names`` and the project images they are built on, bases first (each once)."""
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " → ".join([*visiting[visiting.index(name):], name])
            raise ConfigError(f"{config.path}: images are built on each other in a cycle: {cycle}",
                              hint="an image's `from` must not lead back to itself")
        visiting.append(name)
        base = project_base(config, config.image(name).base)
        if base is not None:
            visit(base)
        visiting.pop()
        order.append(name)

    for name in names:
        visit(name)
    return order
