"""lamina's client for one OCI distribution registry: blobs (check, mount, upload, fetch) and manifests.

Push order per blob follows Jib and crane: HEAD first (skip what exists), then cross-repository mount
from repositories on the same registry, upload last. Everything read from a registry is checked against
its digest before it is returned.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from typing import BinaryIO

import httpx

from lamina.errors import DigestMismatchError, RegistryError, RegistryUnreachableError
from lamina.oci.digest import DigestWriter, is_digest, sha256_digest, verify
from lamina.oci.documents import MAX_DOCUMENT, check_manifest, read_capped, too_large
from lamina.oci.http import describe
from lamina.oci.mediatypes import MANIFEST_ACCEPT, OCI_INDEX
from lamina.oci.reference import DOCKER_HUB, DOCKER_HUB_API
from lamina.oci.registry.auth import RegistryAuth
from lamina.oci.registry.credentials import Credential, find_credential, search_description
from lamina.oci.registry.session import Session
from lamina.oci.registry.upload import Opener, cancel_upload, start_upload, upload_chunked, upload_monolithic

log = logging.getLogger("lamina.registry")

EXISTS, MOUNTED, UPLOADED = "exists", "mounted", "uploaded"
_RESTART_CODES = {"BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID", "DIGEST_INVALID", "SIZE_INVALID"}
_GENERIC_TYPES = {"", "application/json", "text/plain", "application/octet-stream"}


@dataclass
class TransferStats:
    """What a client did on the wire; safe to update from several threads."""

    requests: int = 0
    blobs_uploaded: int = 0
    bytes_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    blobs_downloaded: int = 0
    bytes_downloaded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        """Add to the named counters atomically."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


@dataclass(frozen=True)
class Fetched:
    """A manifest as the registry sent it: the exact bytes, their media type and digest."""

    data: bytes
    media_type: str
    digest: str


