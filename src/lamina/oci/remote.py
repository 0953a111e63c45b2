"""Images in registries: pulling a base (documents now, layers only when needed) and pushing images.

Push order, as Jib and crane do: HEAD each blob (skip what the target has), cross-repository mount
from the base's repository when it lives on the same registry, upload only what is left. A base layer
is downloaded only when an output really needs its bytes (a layout, an archive, or a push to another
registry that lacks it), and then it is verified and kept in the store.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from lamina.errors import LaminaError
from lamina.oci import mediatypes as mt
from lamina.oci.documents import MAX_DOCUMENT, check_config, check_manifest, too_large
from lamina.oci.model import Index, Descriptor, Document, Image, Platform
from lamina.oci.reference import Reference
from lamina.oci.registry.client import RegistryClient
from lamina.oci.registry.credentials import Credential
from lamina.oci.store import BlobStore


@dataclass
class Registries:
    """One client per registry host, created on first use with the user's settings."""

    insecure: frozenset[str] = frozenset()
    credential: Credential | None = None
    credential_host: str | None = None
    chunk_size: int | None = None
    _clients: dict[str, RegistryClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, registry: str) -> RegistryClient:
        with self._lock:
            if registry not in self._clients:
                explicit = self.credential if self.credential_host in (None, registry) else None
                self._clients[registry] = RegistryClient(
                    registry,
                    credential=explicit,
                    insecure=registry in self.insecure,
                    chunk_size=self.chunk_size,
                )
            return self._clients[registry]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def split_origin(origin: str) -> tuple[str, str]:
    """``host/repo/path`` → (``host``, ``repo/path``)."""
    host, _, repo = origin.partition("/")
    return host, repo


def pull_image(ref: Reference, platform: Platform, store: BlobStore, registries: Registries) -> Image:
    """The manifest and config of ``ref`` for ``platform`` (stored); layers stay remote until needed."""
    client = registries.client(ref.registry)
    fetched = client.get_manifest(ref.repository, ref.identifier)
    manifest = Document(fetched.data, fetched.media_type)
    if fetched.media_type in mt.INDEX_TYPES:
        manifest = _pick_platform(client, ref, manifest, platform)
    if manifest.media_type not in mt.MANIFEST_TYPES:
        raise LaminaError(
            f"{ref} is a {manifest.media_type}, not an image",
            hint="point `from` at a container image",
        )
    obj = check_manifest(manifest.data, manifest.media_type, f"manifest of {ref}")
    store.put_bytes(manifest.data, manifest.digest)
    config_desc = Descriptor.from_json(obj["config"])
    if config_desc.size > MAX_DOCUMENT:
        raise too_large(f"the config of {ref}", config_desc.size)
    if not store.has(config_desc.digest):
        _fetch_into_store(client, ref.repository, config_desc.digest, store)
    data = store.read_bytes(config_desc.digest)
    check_config(data, len(obj["layers"]), f"the config of {ref}")
    config = Document(data, config_desc.media_type)
    store.record_image(f"pulled {ref}", manifest.digest, manifest.media_type)
    image = Image(manifest, config, origin=f"{ref.registry}/{ref.repository}")
    return Image(manifest, config, image.origin, frozenset(d.digest for d in image.blobs()))


def _pick_platform(client: RegistryClient, ref: Reference, index: Document, platform: Platform) -> Document:
    entries = index.json().get("manifests", [])
    for entry in entries:
        if entry.get("platform") and platform.matches(entry["platform"]):
            fetched = client.get_manifest(ref.repository, entry["digest"])
            return Document(fetched.data, fetched.media_type)
    available = ", ".join(
        str(Platform(e["platform"]["os"], e["platform"]["architecture"], e["platform"].get("variant")))
        for e in entries
        if e.get("platform")
    )
    raise LaminaError(
        f"{ref} has no image for {platform}",
        hint=f"it has: {available or 'no platform entries'}; set `platform` to one of them",
    )


def _fetch_into_store(client: RegistryClient, repo: str, digest: str, store: BlobStore) -> None:
    with store.writing(digest) as blob:
        client.fetch_blob(repo, digest, blob)  # type: ignore[arg-type]


