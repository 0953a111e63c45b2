"""The blob store: lamina's content-addressed cache, shared safely by concurrent lamina processes.

Layout under the store root::

    blobs/sha256/<hex>          every blob, named by the sha256 of its bytes
    layers/, keys/, images/     small JSON records that make it a build cache (see records.py)
    tmp/                        partial writes, renamed into place only when complete: each process in
                                its own folder, removed by the next run if the process died (scratch.py)
    lock                        shared by builds, exclusive for ``gc`` (see gc.py)

Writes are atomic and durable (temp file, fsync, rename, fsync of the directory; see files.py) and
files get normal modes; blobs are verified against their digest when read.

This module is the store's one entry point: the record and maintenance functions are reachable as
methods, and ``atomic_file``/``atomic_write``/``StoredLayer`` are re-exported for existing importers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lamina.errors import DigestMismatchError, StoreError
from lamina.oci import gc as _gc
from lamina.oci import records
from lamina.oci.scratch import Scratch, staging_root, sweep
from lamina.oci.digest import CHUNK, DigestWriter, hex_of, sha256_digest
from lamina.oci.files import atomic_file, atomic_write, commit_file, disk_error, full_disk_reported, temp_file
from lamina.oci.records import StoredLayer

__all__ = ["BlobStore", "BlobWriter", "StoredLayer", "VerifyingReader", "atomic_file", "atomic_write",
           "default_store_root"]

STORE_ENV = "LAMINA_STORE"
STORE_VERSION = "1"


def default_store_root(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """``$LAMINA_STORE``, else ``$XDG_CACHE_HOME/lamina``, else ``~/.cache/lamina``."""
    if env.get(STORE_ENV):
        return Path(env[STORE_ENV]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lamina"


class BlobWriter:
    """Streams a new blob into a temp file; :meth:`commit` verifies it and renames it into place."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._file, self._tmp = temp_file(store.tmp_dir, "blob-")
        self._hasher = DigestWriter(self._file)

    def write(self, data: bytes) -> int:
        try:
            return self._hasher.write(data)
        except OSError as e:
            self.abort()
            if (full := disk_error(e, self._store.root)) is not None:
                raise full from None
            raise

    @property
    def size(self) -> int:
        return self._hasher.size

    @property
    def digest(self) -> str:
        """The digest of what was written so far (of the whole blob once committed)."""
        return self._hasher.digest

    def commit(self, expected: str | None = None) -> str:
        """Finish the blob; with ``expected``, refuse it unless its digest matches."""
        digest = self._hasher.digest
        if expected is not None and digest != expected:
            self.abort()
            raise DigestMismatchError(
                f"blob content does not match its digest: expected {expected}, got {digest}",
                hint="the source sent corrupt data; nothing was stored",
            )
        target = self._store.path(digest)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            commit_file(self._file, self._tmp, target)
        except BaseException as e:
            self.abort()
            if (full := disk_error(e, self._store.root)) is not None:
                raise full from None
            raise
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


class VerifyingReader:
    """Reads a stored blob and raises :class:`DigestMismatchError` at its end if it is corrupt."""

    def __init__(self, path: Path, digest: str) -> None:
        self._file = open(path, "rb")
        self._digest = digest
        self._hash = hashlib.sha256()
        self._checked = False

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._hash.update(data)
        if (not data or n < 0) and not self._checked:
            self._checked = True
            actual = "sha256:" + self._hash.hexdigest()
            if actual != self._digest:
                raise DigestMismatchError(
                    f"stored blob {self._digest} is corrupt (its content hashes to {actual})",
                    hint="run `lamina store verify --delete`, then build again",
                )
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> VerifyingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _own_folder(path: Path) -> bool:
    """A real folder (not a link) owned by this user: in a shared /dev/shm another user could have made it first."""
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()


