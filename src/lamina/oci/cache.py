"""The registry as a shared layer cache: which blob the inputs with a given key made, and where it is.

Every layer lamina builds is looked up by a key of its inputs (:mod:`lamina.oci.layer`). A push
records, for each layer of the images it pushed, ``key → (diff_id, digest, size, media type, the
repository and image manifest that hold it)`` in one small OCI artifact per family, the *cache
index* (``REGISTRY/OWNER/lamina-cache:layers`` unless configured). A build on a machine whose store
lacks a layer reads that index once (one manifest and one blob GET) and reuses the layer as it is:

- pushing, the blob is never downloaded: the push skips or mounts it (:attr:`Image.remote_blobs`);
- writing a layout or an archive, it is downloaded into the store, and its content is checked
  against the diff_id the entry promises before the layer is used.

The image manifests themselves are untouched (no key annotations), so the digests a build gives do
not depend on whether a cache was used, and Docker schema2 images (which have no annotations) are
cached the same way.

Trust: an entry is used only if its repository is one the caller trusts (the project's own push
targets and the repositories of configured cache references), and only if the image it names pairs
that digest with that diff_id (its manifest and config, fetched by digest, are the attestation); a
downloaded blob must decompress to that diff_id. An entry that fails a check is reported and the
layer is built locally. Who can push to those repositories can poison the cache — as they could
push a poisoned image; docs/cache.md says how to scope a cache (per branch).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lamina.errors import LaminaError
from lamina.oci import mediatypes as mt
from lamina.oci.compress import Writer, compression_of, compressor_id, decompressor
from lamina.oci.digest import sha256_digest
from lamina.oci.model import Descriptor, Document
from lamina.oci.records import StoredLayer
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore

log = logging.getLogger(__name__)

ARTIFACT_TYPE = "application/vnd.lamina.layer-cache.v1"
INDEX_MEDIA_TYPE = "application/vnd.lamina.layer-cache.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
DEFAULT_REPOSITORY = "lamina-cache"
DEFAULT_TAG = "layers"
#: An index keeps the entries of the latest pushes, newest first, up to this many (a few hundred kB).
MAX_ENTRIES = 4000

Warn = Callable[[str], None]


@dataclass(frozen=True)
class CacheEntry:
    """One layer as a push recorded it: the key of its inputs and where its blob is."""

    key: str  # the hex of the full input key (inputs, media type, compressor, mtime)
    diff_id: str
    digest: str
    size: int
    media_type: str
    repository: str  # host/repo holding the blob
    image: str  # digest of a manifest in ``repository`` with this layer
    #: The CPU architectures of its ELF files (see :class:`lamina.oci.layer.BuiltLayer`), if known.
    elf: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        del out["key"]
        if self.elf is None:
            del out["elf"]
        else:
            out["elf"] = dict(self.elf)
        return out

    @classmethod
    def from_json(cls, key: str, obj: Mapping[str, object]) -> CacheEntry:
        elf = obj.get("elf")
        return cls(key, str(obj["diff_id"]), str(obj["digest"]), int(obj["size"]),  # type: ignore[call-overload]
                   str(obj["media_type"]), str(obj["repository"]), str(obj["image"]),
                   {str(k): str(v) for k, v in elf.items()} if isinstance(elf, dict) else None)


@dataclass
class CacheIndex:
    """What one cache reference holds: layer entries by key, and small records by kind and key (facts
    derived from content addressed by its digest, e.g. the modules a wheel provides, so that a build
    that reuses layers need not fetch what they were made from to check them)."""

    layers: dict[str, CacheEntry] = field(default_factory=dict)
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: The digest of the index blob it was read from (None: there was none).
    digest: str | None = None


@dataclass(frozen=True)
class RemoteLayer:
    """A layer found in the cache: its blob, and the repository (``host/repo``) it can come from
    (None once it is in the local store)."""

    layer: StoredLayer
    origin: str | None
    elf: Mapping[str, str] | None = None


def default_reference(registry: str, owner: str | None) -> Reference:
    """``REGISTRY/OWNER/lamina-cache:layers``: where a family's pushes record their layers."""
    repository = "/".join(p for p in (owner, DEFAULT_REPOSITORY) if p)
    return Reference.parse(f"{registry}/{repository}").with_tag(DEFAULT_TAG)


def repository_of(ref: Reference) -> str:
    return f"{ref.registry}/{ref.repository}"


