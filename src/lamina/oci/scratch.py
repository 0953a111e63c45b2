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