def ensure_blobs(image: Image, store: BlobStore, registries: Registries) -> int:
    """Fetch every blob of ``image`` missing from the store (from its origin); returns bytes fetched."""
    fetched = 0
    for desc in image.blobs():
        if not store.has(desc.digest):
            fetch_from_origin(image, desc.digest, store, registries)
            fetched += desc.size
    return fetched


def fetch_from_origin(image: Image, digest: str, store: BlobStore, registries: Registries) -> None:
    """Fetch one blob of ``image`` from the registry it is known to be in (its base's repository, or
    the one the layer cache named) into the store (verified)."""
    source = image.source_of(digest) or image.origin
    if source is None:
        raise LaminaError(
            f"blob {digest} of the image is not in the store and has no registry to come from",
            hint="build again (the store was cleaned while the image was in use)",
        )
    host, repo = split_origin(source)
    _fetch_into_store(registries.client(host), repo, digest, store)


@dataclass(frozen=True)
class PushReport:
    target: str
    digest: str
    outcomes: dict[str, str]
    bytes_uploaded: int

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes.values() if o == outcome)


def push_image(
    image: Image,
    target: Reference,
    tags: Sequence[str],
    store: BlobStore,
    registries: Registries,
    *,
    mount_sources: Mapping[str, Sequence[str]] | None = None,
    on_blob: Callable[[str, str], None] | None = None,
    done: Mapping[str, tuple[str, int]] | None = None,
) -> PushReport:
    """Push ``image`` to ``target``'s repository under each tag; uploads only what is missing.

    A blob the target lacks is mounted, when it can be, from a repository of the same registry
    known to hold it: ``mount_sources`` (digest → repositories, e.g. images pushed just before)
    and the repository the image's base came from. ``done`` (digest → outcome, size) names blobs
    already sent to this repository in this run (uploaded while the family was built): they are not
    sent again, and are reported with that outcome.
    """
    done = done or {}
    client = registries.client(target.registry)
    tags = list(tags or [target.identifier])
    present = _blobs_already_there(client, target.repository, tags, image)
    if present is None:
        return _nothing_to_send(client, target, image.digest, image.blobs())
    sources = {d: list(repos) for d, repos in (mount_sources or {}).items()}
    if image.origin is not None:
        host, repo = split_origin(image.origin)
        for digest in image.origin_blobs if host == target.registry else ():
            sources.setdefault(digest, []).insert(0, repo)
    for digest, source in image.remote_blobs.items():
        host, repo = split_origin(source)
        if host == target.registry:
            sources.setdefault(digest, []).insert(0, repo)
    groups: dict[tuple[str, ...], list[tuple[str, int, Callable[[], object]]]] = {}
    outcomes: dict[str, str] = {d.digest: "exists" for d in image.blobs() if d.digest in present}
    client.stats.add(blobs_skipped=len(outcomes))
    early = {d.digest: done[d.digest] for d in image.blobs() if d.digest in done and d.digest not in present}
    outcomes.update((digest, outcome) for digest, (outcome, _) in early.items())
    for desc in image.blobs():
        if desc.digest in present or desc.digest in early:
            continue
        repos = tuple(dict.fromkeys(r for r in sources.get(desc.digest, ()) if r != target.repository))
        groups.setdefault(repos, []).append((desc.digest, desc.size, _opener(image, desc.digest, store, registries)))
    before = client.stats.bytes_uploaded
    for repos, blobs in groups.items():
        outcomes.update(client.push_blobs(target.repository, blobs, mount_from=repos, on_done=on_blob))
    for tag in tags:
        client.put_manifest(target.repository, tag, image.manifest.data, image.manifest.media_type)
    sent_early = sum(size for outcome, size in early.values() if outcome == "uploaded")
    return PushReport(str(target), image.digest, outcomes, client.stats.bytes_uploaded - before + sent_early)


