"""Pushing to a registry: each image or index to its target, uploading only what the registry lacks.

Layer blobs may go up while the family is still being built (:class:`EarlyUploads`: each one as soon as
it is compressed, into the repository of the first image that holds it); :func:`push` then sends what is
left and the manifests. Only a manifest makes an image visible, and manifests are pushed after every
layer is built and every check passed: a build that fails leaves at most whole, unreferenced blobs,
which the registry's garbage collection removes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from lamina.errors import LaminaError
from lamina.oci.layer import BuiltLayer
from lamina.oci.model import Index
from lamina.oci.reference import Reference
from lamina.oci.remote import PushReport, Registries, already_pushed, push_image, push_index
from lamina.oci.store import BlobStore
from lamina.publish.named import Named

log = logging.getLogger("lamina.push")

#: Uploads in flight while layers are still being built: enough to keep a loopback or LAN registry
#: busy, few enough to leave the cores to compressing.
EARLY_UPLOADS = 2
#: Images pushed at once after a build whose layers went up early.
PARALLEL_IMAGES = 4


class EarlyUploads:
    """Uploads each layer blob made in this build as soon as it is made, while the rest of the family is
    still being built, so that the push after the build is mostly manifests. (A layer found in the store
    was most likely pushed before: the push after the build sees whether the registry has it.)

    ``repositories`` maps an image name to where it is pushed; :meth:`layer_built` (a ``Family.on_layer``
    hook: called with the first image, in build order, that holds the layer) queues the blob for that
    image's repository, and later images mount it from there. A failed early upload is only logged: the
    push after the build sends that blob again and reports what went wrong. :meth:`finish` waits for
    every upload and returns, per registry, which repositories hold which blob, with the outcome and
    size, for :func:`push`.
    """

    def __init__(self, repositories: Mapping[str, Reference], store: BlobStore, registries: Registries) -> None:
        self.repositories = dict(repositories)
        self.store = store
        self.registries = registries
        self._pool = ThreadPoolExecutor(EARLY_UPLOADS, thread_name_prefix="lamina-early")
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, str, str], Future[str]] = {}
        self._sizes: dict[str, int] = {}
        self._queued: set[tuple[str, str]] = set()

    def layer_built(self, image: str, layer: BuiltLayer) -> None:
        target = self.repositories.get(image)
        if target is None or layer.reused or layer.origin is not None:
            return  # not pushed; or made before (most likely pushed before: the push looks) or a cache hit
        digest, size = layer.layer.digest, layer.layer.size
        key = (target.registry, target.repository, digest)
        with self._lock:
            if (target.registry, digest) in self._queued:
                return  # on its way to another repository of that registry: this image mounts it from there
            self._queued.add((target.registry, digest))
            self._sizes[digest] = size
            self._futures[key] = self._pool.submit(self._upload, target, digest, size)

    def _upload(self, target: Reference, digest: str, size: int) -> str:
        client = self.registries.client(target.registry)
        return client.push_blob(target.repository, digest, size, lambda: self.store.open(digest))

    def finish(self) -> dict[str, dict[str, dict[str, tuple[str, int]]]]:
        """registry → repository → digest → (outcome, size) of every upload that succeeded."""
        with self._lock:
            futures = dict(self._futures)
        wait(futures.values())
        self._pool.shutdown()
        done: dict[str, dict[str, dict[str, tuple[str, int]]]] = {}
        for (registry, repository, digest), future in futures.items():
            error = future.exception()
            if error is not None:
                if not isinstance(error, (LaminaError, OSError)):
                    raise error
                log.debug("early upload of %s to %s/%s failed: %s", digest, registry, repository, error)
                continue
            done.setdefault(registry, {}).setdefault(repository, {})[digest] = (future.result(), self._sizes[digest])
        return done

    def cancel(self) -> None:
        """Stop: drop what has not started, wait for what has (a build that failed)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> EarlyUploads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()  # after finish(), nothing is left to cancel


def push(
    images: Sequence[tuple[Named, Reference]],
    store: BlobStore,
    registries: Registries,
    *,
    on_blob: Callable[[str, str], None] | None = None,
    early: EarlyUploads | None = None,
) -> list[PushReport]:
    """Push each image to its target reference (uploading only blobs the registry lacks).

    Images are pushed in order; blobs of one are mounted into the next from the repositories
    already pushed to on the same registry (a base and the images on it share layers). With ``early``,
    the blobs it uploaded during the build count as sent to their repository (and are reported so), and
    every image's layers are known to be somewhere on the registry already: the images are then pushed
    side by side (mounts and manifests are small requests; one at a time, they are a serial tail).
    Without it, the images already pushed (every tag names them) are found side by side first.
    """
    holders: dict[str, dict[str, list[str]]] = {}  # registry → digest → repositories holding it
    sent = early.finish() if early is not None else {}
    for registry, repositories in sent.items():
        for repository, blobs in repositories.items():
            for digest in blobs:
                holders.setdefault(registry, {}).setdefault(digest, []).append(repository)

    def one(named: Named, target: Reference, known: Mapping[str, Sequence[str]]) -> PushReport:
        done = sent.get(target.registry, {}).get(target.repository, {})
        pusher = push_index if isinstance(named.artifact, Index) else push_image
        return pusher(named.artifact, target, [target.identifier], store, registries,  # type: ignore[arg-type]
                      mount_sources=known, on_blob=on_blob, done=done)

    if sent:
        with ThreadPoolExecutor(PARALLEL_IMAGES, thread_name_prefix="lamina-push-image") as pool:
            futures = [pool.submit(one, named, target, holders.get(target.registry, {})) for named, target in images]
            return [future.result() for future in futures]
    with ThreadPoolExecutor(PARALLEL_IMAGES, thread_name_prefix="lamina-push-check") as pool:
        settled = list(pool.map(lambda item: already_pushed(item[0].artifact, item[1], [item[1].identifier],
                                                             registries), images))
    reports = []
    for (named, target), report in zip(images, settled):
        known = holders.setdefault(target.registry, {})
        reports.append(report or one(named, target, known))
        for image in named.images:
            for desc in image.blobs():
                known.setdefault(desc.digest, []).append(target.repository)
    return reports
