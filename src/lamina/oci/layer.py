"""Turning entries into stored, compressed layers, each made once.

A layer is looked up by a key of its inputs before anything is read: the caller's key when it has
one (e.g. the hashes of the packages in it), else a signature of the entries' metadata and source
file stats (:func:`lamina.oci.tar.signature`). On a hit the stored blob is the layer. On a miss one
streaming pass goes tar → sha256 (diff_id) → compressor → sha256 → store, never holding the layer
in memory; if the store already had a blob for that diff_id, that blob is kept, so a layer's
compressed bytes never change once made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lamina.errors import LaminaError
from lamina.oci.compress import Compression, compression_of, compressor, compressor_id, workers
from lamina.oci.digest import DigestWriter
from lamina.oci.elf import elf_architecture, elf_header
from lamina.oci.files import full_disk_reported
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


def build_layer(
    store: BlobStore, spec: LayerSpec, *, compression: Compression, media_type: str, mtime: int
) -> BuiltLayer:
    """Make (or find) the compressed layer blob for ``spec``."""
    entries: list[Entry] | None = None
    key = spec.key
    if key is None:
        entries = list(spec.entries())
        key = "sig:" + signature(entries)
    full_key = _full_key(key, media_type, mtime, compression)
    if (found := cached_layer(store, key, media_type, mtime, compression)) is not None:
        record = store.get_key(LAYER_KEY_KIND, full_key) or {}
        return BuiltLayer(found, spec.description, True, record.get("elf"))
    elf: dict[str, str] = {}
    source = spec.entries() if entries is None else entries
    layer, reused = _write(store, note_architectures(source, elf), compression, media_type, mtime)
    store.put_key(LAYER_KEY_KIND, full_key, {"diff_id": layer.diff_id, "elf": dict(sorted(elf.items()))})
    return BuiltLayer(layer, spec.description, reused, elf)


def note_architectures(entries: Iterable[Entry], found: dict[str, str]) -> Iterator[Entry]:
    """Pass ``entries`` through, noting in ``found`` the architecture of every ELF executable or
    library (architecture → the first path seen), so a platform's image can be checked against it."""
    for entry in entries:
        if entry.kind == "file":
            arch = elf_architecture(elf_header(entry))
            if arch is not None:
                found.setdefault(arch, entry.path)
        yield entry


def cached_layer(
    store: BlobStore, key: str, media_type: str, mtime: int, compression: Compression | None = None
) -> StoredLayer | None:
    """The stored layer made earlier from inputs with this key, if any: callers use it to skip
    preparing inputs (downloads, installs) of layers that will not be made again. ``compression``
    defaults to what ``media_type`` names (for gzip, the default deflate)."""
    kind = compression or compression_of(media_type)
    record = store.get_key(LAYER_KEY_KIND, _full_key(key, media_type, mtime, kind))
    return store.find_layer(record["diff_id"], media_type, compressor_id(kind)) if record else None


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
            built = build_layer(store, spec, compression=compression, media_type=media_type, mtime=mtime)
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
