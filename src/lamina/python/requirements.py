"""Requirement files read with their file and line, so every finding can point at the line to change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from lamina.errors import ConfigError


@dataclass(frozen=True)
class DeclaredRequirement:
    requirement: Requirement
    file: Path
    line: int

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def read_requirements(path: Path, _seen: frozenset[Path] = frozenset()) -> list[DeclaredRequirement]:
    """The requirements of a pip requirements file, following ``-r``/``-c`` includes."""
    path = path.absolute()
    if path in _seen:
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", hint="check the requirements paths in lamina.toml") from None
    found: list[DeclaredRequirement] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ")):
            found += read_requirements(path.parent / line.split(maxsplit=1)[1], _seen | {path})
            continue
        if line.startswith("-"):
            continue  # index options and constraints files are the index settings' business
        try:
            found.append(DeclaredRequirement(Requirement(line), path, number))
        except InvalidRequirement as e:
            raise ConfigError(f"{path}:{number}: not a valid requirement: {line!r} ({e})",
                              hint="write it as name, name==1.2 or name>=1.2,<2") from None
    return found
