"""The blob store: lamina's content-addressed cache, shared safely by concurrent lamina processes.

Layout under the store root::

    blobs/sha256/<hex>          every blob, named by the sha256 of its bytes
    layers/<diff_id hex>.<zip>  which compressed blob holds an uncompressed layer (JSON)
    keys/<kind>/<hex>.json      small records keyed by a hash of inputs (the build cache)
    images/<hex>.json           recorded images: the roots that ``gc`` keeps
    tmp/                        partial writes, renamed into place only when complete
    lock                        shared by builds, exclusive for ``gc``

Writes are atomic (temp file, fsync, rename); blobs are verified against their digest when read.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lamina.errors import DigestMismatchError, StoreError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import CHUNK, DigestWriter, hex_of, is_digest, sha256_digest

STORE_ENV = "LAMINA_STORE"
STORE_VERSION = "1"


def default_store_root(env: dict[str, str] | os._Environ[str] = os.environ) -> Path:
    """``$LAMINA_STORE``, else ``$XDG_CACHE_HOME/lamina``, else ``~/.cache/lamina``."""
    if env.get(STORE_ENV):
        return Path(env[STORE_ENV]).expanduser()
    cache = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "lamina"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: Path, *, tmp_dir: Path | None = None) -> Iterator[IO[bytes]]:
    """A file to write that appears at ``path`` only once complete (temp file, fsync, rename)."""
    directory = tmp_dir or path.parent
    directory.mkdir(parents=True, exist_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: Path, data: bytes, *, tmp_dir: Path | None = None) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_file(path, tmp_dir=tmp_dir) as f:
        f.write(data)


@dataclass(frozen=True)
class StoredLayer:
    """A compressed layer blob and the uncompressed content it holds."""

    diff_id: str
    digest: str
    size: int
    media_type: str


class BlobWriter:
    """Streams a new blob into a temp file; :meth:`commit` verifies it and renames it into place."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.tmp_dir, prefix="blob-")
        self._tmp = Path(name)
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hasher = DigestWriter(self._file)

    def write(self, data: bytes) -> int:
        return self._hasher.write(data)

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
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        target = self._store.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, target)
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


class BlobStore:
    """A content-addressed store of blobs plus the small records that make it a build cache."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        for d in (self.blobs_dir, self.tmp_dir, self.root / "layers", self.root / "keys", self.root / "images"):
            d.mkdir(parents=True, exist_ok=True)
        version = self.root / "VERSION"
        if not version.exists():
            atomic_write(version, STORE_VERSION.encode(), tmp_dir=self.tmp_dir)

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

    # -- layer index and keyed records -----------------------------------------------------------

    def _layer_record(self, diff_id: str, media_type: str, compressor: str) -> Path:
        suffix = media_type.rsplit("+", 1)[-1] if "+" in media_type else "tar"
        return self.root / "layers" / f"{hex_of(diff_id)}.{_key_hex(compressor)[:16]}.{suffix}"

    def find_layer(self, diff_id: str, media_type: str, compressor: str) -> StoredLayer | None:
        """The blob ``compressor`` (its exact identity: name, version, settings) already made for this
        content, if still stored. Another compressor's blob is not reused: its digest would differ from
        what a cold build with this one gives elsewhere."""
        record = self._read_json(self._layer_record(diff_id, media_type, compressor))
        if record is None or not self.has(record["digest"]):
            return None
        return StoredLayer(diff_id, record["digest"], record["size"], media_type)

    def record_layer(self, layer: StoredLayer, compressor: str) -> None:
        data = {"diff_id": layer.diff_id, "digest": layer.digest, "size": layer.size, "compressor": compressor}
        self._write_json(self._layer_record(layer.diff_id, layer.media_type, compressor), data)

    def get_key(self, kind: str, key: str) -> dict[str, Any] | None:
        """A record stored by :meth:`put_key` (e.g. the layer built from some inputs)."""
        return self._read_json(self.root / "keys" / kind / f"{_key_hex(key)}.json")

    def put_key(self, kind: str, key: str, record: dict[str, Any]) -> None:
        self._write_json(self.root / "keys" / kind / f"{_key_hex(key)}.json", record)

    # -- recorded images (gc roots) --------------------------------------------------------------

    def record_image(self, name: str, digest: str, media_type: str) -> None:
        """Remember that ``name`` is this manifest/index: ``gc`` keeps everything it uses."""
        record = {"name": name, "digest": digest, "mediaType": media_type}
        self._write_json(self.root / "images" / f"{_key_hex(name)}.json", record)

    def images(self) -> list[dict[str, str]]:
        records = (self._read_json(p) for p in sorted((self.root / "images").glob("*.json")))
        return [r for r in records if r is not None]

    def _read_json(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a record torn by a crash of an older version: treat as absent

    def _write_json(self, path: Path, record: dict[str, Any]) -> None:
        atomic_write(path, json.dumps(record, sort_keys=True).encode(), tmp_dir=self.tmp_dir)

    # -- maintenance ----------------------------------------------------------------------------

    def verify(self, *, delete: bool = False) -> list[str]:
        """Digests of blobs whose content does not match their name (removed with ``delete``)."""
        bad = []
        with self.shared_lock():
            for path in sorted(self.blobs_dir.iterdir()):
                digest = "sha256:" + path.name
                if not is_digest(digest):
                    bad.append(digest)
                    continue
                with open(path, "rb") as f:
                    if hashlib.file_digest(f, "sha256").hexdigest() != path.name:
                        bad.append(digest)
                if delete and bad and bad[-1] == digest:
                    path.unlink()
        return bad

    def gc(self, *, dry_run: bool = False) -> tuple[int, int]:
        """Remove blobs no recorded image uses; returns (blobs removed, bytes freed)."""
        with self.exclusive_lock():
            keep = self._reachable()
            removed = freed = 0
            for path in self.blobs_dir.iterdir():
                if f"sha256:{path.name}" in keep:
                    continue
                removed += 1
                freed += path.stat().st_size
                if not dry_run:
                    path.unlink()
            if not dry_run:
                self._drop_dangling_records()
                for tmp in self.tmp_dir.iterdir():  # nobody writes while we hold the lock
                    tmp.unlink()
            return removed, freed

    def _reachable(self) -> set[str]:
        keep: set[str] = set()
        todo = [(r["digest"], r["mediaType"]) for r in self.images()]
        while todo:
            digest, media_type = todo.pop()
            if digest in keep or not self.has(digest):
                continue
            keep.add(digest)
            if media_type in mt.INDEX_TYPES or media_type in mt.MANIFEST_TYPES:
                todo.extend(self._children(digest, media_type))
        return keep

    def _children(self, digest: str, media_type: str) -> list[tuple[str, str]]:
        try:
            doc = json.loads(self.read_bytes(digest))
        except (DigestMismatchError, ValueError):
            return []
        if media_type in mt.INDEX_TYPES:
            return [(m["digest"], m.get("mediaType", mt.OCI_MANIFEST)) for m in doc.get("manifests", [])]
        children = [(doc["config"]["digest"], doc["config"]["mediaType"])]
        return children + [(layer["digest"], layer["mediaType"]) for layer in doc.get("layers", [])]

    def _drop_dangling_records(self) -> None:
        for path in (self.root / "layers").iterdir():
            record = self._read_json(path)
            if record is None or not self.has(record["digest"]):
                path.unlink()


def _key_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
