"""The family's layer cache in its registry: which caches a build reads, and what a push records.

The mechanism is :mod:`lamina.oci.cache` (an index of input keys per family, entries checked before
use); this module applies the project's rules (docs/cache.md):

- a push reads and updates the cache of the registry it pushes to, ``[project] cache`` (default
  ``REGISTRY/OWNER/lamina-cache:layers``); other builds read it only when ``cache``/``cache_from``
  name one (so a plain local build never waits for a registry it does not use);
- ``[project] cache_from`` adds caches that are read, never written (a feature branch reading main's);
- entries are believed only when they point into the project's own repositories (its push targets)
  or into the repository of a configured cache;
- ``--no-remote-cache`` turns all of it off.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lamina import naming
from lamina.build import BuiltImage
from lamina.config import ProjectConfig
from lamina.errors import ConfigError
from lamina.oci.cache import CacheEntry, RemoteLayers, StagedIndex, default_reference, stage_index
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.publish import Named
from lamina.python.findings import MODULES_KIND
from lamina.python.image import PythonState


def cache_reference(config: ProjectConfig) -> Reference | None:
    """Where this project's pushes record their layers (None: no registry)."""
    if config.cache:
        return Reference.parse(config.cache)
    if config.registry:
        return default_reference(config.registry, config.owner)
    return None


def trusted_repositories(config: ProjectConfig) -> set[str]:
    """``host/repo`` of every image the project pushes: the repositories a cache entry may point into."""
    trusted = set()
    for spec in config.images.values():
        try:
            target = naming.push_target(config, spec)
        except ConfigError:
            continue
        trusted.add(f"{target.registry}/{target.repository}")
    return trusted


def remote_layers(config: ProjectConfig, registries: Registries, store: BlobStore, *, pushing: bool, fetch: bool,
                  warn: Callable[[str], None] | None = None) -> RemoteLayers | None:
    """The registry cache a build reads, or None when it reads none (see the module's rules)."""
    refs = []
    own = cache_reference(config)
    if own is not None and (pushing or config.cache):
        refs.append(own)
    refs += [Reference.parse(text) for text in config.cache_from]
    if not refs:
        return None
    remote = RemoteLayers(refs, registries, store, trusted=trusted_repositories(config), fetch=fetch,
                          push_registry=config.registry if pushing else None, warn=warn)
    if pushing and own is not None:
        remote.read_ahead()  # the push reads its own cache's index to update it: read it while planning
    return remote


def pushed_images(built: Sequence[BuiltImage], targets: Sequence[tuple[Named, Reference]]
                  ) -> list[tuple[BuiltImage, Reference]]:
    """Each built platform image with the reference it was pushed to."""
    by_digest = {b.image.digest: b for b in built}
    return [(by_digest[image.digest], target) for named, target in targets for image in named.images
            if image.digest in by_digest]


def entries_of(pushed: Sequence[tuple[BuiltImage, Reference]]) -> list[CacheEntry]:
    """A cache entry for every keyed layer of every pushed image, pointing at where it now is."""
    entries = []
    for built, target in pushed:
        for layer in built.layers:
            if layer.key is None:
                continue
            stored = layer.layer
            entries.append(CacheEntry(layer.key, stored.diff_id, stored.digest, stored.size, stored.media_type,
                                      f"{target.registry}/{target.repository}", built.image.digest, layer.elf))
    return entries


def records_of(pushed: Sequence[tuple[BuiltImage, Reference]], store: BlobStore) -> dict[str, dict[str, dict]]:
    """The store's records a build that reuses these images' layers needs and cannot make without their
    inputs: the modules each installed wheel provides (``lamina check`` reads them)."""
    modules: dict[str, dict] = {}
    for built, _ in pushed:
        state = built.states.get("python")
        if not isinstance(state, PythonState):
            continue
        for dist in state.dists.values():
            if dist.sha256 not in modules and (record := store.get_key(MODULES_KIND, dist.sha256)) is not None:
                modules[dist.sha256] = record
    return {MODULES_KIND: modules} if modules else {}


def seed_records(remote: RemoteLayers) -> int:
    """Copy what the caches know of the wheels' modules into the store (before ``lamina check``)."""
    return remote.seed_records([MODULES_KIND])


def stage_pushed(config: ProjectConfig, pushed: Sequence[tuple[BuiltImage, Reference]], store: BlobStore,
                 registries: Registries, warn: Callable[[str], None], read: RemoteLayers | None = None
                 ) -> StagedIndex | None:
    """The project's cache with the layers of ``pushed`` (merged with what it had: as ``read`` read it,
    else read now), its blobs uploaded: :meth:`~lamina.oci.cache.StagedIndex.commit` it once the images
    are pushed. None when there is nothing to record or the upload failed (a warning says so)."""
    ref = cache_reference(config)
    entries = entries_of(pushed)
    if ref is None or not entries:
        return None
    if read is not None:
        read.entries()  # waits for a read ahead still under way
    previous = read.indexes.get(str(ref)) if read is not None else None
    return stage_index(ref, entries, registries, warn, previous, records_of(pushed, store))


def record_pushed(config: ProjectConfig, pushed: Sequence[tuple[BuiltImage, Reference]], store: BlobStore,
                  registries: Registries, warn: Callable[[str], None], read: RemoteLayers | None = None) -> int:
    """Update the project's cache with the layers of the images just pushed; returns its entry count."""
    staged = stage_pushed(config, pushed, store, registries, warn, read)
    return staged.commit() if staged is not None else 0