def push_index(
    index: Index,
    target: Reference,
    tags: Sequence[str],
    store: BlobStore,
    registries: Registries,
    *,
    mount_sources: Mapping[str, Sequence[str]] | None = None,
    on_blob: Callable[[str, str], None] | None = None,
    done: Mapping[str, tuple[str, int]] | None = None,
) -> PushReport:
    """Push a multi-platform image: each platform's image by digest (uploading only what is missing;
    a layer two platforms share goes up once), then the index under each tag. ``done``: as for
    :func:`push_image` (reported once, with the first platform that holds the blob)."""
    remaining = dict(done or {})
    client = registries.client(target.registry)
    tags = list(tags or [target.identifier])
    if _tags_name(client, target.repository, tags, index.digest, index.media_type):
        return _nothing_to_send(client, target, index.digest, index.blobs())
    outcomes: dict[str, str] = {}
    uploaded = 0
    sources = {d: list(repos) for d, repos in (mount_sources or {}).items()}
    for image in index.images:
        report = push_image(image, target, [image.digest], store, registries, mount_sources=sources, on_blob=on_blob,
                            done=remaining)
        for desc in image.blobs():
            if desc.digest in remaining:
                remaining[desc.digest] = ("exists", desc.size)
        for digest, outcome in report.outcomes.items():
            if outcomes.get(digest) != "uploaded":
                outcomes[digest] = outcome
        uploaded += report.bytes_uploaded
        for desc in image.blobs():
            sources.setdefault(desc.digest, []).append(target.repository)
    for tag in tags:
        client.put_manifest(target.repository, tag, index.document.data, index.media_type)
    return PushReport(str(target), index.digest, outcomes, uploaded)


def already_pushed(artifact: Image | Index, target: Reference, tags: Sequence[str],
                   registries: Registries) -> PushReport | None:
    """The report of a push with nothing to send when every tag already names ``artifact`` (one HEAD per
    tag, no other request); else None."""
    client = registries.client(target.registry)
    media_type = artifact.media_type if isinstance(artifact, Index) else artifact.manifest.media_type
    if not _tags_name(client, target.repository, list(tags or [target.identifier]), artifact.digest, media_type):
        return None
    return _nothing_to_send(client, target, artifact.digest, artifact.blobs())


def _tags_name(client: RegistryClient, repo: str, tags: Sequence[str], digest: str, media_type: str) -> bool:
    """Whether every tag already names the document ``digest`` (then nothing is sent)."""
    return all(found is not None and found[0] == digest
               for found in (client.head_manifest(repo, tag, accept=media_type) for tag in tags))


def _nothing_to_send(client: RegistryClient, target: Reference, digest: str, blobs: Sequence[Descriptor]) -> PushReport:
    outcomes = {d.digest: "exists" for d in blobs}
    client.stats.add(blobs_skipped=len(outcomes))
    return PushReport(str(target), digest, outcomes, 0)


def _blobs_already_there(client: RegistryClient, repo: str, tags: Sequence[str], image: Image) -> set[str] | None:
    """None when every tag already names this manifest (nothing to send); else the blobs the repository
    is known to have: those of the manifest its first tag names now (a registry keeps no manifest whose
    blobs are missing), so an image that changed a little costs one GET, not a HEAD per blob."""
    previous = [client.head_manifest(repo, tag, accept=image.manifest.media_type) for tag in tags]
    if all(found is not None and found[0] == image.digest for found in previous):
        return None
    if previous[0] is None or previous[0][1] not in mt.MANIFEST_TYPES:
        return set()
    try:
        old = json.loads(client.get_manifest(repo, previous[0][0], accept=previous[0][1]).data)
    except (LaminaError, ValueError):
        return set()  # gone meanwhile, or unreadable: check blob by blob
    return {old["config"]["digest"], *(layer["digest"] for layer in old.get("layers", []))}


def _opener(image: Image, digest: str, store: BlobStore, registries: Registries) -> Callable[[], object]:
    """Opens the blob from the store, fetching it from the image's origin first if it is not there."""

    def open_blob() -> object:
        if not store.has(digest):
            fetch_from_origin(image, digest, store, registries)
        return store.open(digest)

    return open_blob