class RemoteLayers:
    """The registry cache of one build: indexes read once (lazily, thread-safe), entries checked on
    first use. ``fetch``: download a found blob into the store (verified) — for builds that write a
    layout or an archive; else the blob stays in the registry and only its entry is checked, unless it
    is on another registry than ``push_registry`` (a push there would download it anyway: it is
    downloaded now, so that its content is checked before it enters an image)."""

    def __init__(self, refs: Sequence[Reference], registries: Registries, store: BlobStore, *,
                 trusted: Iterable[str], fetch: bool = False, push_registry: str | None = None,
                 warn: Warn | None = None) -> None:
        self.refs = list(dict.fromkeys(refs))
        self.registries = registries
        self.store = store
        self.trusted = frozenset(trusted) | {repository_of(r) for r in self.refs}
        self.fetch = fetch
        self.push_registry = push_registry
        self.warn = warn or (lambda text: None)
        self._lock = threading.RLock()
        self._entries: dict[str, CacheEntry] | None = None
        #: Each reference's index as read (for the push that updates it).
        self.indexes: dict[str, CacheIndex] = {}
        self._verdicts: dict[str, RemoteLayer | None] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._pairs: dict[tuple[str, str], dict[str, tuple[str, int]] | None] = {}
        self.hits = 0
        self.rejected: list[str] = []

    # -- reading ----------------------------------------------------------------------------------

    def entries(self) -> dict[str, CacheEntry]:
        """Every trusted entry of every cache reference (the first reference wins a key)."""
        with self._lock:
            if self._entries is None:
                entries: dict[str, CacheEntry] = {}
                for ref in self.refs:
                    self.indexes[str(ref)] = read_index(ref, self.registries, self.warn)
                    for key, entry in self.indexes[str(ref)].layers.items():
                        if entry.repository not in self.trusted:
                            continue  # only the project's repositories and configured caches are believed
                        entries.setdefault(key, entry)
                self._entries = entries
            return self._entries

    def read_ahead(self) -> threading.Thread:
        """Start reading the indexes in a background thread, for a build that will read them anyway (a
        push reads its own cache's to update it): the first layer the store lacks then finds them read
        instead of waiting for their requests, which went out while the family was planned."""
        def read() -> None:
            try:
                self.entries()
            except Exception as exc:  # noqa: BLE001 - not kept: entries() reads again where needed, and says why
                log.debug("reading the layer caches ahead failed: %s", exc)

        thread = threading.Thread(target=read, name="lamina-cache-read", daemon=True)
        thread.start()
        return thread

    def seed_records(self, kinds: Iterable[str]) -> int:
        """Copy the caches' records of ``kinds`` the store lacks into it; returns how many."""
        self.entries()
        added = 0
        for index in self.indexes.values():
            for kind in kinds:
                for key, record in index.records.get(kind, {}).items():
                    if self.store.get_key(kind, key) is None:
                        self.store.put_key(kind, key, record)
                        added += 1
        return added

    def find(self, key: str, media_type: str) -> RemoteLayer | None:
        """The layer the cache has for ``key`` (the hex of a full input key), checked; None if it has
        none, or if its entry fails a check (then a warning says why and the layer is built here)."""
        with self._lock:
            if key in self._verdicts:
                return self._verdicts[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one check (and download) per key, however many threads ask
            return self._find(key, media_type)

    def _find(self, key: str, media_type: str) -> RemoteLayer | None:
        with self._lock:
            if key in self._verdicts:
                return self._verdicts[key]
        entry = self.entries().get(key)
        found = None
        if entry is not None and entry.media_type == media_type:
            problem = self._check(entry)
            fetch = self.fetch or entry.repository.partition("/")[0] != self.push_registry
            if problem is None and fetch:
                problem = self._download(entry)
            if problem is None:
                origin = None if fetch else entry.repository
                found = RemoteLayer(StoredLayer(entry.diff_id, entry.digest, entry.size, entry.media_type), origin,
                                    entry.elf)
            else:
                self.rejected.append(entry.digest)
                self.warn(f"layer cache entry {key[:12]} in {entry.repository} ignored, the layer is built here: "
                          f"{problem}")
        with self._lock:
            if key not in self._verdicts:
                self._verdicts[key] = found
                self.hits += found is not None
            return self._verdicts[key]

    def _check(self, entry: CacheEntry) -> str | None:
        """Why the entry cannot be believed (None: it can): the image it names must pair its digest,
        size and diff_id."""
        pairs = self._image_pairs(entry.repository, entry.image)
        if pairs is None:
            return f"its image {entry.image} cannot be read"
        if entry.digest not in pairs:
            return f"its image {entry.image} has no layer {entry.digest}"
        diff_id, size = pairs[entry.digest]
        if (diff_id, size) != (entry.diff_id, entry.size):
            return (f"it says {entry.digest} holds {entry.diff_id} ({entry.size} bytes), its image says "
                    f"{diff_id} ({size} bytes)")
        return None

    def _image_pairs(self, repository: str, digest: str) -> dict[str, tuple[str, int]] | None:
        """layer digest → (diff_id, size) of a pushed image (manifest and config fetched by digest)."""
        with self._lock:
            if (repository, digest) in self._pairs:
                return self._pairs[(repository, digest)]
            host, _, repo = repository.partition("/")
            client = self.registries.client(host)
            pairs: dict[str, tuple[str, int]] | None = None
            try:
                manifest = json.loads(client.get_manifest(repo, digest).data)
                config_desc = Descriptor.from_json(manifest["config"])
                if not self.store.has(config_desc.digest):
                    with self.store.writing(config_desc.digest) as sink:
                        client.fetch_blob(repo, config_desc.digest, sink)
                config = json.loads(self.store.read_bytes(config_desc.digest))
                layers = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
                diff_ids = config["rootfs"]["diff_ids"]
                if len(layers) == len(diff_ids):
                    pairs = {d.digest: (diff_id, d.size) for d, diff_id in zip(layers, diff_ids)}
            except (LaminaError, ValueError, KeyError, TypeError) as exc:
                self.warn(f"layer cache: image {repository}@{digest} unreadable ({exc})")
            self._pairs[(repository, digest)] = pairs
            return pairs

    def _download(self, entry: CacheEntry) -> str | None:
        """Fetch the blob into the store, checking its digest and that it decompresses to the promised
        diff_id; record it as a layer of the store. The problem, if any."""
        existing = self.store.find_layer(entry.diff_id, entry.media_type, compressor_id(compression_of(entry.media_type)))
        if existing is not None and existing.digest == entry.digest:
            return None
        host, _, repo = entry.repository.partition("/")
        client = self.registries.client(host)
        make = decompressor(entry.media_type)
        try:
            with self.store.writing(entry.digest) as sink:
                check = _DiffIdWriter(sink, make() if make else None)
                client.fetch_blob(repo, entry.digest, check)  # type: ignore[arg-type]  # a write-only sink
                diff_id = check.finish()
                if diff_id != entry.diff_id:
                    raise _Poisoned(f"{entry.digest} decompresses to {diff_id}, not the promised {entry.diff_id}")
        except _Poisoned as exc:
            return str(exc)
        except LaminaError as exc:
            return f"its blob could not be fetched ({exc.message})"
        layer = StoredLayer(entry.diff_id, entry.digest, entry.size, entry.media_type)
        self.store.record_layer(layer, compressor_id(compression_of(entry.media_type)))
        return None


class _Poisoned(Exception):
    pass


class _DiffIdWriter:
    """Passes compressed bytes to ``sink`` and hashes what they decompress to (the diff_id)."""

    def __init__(self, sink: Writer, decompress: Any | None) -> None:
        self.sink = sink
        self.decompress = decompress
        self.uncompressed = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sink.write(data)
        self.uncompressed.update(self.decompress.decompress(data) if self.decompress is not None else data)
        return len(data)

    def finish(self) -> str:
        if self.decompress is not None and hasattr(self.decompress, "flush"):
            self.uncompressed.update(self.decompress.flush())
        return "sha256:" + self.uncompressed.hexdigest()


def read_index(ref: Reference, registries: Registries, warn: Warn) -> CacheIndex:
    """The cache index at ``ref`` (empty when it does not exist yet or cannot be read: a cache is never
    needed to build)."""
    client = registries.client(ref.registry)
    try:
        if client.head_manifest(ref.repository, ref.identifier) is None:
            return CacheIndex()
        manifest = json.loads(client.get_manifest(ref.repository, ref.identifier).data)
        if manifest.get("artifactType") != ARTIFACT_TYPE:
            warn(f"layer cache {ref} is not a lamina layer cache (artifactType {manifest.get('artifactType')!r})")
            return CacheIndex()
        desc = next(Descriptor.from_json(d) for d in manifest["layers"] if d["mediaType"] == INDEX_MEDIA_TYPE)
        sink = io.BytesIO()
        client.fetch_blob(ref.repository, desc.digest, sink)
        data = json.loads(sink.getvalue())
        layers = {key: CacheEntry.from_json(key, obj) for key, obj in data.get("layers", {}).items()}
        records = {str(kind): {str(k): dict(v) for k, v in by_key.items()}
                   for kind, by_key in data.get("records", {}).items()}
        return CacheIndex(layers, records, desc.digest)
    except (LaminaError, ValueError, KeyError, TypeError, AttributeError, StopIteration) as exc:
        warn(f"layer cache {ref} unreadable, building without it ({exc})")
        return CacheIndex()


# -- writing ------------------------------------------------------------------------------------------


def index_document(new: Iterable[CacheEntry], previous: CacheIndex,
                   records: Mapping[str, Mapping[str, dict[str, Any]]] | None = None) -> bytes:
    """The index after a push: this push's entries first, then the previous ones, at most
    :data:`MAX_ENTRIES` (records likewise, per kind); serialized deterministically."""
    merged: dict[str, CacheEntry] = {}
    for entry in new:
        merged.setdefault(entry.key, entry)
    for key, entry in previous.layers.items():
        if len(merged) >= MAX_ENTRIES:
            break
        merged.setdefault(key, entry)
    kinds: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in sorted({*previous.records, *(records or {})}):
        by_key = dict((records or {}).get(kind, {}))
        for key, record in previous.records.get(kind, {}).items():
            if len(by_key) >= MAX_ENTRIES * 4:
                break
            by_key.setdefault(key, record)
        kinds[kind] = by_key
    # newest first (what a full index drops first is what was pushed longest ago)
    return json.dumps({"version": 1, "layers": {k: merged[k].to_json() for k in merged}, "records": kinds},
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class StagedIndex:
    """An index whose blobs are in the registry and whose manifest is not yet put (:func:`stage_index`):
    :meth:`commit` makes it the cache. Blobs that no manifest names change nothing for anyone."""

    ref: Reference
    registries: Registries
    warn: Warn
    manifest: Document | None  # None: the index already holds all of it, nothing to put
    count: int

    def commit(self) -> int:
        """Put the manifest (the tag then names the new index); returns how many layers it holds."""
        if self.manifest is None:
            return self.count
        try:
            client = self.registries.client(self.ref.registry)
            client.put_manifest(self.ref.repository, self.ref.identifier, self.manifest.data, self.manifest.media_type)
        except LaminaError as exc:
            self.warn(f"layer cache {self.ref} not updated ({exc.message})")
            return 0
        return self.count


def stage_index(ref: Reference, entries: Iterable[CacheEntry], registries: Registries, warn: Warn,
                previous: CacheIndex | None = None,
                records: Mapping[str, Mapping[str, dict[str, Any]]] | None = None) -> StagedIndex | None:
    """The first half of :func:`write_index`: merge, and upload the new index's blobs; None (after a
    warning) when that fails. A push stages its index while its images go up, and commits it after."""
    client = registries.client(ref.registry)
    if previous is None:
        previous = read_index(ref, registries, warn)
    data = index_document(entries, previous, records)
    if sha256_digest(data) == previous.digest:
        return StagedIndex(ref, registries, warn, None, len(previous.layers))  # nothing new: no request at all
    blob = Document(data, INDEX_MEDIA_TYPE)
    manifest = Document.of({
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": sha256_digest(EMPTY), "size": len(EMPTY)},
        "layers": [blob.descriptor().to_json()],
    }, mt.OCI_MANIFEST)
    try:
        client.push_blobs(ref.repository, [(sha256_digest(EMPTY), len(EMPTY), lambda: io.BytesIO(EMPTY)),
                                           (blob.digest, blob.size, lambda: io.BytesIO(data))])
    except LaminaError as exc:
        warn(f"layer cache {ref} not updated ({exc.message})")
        return None
    return StagedIndex(ref, registries, warn, manifest, len(json.loads(data)["layers"]))


def write_index(ref: Reference, entries: Iterable[CacheEntry], registries: Registries, warn: Warn,
                previous: CacheIndex | None = None,
                records: Mapping[str, Mapping[str, dict[str, Any]]] | None = None) -> int:
    """Record ``entries`` and ``records`` (merged with ``previous``, what the index had, read now if not
    given) at ``ref``; returns how many layers it holds. A cache is an optimisation: a failure to write
    it is a warning, never a failed build."""
    staged = stage_index(ref, entries, registries, warn, previous, records)
    return staged.commit() if staged is not None else 0
