"""Turning entries into stored, compressed layers, each made once.

A layer is looked up by a key of its inputs before anything is read: the caller's key when it has
one (e.g. the hashes of the packages in it), else a signature of the entries' metadata and source
file stats (:func:`lamina.oci.tar.signature`). On a hit the stored blob is the layer. On a miss one
streaming pass goes tar → sha256 (diff_id) → compressor → sha256 → store, never holding the layer
in memory; if the store already had a blob for that diff_id, that blob is kept, so a layer's
compressed bytes never change once made.

Between the store and building sits the registry cache (:mod:`lamina.oci.cache`), when the build has
one: it is asked for the layer's *portable* key — the caller's key, or for a layer of files a hash
of their content (a signature of file stats means nothing on another machine).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lamina.errors import LaminaError
from lamina.oci.cache import RemoteLayers
from lamina.oci.compress import Compression, compression_of, compressor, compressor_id, workers
from lamina.oci.digest import DigestWriter
from lamina.oci.elf import elf_architecture, elf_header
from lamina.oci.files import full_disk_reported
from lamina.oci.records import key_hex
from lamina.oci.store import BlobStore, StoredLayer
from lamina.oci.tar import Entry, signature, tar_chunks

LAYER_KEY_KIND = "layer"
#: The most layers lamina lets an image have (base included): container runtimes fail near 127.
LAYER_BUDGET = 100
#: lamina's own layer format: the tar writer and the path and mode rules applied to entries (tar.py,
#: paths.py). Part of every layer key: a layer made by a lamina with other rules (say, before path
#: safety was lamina's own) is never reused, it is made again. Bump it whenever those rules change.
LAYER_FORMAT = "lamina-layer-2"
#: Layers being made at once, per core (see :func:`build_layers`).
IN_FLIGHT = 2


@dataclass(frozen=True)
class LayerSpec:
    """What to put in one layer. ``entries`` is called at most once per build.

    ``key``, when given, must change whenever the entries' content could (e.g. a hash of the
    inputs); without it, the entries' :func:`signature` is the key.
    """

    entries: Callable[[], Iterable[Entry]]
    description: str
    key: str | None = None
    #: Names what the layer is made of when ``key`` is not given (e.g. a copy's source and settings):
    #: two specs with the same identity make the same layer, so a family builds it once.
    identity: str | None = None
    #: How much work the layer is, roughly (bytes of input): the heaviest are started first.
    weight: int = 0

    @property
    def same(self) -> str | None:
        """What makes two specs the same layer, if anything does."""
        return self.key or self.identity


@dataclass(frozen=True)
class BuiltLayer:
    layer: StoredLayer
    description: str
    reused: bool
    #: The CPU architectures of the ELF executables and libraries in it (architecture → one such path);
    #: None when unknown (a layer recorded by an older lamina).
    elf: Mapping[str, str] | None = None
    #: The hex of the layer's full portable input key: what the registry cache records it under.
    key: str | None = None
    #: The registry repository (``host/repo``) its blob is in when it is not in the store (a cache hit).
    origin: str | None = None


def build_layer(
    store: BlobStore, spec: LayerSpec, *, compression: Compression, media_type: str, mtime: int,
    remote: RemoteLayers | None = None,
) -> BuiltLayer:
    """Make (or find, in the store or the registry cache) the compressed layer blob for ``spec``."""
    entries: list[Entry] | None = None
    key = spec.key
    if key is None:
        entries = list(spec.entries())
        key = "sig:" + signature(entries)
    full = _full_key(key, media_type, mtime, compression)
    record = store.get_key(LAYER_KEY_KIND, full)
    found = _stored(store, record, media_type, compression)
    # the portable key of a layer of files costs a read of its files: only builds with a registry cache need it
    content = remote is not None
    if found is not None and record is not None:
        portable = record.get("portable") or _portable(spec, entries, media_type, mtime, compression, content=content)
        return BuiltLayer(found, spec.description, True, record.get("elf"), portable)
    portable = _portable(spec, entries, media_type, mtime, compression, content=content)
    if remote is not None and portable is not None and (hit := remote.find(portable, media_type)) is not None:
        if hit.origin is None:  # downloaded and checked: a layer of the store from now on
            store.put_key(LAYER_KEY_KIND, full, {"diff_id": hit.layer.diff_id, "portable": portable, "elf": hit.elf})
        return BuiltLayer(hit.layer, spec.description, True, hit.elf, portable, hit.origin)
    elf: dict[str, str] = {}
    source = spec.entries() if entries is None else entries
    layer, reused = _write(store, note_architectures(source, elf), compression, media_type, mtime)
    elf = dict(sorted(elf.items()))
    record = {"diff_id": layer.diff_id, "elf": elf, **({"portable": portable} if portable else {})}
    store.put_key(LAYER_KEY_KIND, full, record)
    return BuiltLayer(layer, spec.description, reused, elf, portable)


def note_architectures(entries: Iterable[Entry], found: dict[str, str]) -> Iterator[Entry]:
    """Pass ``entries`` through, noting in ``found`` the architecture of every ELF executable or
    library (architecture → the first path seen), so a platform's image can be checked against it."""
    for entry in entries:
        if entry.kind == "file":
            arch = elf_architecture(elf_header(entry))
            if arch is not None:
                found.setdefault(arch, entry.path)
        yield entry


