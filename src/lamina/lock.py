"""``lamina.lock``: what each image's inputs resolved to, so that a rebuild uses the same bytes.

The file sits next to ``lamina.toml`` and is meant to be committed. It holds one table per image,
platform and step, ``[images.NAME."linux/amd64".KIND]`` (``debian``, ``python``; other steps add
their own kinds), and is written by :func:`dumps`, a small deterministic TOML writer: keys in a fixed
order, images sorted, arrays of records as one inline table per line. Sections this version does not
know are kept as read. Only the family (:mod:`lamina.family`) writes it; steps return sections.

Format 1 (before platforms) had ``[images.NAME.KIND]``; it is read as the sections of each image's
first platform and rewritten as format 2 the next time the lock changes.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lamina.errors import ConfigError
from lamina.oci.store import atomic_write

LOCK_NAME = "lamina.lock"
LOCK_VERSION = 2
READABLE_VERSIONS = (1, 2)
HEADER = "# lamina.lock: written by `lamina lock` and `lamina build`; commit it, do not edit it.\n"
DEFAULT_PLATFORM = "linux/amd64"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Lock:
    """The lock file of a project: ``section(image, platform, kind)`` to read, ``set_section`` then
    ``save`` to write."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data if data is not None else {"version": LOCK_VERSION, "images": {}}
        self.data.setdefault("images", {})
        self._saved = self._clean = dumps(self.data)

    @classmethod
    def for_config(cls, config_path: Path, platform_of: Callable[[str], str] | None = None) -> Lock:
        """``lamina.lock`` beside ``lamina.toml``; ``NAME.lock`` beside another ``NAME.toml`` (a profile).
        ``platform_of(image)`` places a format-1 lock's sections (default: linux/amd64)."""
        name = LOCK_NAME if config_path.name == "lamina.toml" else config_path.with_suffix(".lock").name
        return cls.load(config_path.parent / name, platform_of)

    @classmethod
    def load(cls, path: Path, platform_of: Callable[[str], str] | None = None) -> Lock:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}", hint="delete it and run `lamina lock`") from None
        if data.get("version") not in READABLE_VERSIONS:
            raise ConfigError(f"{path}: lock format {data.get('version')!r} is not one of {READABLE_VERSIONS}",
                              hint="run `lamina lock` with this version of lamina to rewrite it")
        if data["version"] == 1:
            place = platform_of or (lambda _name: DEFAULT_PLATFORM)
            data = {**data, "version": LOCK_VERSION,
                    "images": {name: {place(name): kinds} for name, kinds in data.get("images", {}).items()}}
        lock = cls(path, data)
        lock._saved = text  # a format-1 file is rewritten (as format 2) only when a section changes
        return lock

    @property
    def exists(self) -> bool:
        return self.path.is_file()

    def section(self, image: str, platform: str, kind: str) -> dict[str, Any] | None:
        return self.data["images"].get(image, {}).get(platform, {}).get(kind)

    def platforms(self, image: str) -> list[str]:
        return list(self.data["images"].get(image, {}))

    def set_section(self, image: str, platform: str, kind: str, value: Mapping[str, Any] | None) -> None:
        images = self.data["images"]
        if value is None:
            platforms = images.get(image, {})
            platforms.get(platform, {}).pop(kind, None)
            if platform in platforms and not platforms[platform]:
                del platforms[platform]
            if image in images and not images[image]:
                del images[image]
            return
        images.setdefault(image, {}).setdefault(platform, {})[kind] = dict(value)

    @property
    def changed(self) -> bool:
        """Whether a section differs from what was read."""
        return dumps(self.data) != self._clean

    def save(self) -> bool:
        """Write the file if a section changed (or it does not exist); returns whether it did."""
        text = dumps(self.data)
        if self.path.exists() and (text == self._saved or not self.changed):
            return False
        atomic_write(self.path, text.encode("utf-8"))
        self._saved = self._clean = text
        return True


# -- a small deterministic TOML writer ----------------------------------------------------------


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as TOML: scalars first, then sub-tables; ``images`` sorted by name."""
    out = [HEADER]
    _table(out, [], data)
    return "".join(out).rstrip("\n") + "\n"


def _table(out: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if path and (scalars or not tables):
        out.append(f"\n[{'.'.join(_key(p) for p in path)}]\n")
    for key, value in scalars.items():
        out.append(f"{_key(key)} = {_value(value, multiline=True)}\n")
    names = sorted(tables) if path == ["images"] or (len(path) == 2 and path[0] == "images") else list(tables)
    for name in names:
        _table(out, [*path, name], tables[name])


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: Any, *, multiline: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("lock values must be finite numbers")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [_value(v) for v in value]
        if multiline and (any(isinstance(v, Mapping) for v in value) or sum(map(len, items)) > 80):
            return "[\n" + "".join(f"    {item},\n" for item in items) + "]"
        return "[" + ", ".join(items) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the lock file")


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'
