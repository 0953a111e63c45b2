"""Per-process temp folders in the store, so the leftovers of a killed run are removed by the next one.

Each process that writes to the store works in ``tmp/p<pid>-<random>/`` and holds an exclusive ``flock`` on
``tmp/p<pid>-<random>.alive`` for as long as it lives (the kernel drops the lock when the process dies,
however it dies: SIGKILL, OOM, power loss). The lock file is locked *before* it gets its visible name,
so a visible ``.alive`` that can be locked belongs to a dead process: :func:`sweep` (run whenever a store
is opened) removes its folder, then the lock file. Concurrent runs never touch each other's folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from lamina.oci.files import file_mode

ALIVE = ".alive"
CLAIMING = ".claim-"
#: A RAM-backed filesystem is used for staging only with this much free space.
STAGING_MIN_FREE = 4 << 30
#: Where RAM-backed temp space usually is.
RAM_FOLDERS = ("/dev/shm",)


def staging_root(default: Path) -> Path:
    """Where layer trees are staged (wheels unpacked and compiled before they are written as a tar):
    ``$LAMINA_STAGING`` when set, else a RAM-backed tmpfs (``/dev/shm``) with at least
    :data:`STAGING_MIN_FREE` free, else ``default`` (the store's own temp folder).

    A cold build creates, reads back and deletes tens of thousands of small files there; on a disk
    filesystem (ext4 with ``discard`` above all) the kernel's share of that work is seconds of CPU, on
    tmpfs a fraction. Nothing staged is ever renamed into the store, so staging needs no common
    filesystem with it; and the folders of killed runs are swept there as in the store (:func:`sweep`)."""
    chosen = os.environ.get("LAMINA_STAGING")
    if chosen:
        return Path(chosen).expanduser().absolute()
    for folder in RAM_FOLDERS:
        if _tmpfs_with_room(folder):
            return Path(folder) / f"lamina-{os.getuid()}"
    return default


def _tmpfs_with_room(folder: str) -> bool:
    try:
        with open("/proc/self/mounts") as mounts:
            if not any(line.split()[1:3] == [folder, "tmpfs"] for line in mounts if len(line.split()) > 2):
                return False
        stat = os.statvfs(folder)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= STAGING_MIN_FREE and os.access(folder, os.W_OK | os.X_OK)


class Scratch:
    """This process's own temp folder under ``tmp_root``, alive while the object is."""

    def __init__(self, tmp_root: Path) -> None:
        for _ in range(5):
            name = f"p{os.getpid()}-{secrets.token_hex(4)}"
            fd, claim = tempfile.mkstemp(dir=tmp_root, prefix=CLAIMING)
            os.fchmod(fd, file_mode())  # a normal mode, as every file lamina writes
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.rename(claim, tmp_root / (name + ALIVE))
            except FileNotFoundError:  # a sweeper took the claim for a dead one before we locked it
                os.close(fd)
                continue
            self.fd = fd
            self.lock = tmp_root / (name + ALIVE)
            self.path = tmp_root / name
            self.path.mkdir()
            return
        raise OSError(f"could not claim a temp folder in {tmp_root}")

    def release(self) -> None:
        """Remove the folder and give up the lock (also done by :func:`sweep` after a crash)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.lock.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def sweep(tmp_root: Path) -> int:
    """Remove the temp folders (and stray claims) of dead processes; returns how many were removed."""
    removed = 0
    try:
        names = os.listdir(tmp_root)
    except FileNotFoundError:
        return 0
    for name in names:
        if not (name.endswith(ALIVE) or name.startswith(CLAIMING)):
            continue
        lock = tmp_root / name
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive
            if name.endswith(ALIVE):
                shutil.rmtree(tmp_root / name[: -len(ALIVE)], ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            removed += 1
        finally:
            os.close(fd)
    return removed


def live_folders(tmp_root: Path) -> set[str]:
    """Names of the temp folders whose process still holds its lock."""
    live = set()
    for lock in tmp_root.glob("*" + ALIVE):
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live.add(lock.name[: -len(ALIVE)])
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    return live
