"""Atomic, durable file writes with normal modes.

Every file lamina writes (blobs, store records, OCI layout files, docker-archives, ``lamina.lock``) is
written to a temp file in the same directory, fsynced, renamed into place and its directory fsynced:
readers see the old file or the whole new one, and a crash after the call returns loses nothing.
``mkstemp`` creates files with mode 0600; the file is given ``0666 & ~umask`` instead, as ``open``
would, so another user (a CI step, a web server serving a layout) can read what the umask allows.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from lamina.errors import DiskFullError

#: errno values that mean "the disk is full", not "lamina has a bug".
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _umask_by_setting() -> int:
    """The umask read the only portable way, by setting it and setting it back: not thread-safe (a file
    created by another thread in between would get 022), so done once, at import."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_by_setting()


def current_umask() -> int:
    """The process umask, read without changing it (Linux >= 4.7 shows it in /proc/self/status); where
    that is unavailable, the umask the process had when lamina was imported."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def file_mode() -> int:
    """The mode of a newly written file: ``0666 & ~umask``, what ``open(path, "w")`` would give."""
    return 0o666 & ~current_umask()


def disk_error(exc: BaseException, where: object) -> DiskFullError | None:
    """A one-line :class:`DiskFullError` for ``exc`` if it is a full disk (or quota), else None."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return DiskFullError(
            f"no space left on the device holding {where} ({os.strerror(exc.errno or 0)})",
            hint="free some space (`lamina store gc` removes what no image uses) or point LAMINA_STORE / "
                 "the output at a larger disk, then run again; nothing half-written was kept",
        )
    return None


@contextlib.contextmanager
def full_disk_reported(where: object) -> Iterator[None]:
    """Turn a full-disk ``OSError`` raised inside the block into :class:`DiskFullError` naming ``where``."""
    try:
        yield
    except OSError as e:
        if (full := disk_error(e, where)) is not None:
            raise full from None
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or create in ``path`` durable (the entry lives in the directory, not the file)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_file(directory: Path, prefix: str) -> tuple[IO[bytes], Path]:
    """A new temp file in ``directory``, opened for writing, with the normal mode already set."""
    with full_disk_reported(directory):
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix)
    try:
        os.fchmod(fd, file_mode())
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return os.fdopen(fd, "wb"), Path(name)


def commit_file(f: IO[bytes], tmp: Path, path: Path) -> None:
    """Flush and fsync the temp file ``f`` (at ``tmp``), close it, rename it to ``path``, fsync the directory."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, path)
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_file(path: Path, *, tmp_dir: Path | None = None) -> Iterator[IO[bytes]]:
    """A file to write that appears at ``path`` only once complete (temp file, fsync, rename, fsync dir).

    ``tmp_dir`` must be on the same filesystem as ``path`` (the rename is atomic only there).
    """
    directory = tmp_dir or path.parent
    directory.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    f, tmp = temp_file(directory, ".tmp-")
    try:
        with f:
            yield f
            commit_file(f, tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if (full := disk_error(e, path)) is not None:
            raise full from None
        raise


def atomic_write(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_file(path, tmp_dir=tmp_dir) as f:
        f.write(data)
