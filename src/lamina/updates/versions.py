"""Moving a base's version, as the seed's "Step 3: Update Base Images" does by hand (v1.0.1 → v1.0.2),
and writing it into ``lamina.toml`` with a minimal line edit that keeps its formatting and comments.

Which key moves (:func:`version_moves`): a base whose content changed gets the next version; when every
base that follows the project's ``base_version`` changed, that one key moves; otherwise each changed
base gets its own ``base_version`` in its ``[images.NAME]`` table, so the bases that did not change,
and the images on them, keep their tags and digests.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lamina import naming
from lamina.config import ProjectConfig
from lamina.errors import ConfigError
from lamina.oci.store import atomic_write

SCHEMES = ("patch", "minor", "major", "date")
_VERSION = re.compile(r"(?P<prefix>[^\d]*)(?P<numbers>\d+(?:\.\d+)*)(?P<suffix>.*)")


def next_version(current: str, scheme: str = "patch", *, today: dt.date | None = None) -> str:
    """The version after ``current``: ``patch`` v1.0.1 → v1.0.2, ``minor`` → v1.1.0, ``major`` → v2.0.0,
    ``date`` → v2026.11.29 (then v2026.11.29.1 the same day). A prefix such as ``v`` is kept; a suffix
    (``-rc1``) is dropped, since the new version is a release."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown base_version_scheme {scheme!r}", hint=f"use one of {', '.join(SCHEMES)}")
    match = _VERSION.fullmatch(current)
    if match is None:
        raise ConfigError(f"cannot tell the next version after {current!r}: it has no number",
                          hint="write base_version as v1.0.1 (or 2026.11.29 with base_version_scheme = \"date\")")
    prefix = match["prefix"]
    numbers = [int(n) for n in match["numbers"].split(".")]
    if scheme == "date":
        day = (today or dt.datetime.now(dt.UTC).date()).strftime("%Y.%m.%d")
        day_numbers = [int(n) for n in day.split(".")]
        if numbers[:3] == day_numbers:
            serial = numbers[3] + 1 if len(numbers) > 3 else 1
            return f"{prefix}{day}.{serial}"
        return f"{prefix}{day}"
    numbers += [0] * (3 - len(numbers))
    position = {"major": 0, "minor": 1, "patch": len(numbers) - 1}[scheme]
    numbers = numbers[:position] + [numbers[position] + 1] + [0] * (len(numbers) - position - 1)
    return prefix + ".".join(map(str, numbers))


@dataclass(frozen=True)
class VersionMove:
    """One key of lamina.toml that moves: ``table`` is ``project`` or ``images.NAME``."""

    table: str
    key: str
    old: str | None
    new: str
    #: The bases whose tag this moves.
    images: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"table": self.table, "key": self.key, "old": self.old, "new": self.new, "images": list(self.images)}


def bases_of(config: ProjectConfig) -> list[str]:
    """The images of the project tagged by a base version: not services, without explicit ``tags``."""
    return [name for name, spec in config.images.items() if spec.service is None and not spec.tags]


def version_moves(config: ProjectConfig, changed: Iterable[str]) -> list[VersionMove]:
    """The keys of lamina.toml that move when the bases ``changed`` changed content (see the module)."""
    changed = [name for name in bases_of(config) if name in set(changed)]
    if not changed:
        return []
    scheme = config.base_version_scheme
    following = [n for n in bases_of(config) if config.images[n].base_version is None]
    moves = []
    own = [n for n in changed if config.images[n].base_version is not None]
    for name in own:
        old = config.images[name].base_version
        moves.append(VersionMove(f"images.{name}", "base_version", old, next_version(old, scheme), (name,)))
    rest = [n for n in changed if n not in own]
    if rest and config.base_version and set(rest) == set(following):
        moves.append(VersionMove("project", "base_version", config.base_version,
                                 next_version(config.base_version, scheme), tuple(rest)))
    else:
        for name in rest:
            old = naming.own_tag(config, config.images[name])
            start = old if _VERSION.fullmatch(old) else "v1.0.0"
            moves.append(VersionMove(f"images.{name}", "base_version", None, next_version(start, scheme), (name,)))
    return moves


def apply_moves(path: Path, moves: Sequence[VersionMove]) -> str:
    """Write the moves into ``path`` (lamina.toml) in place; returns the new text."""
    text = path.read_text(encoding="utf-8")
    for move in moves:
        text = set_key(text, move.table, move.key, move.new, where=str(path))
    atomic_write(path, text.encode("utf-8"))
    return text


# -- a minimal TOML line edit ----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[(?!\[)(?P<name>[^\]]+)\]\s*(?:#.*)?$")
_STRING = re.compile(r'^[^"\\\x00-\x1f]+$')


def set_key(text: str, table: str, key: str, value: str, *, where: str = "lamina.toml") -> str:
    """``text`` with ``key = "value"`` in ``[table]``: the key's line rewritten (its comment kept), else a
    line added under the table's header, else the table appended. Checked by reading the result back."""
    if not _STRING.fullmatch(value):
        raise ConfigError(f"{value!r} is not a value lamina writes into {where}")
    lines = text.splitlines(keepends=True)
    start, end = _table_span(lines, table)
    literal = f'"{value}"'
    if start is None:
        tail = "" if text.endswith("\n") or not text else "\n"
        new_text = f"{text}{tail}\n[{table}]\n{key} = {literal}\n"
    else:
        line_re = re.compile(rf"^(?P<lead>\s*{re.escape(key)}\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^#\s]+)(?P<rest>.*)$")
        for i in range(start + 1, end):
            if m := line_re.match(lines[i].rstrip("\r\n")):
                newline = lines[i][len(lines[i].rstrip("\r\n")):]
                lines[i] = f"{m['lead']}{literal}{m['rest']}{newline}"
                break
        else:  # after the table's last line of content (trailing blanks and comments belong to the next)
            last = max((i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")),
                       default=start)
            newline = "\r\n" if lines[start].endswith("\r\n") else "\n"
            if not lines[last].endswith(("\n", "\r")):
                lines[last] += newline
            lines.insert(last + 1, f"{key} = {literal}{newline}")
        new_text = "".join(lines)
    _check(new_text, table, key, value, where)
    return new_text


def _table_span(lines: Sequence[str], table: str) -> tuple[int | None, int]:
    """The header's line index of ``[table]`` and the index where its body ends."""
    want = _normal(table)
    start = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line.rstrip("\r\n"))
        if m is None and not line.lstrip().startswith("[["):
            continue
        if start is not None:
            return start, i
        if m is not None and _normal(m["name"]) == want:
            start = i
    return start, len(lines)


def _normal(name: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"').strip("'") for part in name.split("."))


def _check(text: str, table: str, key: str, value: str, where: str) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: setting {table}.{key} would make it invalid TOML ({e})",
                          hint=f"set {key} = \"{value}\" in [{table}] by hand") from None
    node: object = data
    for part in (*_normal(table), key):
        node = node.get(part) if isinstance(node, dict) else None
    if node != value:
        raise ConfigError(f"{where}: could not set {key} in [{table}] (it is written in a form lamina does not edit)",
                          hint=f"set {key} = \"{value}\" in [{table}] by hand")
