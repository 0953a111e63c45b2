"""Deterministic layer tars.

A layer's bytes depend only on its entries: paths are sorted, parent directories are emitted
explicitly, every member has the same mtime (``SOURCE_DATE_EPOCH`` when set, else
:data:`DEFAULT_EPOCH`), owners are numeric with empty user/group names, and modes are normalized.
Nothing of the host leaks in: not the checkout path, file mtimes, the umask, or the input order.

The format is POSIX ustar, with a PAX extended header only for what ustar cannot hold (long or
non-ASCII paths and link targets). The archive ends with two zero blocks, as Go's ``archive/tar`` does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from lamina.errors import LaminaError

#: mtime of every member when SOURCE_DATE_EPOCH is not set: 1970-01-01T00:00:01Z. One second
#: rather than zero because some tools treat an mtime of 0 as "unset" (Jib made the same choice).
DEFAULT_EPOCH = 1
BLOCK = 512
COPY_CHUNK = 1 << 20
WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

Kind = Literal["file", "dir", "symlink", "hardlink"]


def source_date_epoch(env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """The fixed timestamp for members and image metadata: ``SOURCE_DATE_EPOCH`` or the default."""
    value = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return DEFAULT_EPOCH
    try:
        epoch = int(value)
    except ValueError:
        raise LaminaError(
            f"SOURCE_DATE_EPOCH={value!r} is not an integer",
            hint="set it to seconds since 1970 (e.g. `git log -1 --format=%ct`) or unset it",
        ) from None
    if epoch < 0:
        raise LaminaError(f"SOURCE_DATE_EPOCH={value!r} is negative", hint="use seconds since 1970")
    return epoch


def normalize_path(path: str) -> str:
    """An image path in canonical form: relative, no ``.``/empty parts, refusing ``..``."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LaminaError(f"path {path!r} leaves the image root", hint="remove '..' from the path")
    if not parts:
        raise LaminaError("an entry cannot be the image root itself")
    return "/".join(parts)