def cached_layer(store: BlobStore, key: str, media_type: str, mtime: int, compression: Compression | None = None,
                 remote: RemoteLayers | None = None) -> StoredLayer | None:
    """The layer made earlier from inputs with this key — in the store, else in the registry cache
    (checked) — if any: callers use it to skip preparing inputs (downloads, installs) of layers that
    will not be made here. ``compression`` defaults to what ``media_type`` names (for gzip, the default
    deflate)."""
    kind = compression or compression_of(media_type)
    full = _full_key(key, media_type, mtime, kind)
    found = _stored(store, store.get_key(LAYER_KEY_KIND, full), media_type, kind)
    if found is None and remote is not None and (hit := remote.find(key_hex(full), media_type)) is not None:
        return hit.layer
    return found


def available(store: BlobStore, spec: LayerSpec, media_type: str, mtime: int, compression: Compression | None = None,
              remote: RemoteLayers | None = None) -> bool:
    """Whether the layer exists already (in the store, or in the registry cache, checked): a build would
    neither make nor fetch it."""
    kind = compression or compression_of(media_type)
    if spec.key is not None:
        return cached_layer(store, spec.key, media_type, mtime, kind, remote) is not None
    entries = list(spec.entries())
    if cached_layer(store, "sig:" + signature(entries), media_type, mtime, kind) is not None:
        return True
    if remote is None:
        return False
    portable = _portable(spec, entries, media_type, mtime, kind)
    return portable is not None and remote.find(portable, media_type) is not None


def _stored(store: BlobStore, record: dict | None, media_type: str, compression: Compression) -> StoredLayer | None:
    if record is None:
        return None
    return store.find_layer(record["diff_id"], media_type, compressor_id(compression))


def _portable(spec: LayerSpec, entries: list[Entry] | None, media_type: str, mtime: int, compression: Compression, *,
              content: bool = True) -> str | None:
    """The key of the layer's inputs that means the same on every machine (hex of the full key); for a
    layer without a caller's key, the hash of its files' content (None unless ``content``)."""
    if spec.key is not None:
        return key_hex(_full_key(spec.key, media_type, mtime, compression))
    if not content:
        return None
    return key_hex(_full_key("content:" + content_key(entries if entries is not None else spec.entries()),
                             media_type, mtime, compression))


