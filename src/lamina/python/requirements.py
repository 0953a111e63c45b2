"""Requirement files read with their file and line, so every finding can point at the line to change.

What pip accepts is accepted here: backslash continuations, comments, ``--hash=sha256:...`` options
(``pip-compile --generate-hashes`` output), ``-r``/``-c`` includes (also ``--requirement=``),
environment markers, direct references (``name @ URL``) and global options (``--index-url`` & co.,
which are the ``[python]`` settings' business and are skipped). A file whose every requirement is
pinned with ``==`` and carries hashes is a *lock*: lamina installs exactly those pins, and only a
wheel whose sha256 the file lists (pip's ``--require-hashes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from lamina.errors import ConfigError

_INCLUDE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)$")
_HASH = re.compile(r"--hash[=\s]\s*(\w+):([0-9a-fA-F]+)")
#: Options that take a value, for files that put them on a requirement's line (rare, but valid).
_OPTION = re.compile(r"^-{1,2}[A-Za-z-]+")


@dataclass(frozen=True)
class DeclaredRequirement:
    requirement: Requirement
    file: Path
    line: int
    #: sha256 hex digests the file allows for it (``--hash=sha256:...``); empty: any.
    hashes: tuple[str, ...] = field(default=())
    #: From a ``-c`` constraints file: it limits versions but does not ask for the package.
    constraint: bool = False

    @property
    def name(self) -> str:
        return canonicalize_name(self.requirement.name)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def pinned(self) -> str | None:
        """The version of an exact ``==`` pin (no wildcard), else None."""
        specs = list(self.requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each logical line: continuations joined, comments removed."""
    out: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw if not raw.lstrip().startswith("#") else ""
        line = re.sub(r"(^|\s)#.*$", "", line)
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            out.append((start, buffer.strip()))
        buffer = ""
    if buffer.strip():
        out.append((start, buffer.strip()))
    return out


def read_requirements(path: Path, _seen: frozenset[Path] = frozenset(), *,
                      constraint: bool = False) -> list[DeclaredRequirement]:
    """The requirements of a pip requirements file, following ``-r``/``-c`` includes (constraints
    come back with ``constraint=True``)."""
    path = path.absolute()
    if path in _seen:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", hint="check the requirements paths in lamina.toml") from None
    found: list[DeclaredRequirement] = []
    for number, line in logical_lines(text):
        if m := _INCLUDE.match(line):
            nested = constraint or m.group(1) in ("-c", "--constraint")
            found += read_requirements(path.parent / m.group(2), _seen | {path}, constraint=nested)
            continue
        hashes = tuple(h.lower() for algo, h in _HASH.findall(line) if algo == "sha256")
        line = _HASH.sub("", line).strip()
        if line.startswith("-"):
            continue  # index options belong to [python]; --hash alone was handled above
        line = re.split(r"\s+--?[A-Za-z]", line, maxsplit=1)[0].strip()  # per-requirement options
        try:
            found.append(DeclaredRequirement(Requirement(line), path, number, hashes, constraint))
        except InvalidRequirement as e:
            raise ConfigError(f"{path}:{number}: not a valid requirement: {line!r} ({e})",
                              hint="write it as pip does: name, name==1.2, name>=1.2,<2; name==1.2 ; "
                              "python_version < \"3.12\"; name @ https://...; options such as --hash=sha256:... "
                              "may follow") from None
    return found


def hashed_lock(path: Path) -> list[DeclaredRequirement] | None:
    """The requirements of ``path`` when it is a lock (every requirement pinned with ``==`` and
    hashed, as ``pip-compile --generate-hashes`` writes), else None. A file where only some
    requirements have hashes is an error, as it is for pip."""
    reqs = [r for r in read_requirements(path) if not r.constraint]
    hashed = [r for r in reqs if r.hashes]
    if not hashed:
        return None
    if unhashed := [r for r in reqs if not r.hashes]:
        raise ConfigError(f"{unhashed[0].where}: {unhashed[0].requirement} has no --hash, but other requirements of "
                          f"{path.name} do (pip refuses such a file in hash-checking mode)",
                          hint="regenerate it with `pip-compile --generate-hashes`, or remove the hashes")
    if unpinned := [r for r in reqs if r.pinned is None]:
        raise ConfigError(f"{unpinned[0].where}: {unpinned[0].requirement} is hashed but not pinned with ==",
                          hint="hashes need exact pins (name==1.2.3), as pip-compile writes them")
    return reqs
