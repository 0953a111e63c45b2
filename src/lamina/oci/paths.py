"""Path safety, lamina's own whatever a library does: every path a source contributes goes through here.

Two questions, asked of every path before it is used:

* :func:`member_path` — an archive member (a wheel's, a ``.deb``'s data.tar) or a declared image path, in
  canonical relative form; refused (naming the source and the member) when it is absolute, holds ``..``,
  a NUL byte or nothing at all. A refused member never reaches the image tree, let alone the host.
* :func:`project_path` — a file or folder of the project (a ``copy`` source, a ``ship`` entry, a service
  folder), resolved through symlinks and refused when it lands outside the project: a symlink
  ``secrets -> /etc/shadow`` would otherwise ship the host's file. Symlinks *inside* a copied tree are
  kept as links (:func:`lamina.oci.tar.tree_entries`), never followed.

:func:`check_member_mode` refuses the member kinds lamina does not accept from a wheel: device nodes,
FIFOs, sockets, symlinks and setuid/setgid bits (``.deb`` packages are judged by their own rules:
docs/debian.md).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from lamina.errors import UnsafePathError


def member_path(name: str, *, source: str, what: str = "member") -> str:
    """``name`` normalised (relative, no ``.`` or empty parts); refused if it could leave the tree."""
    if "\0" in name:
        raise UnsafePathError(f"{source}: {what} {name!r} has a NUL byte in its name",
                              hint="the archive is corrupt or hostile; do not use it")
    if name.startswith("/"):
        raise UnsafePathError(f"{source}: {what} {name!r} is an absolute path",
                              hint="archive members must be relative; the archive is broken or hostile")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{source}: {what} {name!r} leaves the image tree ('..')",
                              hint="the archive is broken or hostile; nothing of it was installed")
    if not parts:
        raise UnsafePathError(f"{source}: {what} {name!r} names no file", hint="the archive is broken")
    return "/".join(parts)


def is_inside(path: Path, root: Path) -> bool:
    """True when ``path`` (resolved through every symlink) is ``root`` or below it."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(root))
    except ValueError:
        return False
    return True


def lexically_inside(path: Path, root: Path) -> bool:
    """True when ``path`` as written (``..`` folded, symlinks not followed) is ``root`` or below it."""
    try:
        Path(os.path.normpath(os.path.abspath(path))).relative_to(os.path.normpath(os.path.abspath(root)))
    except ValueError:
        return False
    return True


def project_path(path: Path, root: Path, *, what: str) -> Path:
    """``path`` (absolute, or relative to ``root``), refused unless it and what its symlinks point to stay in ``root``."""
    candidate = path if path.is_absolute() else root / path
    if not is_inside(candidate, root):
        real = os.path.realpath(candidate)
        via = f" (a symlink to {real})" if os.path.islink(candidate) or real != os.path.abspath(candidate) else ""
        raise UnsafePathError(
            f"{what}: {path} is outside the project {root}{via}",
            hint="lamina copies only the project's own files; copy what you need into the project "
                 "(a symlink to a host file is never followed)",
        )
    return candidate.absolute()


def check_member_mode(mode: int, name: str, *, source: str) -> None:
    """Refuse a wheel member that is not a regular file or directory, or that carries setuid/setgid."""
    kind = stat.S_IFMT(mode)
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        label = {stat.S_IFLNK: "a symlink", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                 stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}.get(kind, f"of file type {kind:o}")
        raise UnsafePathError(f"{source}: member {name!r} is {label}",
                              hint="wheels hold regular files only; the wheel is broken or hostile")
    if mode & (stat.S_ISUID | stat.S_ISGID):
        raise UnsafePathError(f"{source}: member {name!r} is setuid/setgid (mode {mode & 0o7777:04o})",
                              hint="a wheel has no business shipping setuid files; the wheel is hostile")