class BlobStore:
    """A content-addressed store of blobs plus the small records that make it a build cache."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_root = self.root / "tmp"
        self._scratch: Scratch | None = None
        self._staging: Scratch | None = None
        self._scratch_lock = threading.Lock()
        self.staging_root = staging_root(self.tmp_root)
        with full_disk_reported(self.root):
            for d in (self.blobs_dir, self.tmp_root, *(self.root / r for r in records.RECORD_DIRS)):
                d.mkdir(parents=True, exist_ok=True)
            version = self.root / "VERSION"
            if not version.exists():
                atomic_write(version, STORE_VERSION.encode())
            sweep(self.tmp_root)  # the temp folders of killed runs
        if self.staging_root != self.tmp_root:
            try:
                self.staging_root.mkdir(mode=0o700, parents=True, exist_ok=True)
                if not _own_folder(self.staging_root):
                    raise PermissionError(f"{self.staging_root} is not this user's own folder")
                sweep(self.staging_root)
            except OSError:
                self.staging_root = self.tmp_root  # not usable after all: stage in the store

    @property
    def tmp_dir(self) -> Path:
        """This process's own temp folder in the store (same filesystem as the blobs, so renames are atomic)."""
        with self._scratch_lock:
            if self._scratch is None:
                with full_disk_reported(self.root):
                    self._scratch = Scratch(self.tmp_root)
                weakref.finalize(self, self._scratch.release)  # also at interpreter exit
            return self._scratch.path

    @property
    def staging_dir(self) -> Path:
        """This process's own folder for staging layer trees (see :func:`lamina.oci.scratch.staging_root`:
        RAM-backed when the machine has room); nothing in it is ever renamed into the store."""
        if self.staging_root == self.tmp_root:
            return self.tmp_dir
        with self._scratch_lock:
            if self._staging is None:
                with full_disk_reported(self.staging_root):
                    self._staging = Scratch(self.staging_root)
                weakref.finalize(self, self._staging.release)
            return self._staging.path

    def close(self) -> None:
        """Remove this process's temp folders (a killed process's are removed by the next run)."""
        if self._scratch is not None:
            self._scratch.release()
            self._scratch = None
        if self._staging is not None:
            self._staging.release()
            self._staging = None

    @classmethod
    def open_default(cls, root: str | os.PathLike[str] | None = None) -> BlobStore:
        """The store at ``root`` (a flag), else at :func:`default_store_root`."""
        return cls(root if root is not None else default_store_root())

    # -- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        with open(self.root / "lock", "a+b") as f:
            fcntl.flock(f.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def shared_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while building or publishing: many processes may hold it at once."""
        return self._lock(fcntl.LOCK_SH)

    def exclusive_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by ``gc``: waits until no build holds the shared lock."""
        return self._lock(fcntl.LOCK_EX)

    # -- blobs ----------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        return self.blobs_dir / hex_of(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise self._missing(digest) from None

    def writer(self) -> BlobWriter:
        """A writer for a new blob (call ``commit`` or ``abort``)."""
        return BlobWriter(self)

    @contextlib.contextmanager
    def writing(self, expected: str | None = None) -> Iterator[BlobWriter]:
        """``with store.writing(digest) as w: w.write(...)``: committed on success, removed on error."""
        writer = self.writer()
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit(expected)

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` (verified against ``expected`` when given); returns its digest."""
        digest = sha256_digest(data)
        if expected is not None and digest != expected:
            raise DigestMismatchError(
                f"content does not match its digest: expected {expected}, got {digest}",
                hint="the source sent corrupt data; nothing was stored",
            )
        if not self.has(digest):
            atomic_write(self.path(digest), data, tmp_dir=self.tmp_dir)
        return digest

    def read_bytes(self, digest: str) -> bytes:
        """A whole (small) blob, verified."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise self._missing(digest) from None
        if sha256_digest(data) != digest:
            raise DigestMismatchError(
                f"stored blob {digest} is corrupt",
                hint="run `lamina store verify --delete`, then build again",
            )
        return data

    def open(self, digest: str) -> VerifyingReader:
        """A stream over a blob that checks its digest when the end is reached."""
        path = self.path(digest)
        if not path.is_file():
            raise self._missing(digest)
        return VerifyingReader(path, digest)

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy a blob to ``dest`` atomically, verifying it on the way."""
        with atomic_file(dest) as out, self.open(digest) as src:
            shutil.copyfileobj(src, out, CHUNK)  # type: ignore[misc]

    def _missing(self, digest: str) -> StoreError:
        return StoreError(
            f"blob {digest} is not in the store at {self.root}",
            hint="it was removed (gc or by hand) or never fetched; build or pull again",
        )

    # -- records (records.py) and maintenance (gc.py) --------------------------------------------------

    def find_layer(self, diff_id: str, media_type: str, compressor: str) -> StoredLayer | None:
        """The blob ``compressor`` already made for this uncompressed content, if still stored."""
        return records.find_layer(self, diff_id, media_type, compressor)

    def record_layer(self, layer: StoredLayer, compressor: str) -> None:
        records.record_layer(self, layer, compressor)

    def get_key(self, kind: str, key: str) -> dict[str, Any] | None:
        """A record stored by :meth:`put_key` (e.g. the layer built from some inputs)."""
        return records.get_key(self, kind, key)

    def put_key(self, kind: str, key: str, record: dict[str, Any]) -> None:
        records.put_key(self, kind, key, record)

    def record_image(self, name: str, digest: str, media_type: str) -> None:
        """Remember that ``name`` is this manifest/index: ``gc`` keeps everything it uses."""
        records.record_image(self, name, digest, media_type)

    def images(self) -> list[dict[str, str]]:
        return records.images(self)

    def verify(self, *, delete: bool = False) -> list[str]:
        """Digests of blobs whose content does not match their name (removed with ``delete``)."""
        return _gc.verify(self, delete=delete)

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove blobs no recorded image uses; returns (blobs removed, bytes freed)."""
        return _gc.gc(self, dry_run=dry_run)
