"""What changed between two versions of an image's lock section: the report ``lamina lock`` prints.

A lock section lists packages (``packages`` for Debian, ``dists`` for Python), each with a name and a version;
the diff is by name, so a package that moved to another version is "changed", not removed and added.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LockChanges:
    """Packages added, removed and changed (name, before, after) in one lock section; ``new`` if there was none."""

    new: bool = False
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, str, str], ...] = ()

    @property
    def unchanged(self) -> bool:
        return not (self.new or self.added or self.removed or self.changed)

    def describe(self, limit: int = 6) -> str:
        """One line: ``new``, ``unchanged`` or ``+a, -b, c 1.0 → 1.1`` (at most ``limit`` items, then a count)."""
        if self.new:
            return "new"
        parts = ([f"+{n}" for n in self.added] + [f"-{n}" for n in self.removed]
                 + [f"{n} {before} → {after}" for n, before, after in self.changed])
        if not parts:
            return "unchanged"
        return ", ".join(parts[:limit]) + (f" (+{len(parts) - limit} more)" if len(parts) > limit else "")


def diff_section(old: Mapping[str, Any] | None, new: Mapping[str, Any], key: str) -> LockChanges:
    """Compare the ``key`` lists (``packages`` or ``dists``) of two lock sections of one image."""
    if old is None:
        return LockChanges(new=True)
    before = {p["name"]: p["version"] for p in old.get(key, [])}
    after = {p["name"]: p["version"] for p in new.get(key, [])}
    return LockChanges(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple((n, before[n], after[n]) for n in sorted(after.keys() & before.keys()) if after[n] != before[n]),
    )
