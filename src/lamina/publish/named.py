"""What outputs receive: an artifact with the name it gets there, and the interface outputs share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from lamina.oci.model import Artifact, Image, Index, images_of


@dataclass(frozen=True)
class Named:
    """An image (or a multi-platform index) with the name it gets in outputs: ``name:tag``."""

    name: str
    tag: str
    artifact: Artifact

    @property
    def ref_name(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def digest(self) -> str:
        return self.artifact.digest

    @property
    def images(self) -> tuple[Image, ...]:
        """Its platform images (one for a single-platform image)."""
        return images_of(self.artifact)

    @property
    def is_index(self) -> bool:
        return isinstance(self.artifact, Index)


class Publisher(Protocol):
    """A place images go: it receives named artifacts and says what it did (a report per artifact)."""

    def publish(self, images: Sequence[Named]) -> list[object]:
        ...