def content_key(entries: Iterable[Entry]) -> str:
    """A fingerprint of a layer's entries by their content (files are read and hashed): equal on
    every machine for equal files, whatever their paths, times or inodes there."""
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: tuple(e.path.split("/"))):
        if e.data is not None:
            content = hashlib.sha256(e.data).hexdigest()
        elif e.source is not None and e.kind == "file":
            content = _file_sha256(e.source)
        else:
            content = ""
        digest.update(f"{e.path}\0{e.kind}\0{e.mode}\0{e.uid}\0{e.gid}\0{e.target}\0{content}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: object) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:  # type: ignore[call-overload]
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _full_key(key: str, media_type: str, mtime: int, compression: Compression) -> str:
    return f"{key}\0{LAYER_FORMAT}\0{media_type}\0{compressor_id(compression)}\0{mtime}"


def _write(
    store: BlobStore, entries: Iterable[Entry], compression: Compression, media_type: str, mtime: int
) -> tuple[StoredLayer, bool]:
    """Tar and compress ``entries`` into the store; an existing blob for the same content wins."""
    with store.writing() as blob:
        packer = compressor(compression, blob)
        uncompressed = DigestWriter(packer)
        for chunk in tar_chunks(entries, mtime=mtime):
            uncompressed.write(chunk)
        packer.close()
    existing = store.find_layer(uncompressed.digest, media_type, compressor_id(compression))
    if existing is not None:
        return existing, True
    layer = StoredLayer(uncompressed.digest, blob.digest, blob.size, media_type)
    store.record_layer(layer, compressor_id(compression))
    return layer, False


def build_layers(
    store: BlobStore,
    specs: Sequence[LayerSpec],
    *,
    compression: Compression,
    media_type: str,
    mtime: int,
    on_done: Callable[[BuiltLayer], None] | None = None,
    remote: RemoteLayers | None = None,
) -> list[BuiltLayer]:
    """Build several layers (result order = ``specs`` order): the heaviest first, :data:`IN_FLIGHT` per
    core at a time, and each distinct layer once even when several specs describe it.

    A layer's work is in three kinds of workers, so that both cores stay busy through a cold build:
    preparing its entries in this process (installing wheels, unpacking packages: Python code, one at
    a time under the GIL), byte-compiling in child processes (:mod:`lamina.python.install`, one per
    core), and deflating in threads that release the GIL (:mod:`lamina.oci.compress`, one per core).
    With two layers per core in flight, while one installs, the others compile, tar or compress."""
    unique: dict[str, LayerSpec] = {}
    for i, spec in enumerate(specs):
        unique.setdefault(spec.same or f"#{i}", spec)

    def one(spec: LayerSpec) -> BuiltLayer:
        with full_disk_reported(store.root):
            built = build_layer(store, spec, compression=compression, media_type=media_type, mtime=mtime,
                                remote=remote)
        if on_done is not None:
            on_done(built)
        return built

    order = sorted(unique.items(), key=lambda item: -item[1].weight)
    if len(order) <= 1:
        results = {name: one(spec) for name, spec in order}
    else:
        with ThreadPoolExecutor(max_workers=min(len(order), IN_FLIGHT * workers())) as pool:
            results = dict(zip([name for name, _ in order], pool.map(one, [spec for _, spec in order])))
    return [results[spec.same or f"#{i}"] for i, spec in enumerate(specs)]


def input_key(*parts: str) -> str:
    """A stable key from input descriptions (for :class:`LayerSpec.key`)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def check_budget(image: str, base_layers: int, new_layers: int) -> None:
    """Refuse an image over :data:`LAYER_BUDGET` layers, whichever steps added them."""
    if base_layers + new_layers > LAYER_BUDGET:
        raise LaminaError(
            f"image {image!r} would have {base_layers + new_layers} layers ({base_layers} from its base, "
            f"{new_layers} its own), over lamina's budget of {LAYER_BUDGET}",
            hint="container runtimes fail near 127 layers; merge copy entries (one folder instead of many "
                 "files) or move requirements into fewer images",
        )