class RegistryClient:
    """Talks to one registry (``host[:port]``, or ``docker.io``); usable from several threads."""

    def __init__(
        self,
        registry: str,
        *,
        credential: Credential | None = None,
        insecure: bool = False,
        max_concurrency: int = 4,
        retries: int = 3,
        timeout: float = 60,
        chunk_size: int | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        backoff: float = 0.5,
    ) -> None:
        self.registry = registry
        self.max_concurrency = max(1, max_concurrency)
        self.chunk_size = chunk_size
        self.stats = TransferStats()
        credential = credential if credential is not None else find_credential(registry)
        self._auth = RegistryAuth(registry, credential, searched=search_description())
        self._session = Session(
            registry,
            host=DOCKER_HUB_API if registry == DOCKER_HUB else registry,
            auth=self._auth,
            insecure=insecure,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            max_connections=self.max_concurrency + 2,
            transport=transport,
            verify=verify,
            on_request=lambda _request: self.stats.add(requests=1),
        )

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r})"

    # --- registry -------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check the registry answers the v2 API and that we may use it (``GET /v2/``)."""
        self._session.request("GET", "/v2/").close()

    # --- blobs ----------------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """The size of blob ``digest`` in ``repo``, or None if the registry does not have it there."""
        response = self._session.request(
            "HEAD", f"/v2/{repo}/blobs/{digest}", expect=(200, 404), what=self._blob_name(repo, digest)
        )
        response.close()
        if response.status_code == 404:
            return None
        return int(response.headers.get("Content-Length", "0"))

    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Mount ``digest`` from ``from_repo`` into ``repo``; False (upload cancelled) if the registry would not."""
        mounted, location = start_upload(self._session, repo, mount=digest, source=from_repo)
        if not mounted and location is not None:
            cancel_upload(self._session, location)
        return mounted

    def upload_blob(self, repo: str, digest: str, size: int, opener: Opener) -> None:
        """Upload a blob, streaming from ``opener()`` (called again for each retry)."""
        self._upload(repo, digest, size, opener, location=None)

    def push_blob(self, repo: str, digest: str, size: int, opener: Opener, *, mount_from: Sequence[str] = ()) -> str:
        """Make ``digest`` present in ``repo``: ``"exists"``, ``"mounted"`` or ``"uploaded"``."""
        if self.blob_size(repo, digest) is not None:
            self.stats.add(blobs_skipped=1)
            return EXISTS
        location = None
        for source in mount_from:
            if source == repo:
                continue
            mounted, location = start_upload(self._session, repo, mount=digest, source=source)
            if mounted:
                self.stats.add(blobs_mounted=1)
                return MOUNTED
        self._upload(repo, digest, size, opener, location=location)
        return UPLOADED

    def push_blobs(
        self,
        repo: str,
        blobs: Sequence[tuple[str, int, Opener]],
        *,
        mount_from: Sequence[str] = (),
        on_done: Callable[[str, str], None] | None = None,
    ) -> dict[str, str]:
        """Push blobs with at most ``max_concurrency`` at once; digest → outcome.

        ``on_done(digest, outcome)`` is called in the calling thread as each blob finishes. The first
        failure cancels the blobs not yet started and is raised.
        """
        unique = {digest: (digest, size, opener) for digest, size, opener in blobs}
        outcomes: dict[str, str] = {}
        with ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="lamina-push") as pool:
            pending = {
                pool.submit(self.push_blob, repo, digest, size, opener, mount_from=mount_from): digest
                for digest, size, opener in unique.values()
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    digest = pending.pop(future)
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()  # type: ignore[misc]
                    outcomes[digest] = future.result()
                    if on_done is not None:
                        on_done(digest, outcomes[digest])
        return outcomes

    def fetch_blob(self, repo: str, digest: str, sink: BinaryIO) -> int:
        """Stream blob ``digest`` into ``sink``, hashing as it goes; return its size.

        Raises :class:`DigestMismatchError` if the bytes do not hash to ``digest`` (the caller writes to a
        temporary file, so nothing half-written survives).
        """
        what = self._blob_name(repo, digest)
        writer = DigestWriter(sink)
        response = self._session.request("GET", f"/v2/{repo}/blobs/{digest}", what=what, stream=True)
        try:
            for block in response.iter_bytes():
                writer.write(block)
        except httpx.TransportError as exc:
            raise RegistryUnreachableError(f"download of {what} broke off after {writer.size} bytes: {exc}") from None
        finally:
            response.close()
        if writer.digest != digest:
            raise DigestMismatchError(
                f"{what}: the registry sent {writer.size} bytes that hash to {writer.digest}",
                hint="the registry's copy is corrupt or was tampered with; nothing was kept",
            )
        self.stats.add(blobs_downloaded=1, bytes_downloaded=writer.size)
        return writer.size

    # --- manifests ------------------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT) -> Fetched:
        """GET a manifest or index by tag or digest (verified against the digest)."""
        what = f"manifest {self._manifest_name(repo, reference)}"
        policy = self._session.retry
        for attempt in range(1, policy.attempts + 1):  # a body cut short is fetched again, as a failed request is
            response = self._session.request(
                "GET", f"/v2/{repo}/manifests/{reference}", what=what, headers={"Accept": accept}, stream=True
            )
            try:
                announced = response.headers.get("Content-Length", "")
                if announced.isdigit() and int(announced) > MAX_DOCUMENT:
                    raise too_large(what, int(announced))
                data = read_capped(response.iter_bytes(), what)
                break
            except httpx.TransportError as exc:
                if attempt == policy.attempts:
                    raise RegistryUnreachableError(
                        f"reading {what} broke off (after {attempt} attempts): {describe(exc)}",
                        hint="the registry (or a proxy) reset the connection; run again") from None
                policy.wait(attempt)
            finally:
                response.close()
        digest = sha256_digest(data)
        if is_digest(reference):
            verify(data, reference, what=what)
        header = response.headers.get("Docker-Content-Digest")
        if header and is_digest(header) and header != digest:
            raise DigestMismatchError(f"{what}: the registry says {header} but the bytes hash to {digest}",
                                      hint="the registry or a proxy altered the manifest; nothing was used")
        media_type = _media_type(response, data)
        check_manifest(data, media_type, what)  # JSON, and the fields lamina reads, before anyone uses it
        return Fetched(data, media_type, digest)

    def head_manifest(self, repo: str, reference: str, *, accept: str = MANIFEST_ACCEPT) -> tuple[str, str, int] | None:
        """``(digest, media_type, size)`` of a manifest, or None if it is not there."""
        what = f"manifest {self._manifest_name(repo, reference)}"
        response = self._session.request(
            "HEAD", f"/v2/{repo}/manifests/{reference}", expect=(200, 404), what=what, headers={"Accept": accept}
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if not is_digest(digest) or media_type in _GENERIC_TYPES:
            fetched = self.get_manifest(repo, reference, accept=accept)
            return fetched.digest, fetched.media_type, len(fetched.data)
        return digest, media_type, int(response.headers.get("Content-Length", "0"))

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT manifest bytes under a tag (or their digest); return their digest."""
        digest = sha256_digest(data)
        what = f"manifest {self._manifest_name(repo, reference)}"
        response = self._session.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            expect=(201,),
            what=what,
            headers={"Content-Type": media_type},
            content=data,
        )
        response.close()
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(
                f"{what}: the registry stored digest {header}, but the bytes we sent hash to {digest}",
                hint="the registry rewrote the manifest; push to a registry that stores manifests as sent",
            )
        return digest

    def get_referrers(self, repo: str, digest: str, *, artifact_type: str | None = None) -> Fetched | None:
        """The OCI 1.1 referrers index of ``digest`` (``GET /v2/<repo>/referrers/<digest>``), or None when
        the registry has no referrers API (it answers 404, as distribution 2.8 does): use the tag schema then."""
        path = f"/v2/{repo}/referrers/{digest}"
        if artifact_type:
            path += f"?artifactType={artifact_type}"
        what = f"referrers of {self._manifest_name(repo, digest)}"
        response = self._session.request("GET", path, expect=(200, 404), what=what, headers={"Accept": OCI_INDEX},
                                         stream=True)
        try:
            data = read_capped(response.iter_bytes(), what)  # size-capped: a registry is not trusted to be brief
        except httpx.TransportError as exc:
            raise RegistryUnreachableError(f"reading {what} broke off: {describe(exc)}",
                                           hint="the registry (or a proxy) reset the connection; run again") from None
        finally:
            response.close()
        if response.status_code == 404 or not _media_type(response, data).startswith(OCI_INDEX):
            return None
        check_manifest(data, OCI_INDEX, what)
        return Fetched(data, OCI_INDEX, sha256_digest(data))

    def get_blob(self, repo: str, digest: str) -> bytes:
        """A whole (small) blob, verified against its digest: documents, signatures, SBOMs."""
        sink = io.BytesIO()
        self.fetch_blob(repo, digest, sink)  # type: ignore[arg-type]
        return sink.getvalue()

    # --- internals ------------------------------------------------------------------------------

    def _upload(self, repo: str, digest: str, size: int, opener: Opener, *, location: httpx.URL | None) -> None:
        what = f"upload of {self._blob_name(repo, digest)}"
        for attempt in range(2):
            try:
                if location is None:
                    _, location = start_upload(self._session, repo)
                assert location is not None
                if self.chunk_size:
                    upload_chunked(self._session, location, digest, size, opener, self.chunk_size, what)
                else:
                    upload_monolithic(self._session, location, digest, size, opener, what)
                break
            except RegistryError as exc:
                # A reset after the registry committed the blob makes the retried PUT fail (BLOB_UPLOAD_UNKNOWN:
                # the upload session is gone because it succeeded): the blob being there is success.
                if self._has_blob(repo, digest, size):
                    log.debug("%s: %s, but the blob is there", what, exc.message)
                    break
                if attempt or not (getattr(exc, "codes", set()) & _RESTART_CODES):
                    raise
                log.debug("restarting %s after %s", what, exc.message)
                location = None
        self.stats.add(blobs_uploaded=1, bytes_uploaded=size)

    def _has_blob(self, repo: str, digest: str, size: int) -> bool:
        try:
            return self.blob_size(repo, digest) == size
        except RegistryError:
            return False

    def _blob_name(self, repo: str, digest: str) -> str:
        return f"blob {self.registry}/{repo}@{digest}"

    def _manifest_name(self, repo: str, reference: str) -> str:
        separator = "@" if is_digest(reference) else ":"
        return f"{self.registry}/{repo}{separator}{reference}"


def _media_type(response: httpx.Response, data: bytes) -> str:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type not in _GENERIC_TYPES:
        return media_type
    try:
        return str(json.loads(data).get("mediaType") or media_type)
    except (ValueError, AttributeError):
        return media_type
