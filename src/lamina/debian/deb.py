"""Reading a ``.deb``: an ``ar`` archive of ``debian-binary``, ``control.tar.*`` and ``data.tar.*``.

``data.tar`` becomes layer entries as dpkg would unpack it (modes, owners, symlinks, hard links kept),
with one change: bookworm and later are merged-/usr, so ``./bin``, ``./sbin`` and ``./lib*`` paths
are moved under ``usr/`` (a real ``/lib`` directory in a layer would replace the image's ``/lib``
symlink and break every binary). Relative symlink targets of moved links are recomputed.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

import zstandard

from lamina.errors import LaminaError
from lamina.oci.paths import member_path
from lamina.oci.tar import Entry

AR_MAGIC = b"!<arch>\n"
#: Top-level directories that are symlinks into ``usr/`` on a merged-/usr system.
MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32", "libo32")


class DebError(LaminaError):
    """A ``.deb`` that cannot be read."""


@dataclass(frozen=True)
class Deb:
    """What lamina uses of a package file."""

    control: str
    md5sums: str
    entries: list[Entry]
    #: The ``postinst`` maintainer script (read for the alternatives it installs, never run).
    postinst: str = ""


def ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The (name, content) members of an ``ar`` archive."""
    if not data.startswith(AR_MAGIC):
        raise DebError("not a Debian package (no ar header)")
    pos = len(AR_MAGIC)
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        if header[58:60] != b"`\n":
            raise DebError("corrupt ar member header")
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = pos + 60
        yield name, data[start:start + size]
        pos = start + size + (size & 1)


def decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".zst"):
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
            return reader.read()
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".bz2"):
        return bz2.decompress(data)
    if name.endswith(".tar"):
        return data
    raise DebError(f"unsupported member compression: {name}")


def merged_usr(path: str) -> str:
    """``lib/x`` → ``usr/lib/x`` (and bin, sbin, lib32, lib64, ...); other paths unchanged."""
    first = path.split("/", 1)[0]
    return f"usr/{path}" if first in MERGED_DIRS else path


def read_deb(data: bytes, *, label: str = "package") -> Deb:
    """Parse a ``.deb``'s bytes (already verified against their SHA256 by the caller)."""
    members = dict(ar_members(data))
    if "debian-binary" not in members or not members["debian-binary"].startswith(b"2."):
        raise DebError(f"{label} is not a format 2.x Debian package")
    control_name = next((n for n in members if n.startswith("control.tar")), None)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if control_name is None or data_name is None:
        raise DebError(f"{label} lacks control.tar or data.tar")
    control, md5sums, postinst = _read_control(decompress(control_name, members[control_name]), label)
    entries = _entries(decompress(data_name, members[data_name]), label)
    return Deb(control, md5sums, entries, postinst)


def _read_control(raw: bytes, label: str) -> tuple[str, str, str]:
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isfile() and name in ("control", "md5sums", "postinst"):
                files[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
    if "control" not in files:
        raise DebError(f"{label} has no control file")
    return (files["control"].decode("utf-8"), files.get("md5sums", b"").decode("utf-8", "surrogateescape"),
            files.get("postinst", b"").decode("utf-8", "replace"))


def _entries(raw: bytes, label: str) -> list[Entry]:
    entries: list[Entry] = []
    contents: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for m in tar:
            if m.name.strip("/") in ("", "."):
                continue
            original = member_path(m.name, source=label)  # absolute, '..': refused, naming the package
            path = merged_usr(original)
            if m.isdir():
                entries.append(Entry.dir(path, mode=m.mode, uid=m.uid, gid=m.gid))
            elif m.isfile():
                content = tar.extractfile(m).read()  # type: ignore[union-attr]
                contents[path] = content
                entries.append(Entry.bytes(path, content, mode=m.mode, uid=m.uid, gid=m.gid))
            elif m.issym():
                entries.append(Entry.symlink(path, _retarget(original, path, m.linkname), uid=m.uid, gid=m.gid))
            elif m.islnk():
                target = merged_usr(member_path(m.linkname, source=label, what=f"hard link {m.name!r} to"))
                if _sort_key(target) < _sort_key(path):
                    entries.append(Entry.hardlink(path, target, uid=m.uid, gid=m.gid))
                else:  # the moved target would come after the link: store a copy instead
                    entries.append(Entry.bytes(path, contents.get(target, b""), mode=m.mode, uid=m.uid, gid=m.gid))
            else:
                raise DebError(f"{label} contains {m.name}, which is not a file, directory or link "
                               f"(a device node or FIFO)",
                               hint="lamina refuses device nodes and FIFOs in package layers (docs/debian.md): "
                                    "the runtime provides /dev; leave the package out")
    return entries


def _retarget(original: str, moved: str, target: str) -> str:
    """A symlink's target after its link moved from ``original`` to ``moved`` (merged-/usr)."""
    if original == moved or target.startswith("/"):
        return target
    absolute = posixpath.normpath(posixpath.join("/", posixpath.dirname(original), target))
    new_target = "/" + merged_usr(absolute.lstrip("/")) if absolute != "/" else "/"
    return posixpath.relpath(new_target, posixpath.join("/", posixpath.dirname(moved)))


def _sort_key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/"))


def rewrite_md5sums(text: str) -> str:
    """dpkg's ``md5sums`` list with the paths moved as the files were (merged-/usr)."""
    lines = []
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        lines.append(f"{digest}{sep}{merged_usr(path)}" if sep else line)
    return "".join(f"{line}\n" for line in lines)
