"""What ``lamina check`` reports, kept apart from the checks themselves (:mod:`lamina.python.check`, which
parses code with ``ast``), so that building, which only reports pin conflicts, does not import them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from packaging.version import InvalidVersion, Version

from lamina.python.requirements import DeclaredRequirement

ERROR, WARNING, NOTE = "error", "warning", "note"
#: The store records of which top-level modules each wheel provides (by the wheel's sha256).
MODULES_KIND = "wheel-modules"


@dataclass(frozen=True)
class Finding:
    level: str
    code: str
    image: str
    where: str
    message: str
    hint: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def allows(req: DeclaredRequirement, version: str) -> bool:
    """Does the requirement accept this installed version?"""
    try:
        return req.requirement.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return True