@dataclass(frozen=True)
class Entry:
    """One member of a layer. Build entries with the class methods, not the constructor."""

    path: str
    kind: Kind
    mode: int
    uid: int = 0
    gid: int = 0
    source: Path | None = None
    data: bytes | None = None
    target: str | None = None
    #: For files read from disk: (size, mtime_ns, ctime_ns, inode, device) when the entry was made.
    #: The size is what the tar header says; the rest only feeds :func:`signature`.
    stat: tuple[int, int, int, int, int] | None = None

    @classmethod
    def file(
        cls,
        path: str,
        source: str | os.PathLike[str],
        *,
        mode: int | None = None,
        uid: int = 0,
        gid: int = 0,
    ) -> Entry:
        """A regular file read from ``source``; mode 0755 if ``source`` is executable, else 0644."""
        src = Path(source)
        st = os.stat(src)
        if mode is None:
            mode = 0o755 if st.st_mode & 0o111 else 0o644
        facts = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        return cls(normalize_path(path), "file", mode & 0o7777, uid, gid, source=src, stat=facts)

    @classmethod
    def bytes(cls, path: str, data: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
        """A regular file with the given content."""
        return cls(normalize_path(path), "file", mode & 0o7777, uid, gid, data=bytes(data))

    @classmethod
    def dir(cls, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
        """A directory."""
        return cls(normalize_path(path), "dir", mode & 0o7777, uid, gid)

    @classmethod
    def symlink(cls, path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
        """A symbolic link (its target is stored verbatim)."""
        return cls(normalize_path(path), "symlink", 0o777, uid, gid, target=target)

    @classmethod
    def hardlink(cls, path: str, target: str, *, uid: int = 0, gid: int = 0) -> Entry:
        """A hard link to another member of the same layer."""
        return cls(normalize_path(path), "hardlink", 0o644, uid, gid, target=normalize_path(target))

    @classmethod
    def whiteout(cls, path: str) -> Entry:
        """Deletes ``path`` (file or directory) of the layers below."""
        p = PurePosixPath(normalize_path(path))
        return cls.bytes(str(p.parent / (WHITEOUT_PREFIX + p.name)), b"", mode=0o644)

    @classmethod
    def opaque(cls, directory: str) -> Entry:
        """Hides everything the layers below have in ``directory`` (the directory itself stays)."""
        return cls.bytes(f"{normalize_path(directory)}/{OPAQUE_WHITEOUT}", b"", mode=0o644)

    @property
    def size(self) -> int:
        """Content size in bytes (0 for anything but a regular file)."""
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.stat is not None
        return self.stat[0]


def tree_entries(
    root: str | os.PathLike[str],
    dest: str,
    *,
    uid: int = 0,
    gid: int = 0,
    mode: int | None = None,
    exclude: Iterable[str] = (),
) -> list[Entry]:
    """Entries for everything under ``root``, placed under ``dest`` in the image.

    Symlinks are kept as links; files that are hard links of each other become one file and hard
    links to it; file modes become 0755 (any execute bit) or 0644 unless ``mode`` is given;
    directories are 0755. ``exclude`` holds names (not paths) to skip, with shell wildcards, e.g.
    ``__pycache__`` or ``requirements*.txt``.
    """
    root_path = Path(root)
    names = {p for p in exclude if not any(c in p for c in "*?[")}
    patterns = [p for p in exclude if p not in names]

    def skipped(name: str) -> bool:
        return name in names or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    if not root_path.exists():
        raise LaminaError(f"{root_path} does not exist", hint="check the copy source in lamina.toml")
    if root_path.is_file():
        return [Entry.file(dest, root_path, mode=mode, uid=uid, gid=gid)]
    prefix = normalize_path(dest) + "/" if dest.strip("/.") else ""
    entries = [Entry.dir(prefix, uid=uid, gid=gid)] if prefix else []
    first_link: dict[tuple[int, int], str] = {}

    def walk(directory: str, image_dir: str) -> None:
        with os.scandir(directory) as it:
            children = sorted((e for e in it if not skipped(e.name)), key=lambda e: e.name)
        for child in children:
            image_path = image_dir + child.name
            st = child.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                entries.append(Entry(image_path, "symlink", 0o777, uid, gid, target=os.readlink(child.path)))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(image_path, "dir", 0o755, uid, gid))
                walk(child.path, image_path + "/")
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in first_link:
                    entries.append(Entry(image_path, "hardlink", 0o644, uid, gid, target=first_link[key]))
                    continue
                first_link[key] = image_path
                file_mode = mode if mode is not None else (0o755 if st.st_mode & 0o111 else 0o644)
                facts = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
                entries.append(Entry(image_path, "file", file_mode & 0o7777, uid, gid, source=Path(child.path), stat=facts))
            else:
                raise LaminaError(
                    f"{child.path} is not a regular file, directory or symlink",
                    hint="device files, sockets and FIFOs cannot be copied into a layer",
                )

    walk(str(root_path), prefix)
    return entries


def signature(entries: Iterable[Entry]) -> str:
    """A cheap fingerprint of a layer's inputs: metadata, inline content and source file stats.

    Equal signatures mean the same layer without reading a byte of the sources (as make and Jib
    decide); a different signature only means the layer is written again, and since layers are
    content-addressed an unchanged content still gives the same digests.
    """
    digest = hashlib.sha256()
    for e in sorted(entries, key=_sort_key):
        content = hashlib.sha256(e.data).hexdigest() if e.data is not None else f"{e.source}:{e.stat}"
        digest.update(f"{e.path}\0{e.kind}\0{e.mode}\0{e.uid}\0{e.gid}\0{e.target}\0{content}\n".encode())
    return digest.hexdigest()


def _sort_key(entry: Entry) -> tuple[str, ...]:
    return tuple(entry.path.split("/"))


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """Sorted, de-duplicated entries, with a directory entry for every parent not given."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        previous = by_path.get(entry.path)
        if previous is not None and previous != entry:
            if previous.kind == entry.kind == "dir":
                continue  # the first declaration of a directory wins
            raise LaminaError(
                f"two different entries for /{entry.path} in one layer",
                hint="each path may appear once per layer",
            )
        by_path[entry.path] = entry
    for path in list(by_path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in by_path:
                owner = by_path[path]
                by_path[parent] = Entry.dir(parent, uid=owner.uid, gid=owner.gid)
            elif by_path[parent].kind != "dir":
                raise LaminaError(f"/{parent} is a {by_path[parent].kind} and also a parent of /{path}")
    ordered = sorted(by_path.values(), key=_sort_key)
    _check_hardlinks(ordered)
    return ordered


def _check_hardlinks(ordered: list[Entry]) -> None:
    seen: set[str] = set()
    for entry in ordered:
        if entry.kind == "hardlink" and entry.target not in seen:
            raise LaminaError(
                f"hard link /{entry.path} points to /{entry.target}, which is not earlier in the layer",
                hint="a hard link's target must be a file of the same layer",
            )
        seen.add(entry.path)


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


_TYPEFLAGS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5", "pax": b"x"}
_USTAR_MAGIC = b"ustar\x0000"
_MAX_OCTAL_11 = 0o77777777777
_MAX_OCTAL_7 = 0o7777777


def _ustar(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, kind: str, link: bytes) -> bytes:
    head = b"".join((
        name[:100].ljust(100, b"\0"),
        b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime),
        b"        ",
        _TYPEFLAGS[kind],
        link[:100].ljust(100, b"\0"),
        _USTAR_MAGIC,
        b"\0" * 247,  # empty user and group names, no device numbers, no prefix, padding
    ))
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


def _pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _header(entry: Entry, mtime: int) -> bytes:
    """The header block(s) of ``entry``: ustar, preceded by a PAX extended header only when a
    name, link target or number does not fit ustar (written here, not by tarfile, so the bytes
    do not depend on the Python version)."""
    name = entry.path + ("/" if entry.kind == "dir" else "")
    link = entry.target or ""
    size = entry.size
    records = []
    if not name.isascii() or len(name) > 100:
        records.append(_pax_record("path", name))
    if not link.isascii() or len(link) > 100:
        records.append(_pax_record("linkpath", link))
    for key, value, limit in (("uid", entry.uid, _MAX_OCTAL_7), ("gid", entry.gid, _MAX_OCTAL_7),
                              ("size", size, _MAX_OCTAL_11), ("mtime", mtime, _MAX_OCTAL_11)):
        if value > limit:
            records.append(_pax_record(key, str(value)))
    raw_name = name.encode("utf-8", "surrogateescape")
    raw_link = link.encode("utf-8", "surrogateescape")
    header = _ustar(raw_name, entry.mode, min(entry.uid, _MAX_OCTAL_7), min(entry.gid, _MAX_OCTAL_7),
                    size if size <= _MAX_OCTAL_11 else 0, min(mtime, _MAX_OCTAL_11), entry.kind, raw_link)
    if not records:
        return header
    data = b"".join(records)
    pax = _ustar(b"././@PaxHeader", 0o644, 0, 0, len(data), 0, "pax", b"")
    return pax + data + b"\0" * (-len(data) % BLOCK) + header


def tar_chunks(entries: Iterable[Entry], *, mtime: int | None = None) -> Iterator[bytes]:
    """The layer tar as a stream of byte chunks (at most ~1 MiB each), never the whole layer."""
    when = source_date_epoch() if mtime is None else mtime
    for entry in _with_parents(entries):
        yield _header(entry, when)
        if entry.kind == "file":
            yield from _content_chunks(entry, entry.size)
            if remainder := entry.size % BLOCK:
                yield b"\0" * (BLOCK - remainder)
    yield b"\0" * (2 * BLOCK)


def _content_chunks(entry: Entry, size: int) -> Iterator[bytes]:
    if entry.data is not None:
        yield entry.data
        return
    assert entry.source is not None
    written = 0
    with open(entry.source, "rb") as f:
        while written < size and (chunk := f.read(min(COPY_CHUNK, size - written))):
            written += len(chunk)
            yield chunk
    if written != size:
        raise LaminaError(
            f"{entry.source} changed size while it was being read ({size} → {written} bytes)",
            hint="do not modify the sources during a build; run the build again",
        )


def write_tar(entries: Iterable[Entry], sink: Sink, *, mtime: int | None = None) -> None:
    """Write the deterministic tar of ``entries`` to ``sink``."""
    for chunk in tar_chunks(entries, mtime=mtime):
        sink.write(chunk)
