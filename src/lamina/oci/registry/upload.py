"""The blob upload protocol: start (or mount), then send the bytes monolithically or in ordered chunks.

Quirks of distribution 2.8 this module works around: a single POST carrying the body silently drops the
body (so we always POST, then PUT ``?digest=``); out-of-order chunks corrupt the upload (so chunks go
strictly in order, each to the ``Location`` the previous answer gave); and query parameters must be
added to the URL the registry returned (``copy_add_param``), never replace its query (it holds ``_state``).
Bytes are hashed as they are sent, so content that does not match its digest is reported as ours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import BinaryIO

import httpx

from lamina.errors import DigestMismatchError, RegistryError
from lamina.oci.digest import DigestWriter
from lamina.oci.registry.session import Session

Opener = Callable[[], BinaryIO]
READ_SIZE = 1 << 20
OCTET_STREAM = "application/octet-stream"


def start_upload(
    session: Session, repo: str, *, mount: str | None = None, source: str | None = None
) -> tuple[bool, httpx.URL | None]:
    """POST an upload, or a mount of ``mount`` from ``source``.

    Returns ``(True, None)`` if the blob was mounted, else ``(False, location)`` of the upload started.
    """
    url = session.url(f"/v2/{repo}/blobs/uploads/")
    what = f"upload to {session.registry}/{repo}"
    if mount and source:
        url = url.copy_add_param("mount", mount).copy_add_param("from", source)
        what = f"mount of {mount} from {source} into {session.registry}/{repo}"
    response = session.request("POST", url, expect=(201, 202), what=what)
    response.close()
    if response.status_code == 201:
        return True, None
    return False, _location(response, what)


def cancel_upload(session: Session, location: httpx.URL) -> None:
    """Best-effort DELETE of an upload we will not use (it needs ``delete`` rights, which we may lack)."""
    try:
        session.http.delete(location).close()
    except Exception:  # noqa: BLE001 - the registry purges abandoned uploads anyway
        pass


def upload_monolithic(session: Session, location: httpx.URL, digest: str, size: int, opener: Opener, what: str) -> None:
    """One PUT ``?digest=`` streaming the whole blob (re-opened for every retry)."""
    response = session.request(
        "PUT",
        location.copy_add_param("digest", digest),
        expect=(201,),
        what=what,
        headers={"Content-Type": OCTET_STREAM, "Content-Length": str(size)},
        content=lambda: _stream(opener, digest, size, what),
    )
    response.close()


def upload_chunked(
    session: Session, location: httpx.URL, digest: str, size: int, opener: Opener, chunk_size: int, what: str
) -> None:
    """PATCH chunks of ``chunk_size`` in order with ``Content-Range``, then PUT ``?digest=``."""
    writer = DigestWriter()
    with opener() as stream:
        while chunk := _read_exactly(stream, chunk_size):
            start = writer.size
            writer.write(chunk)
            response = session.request(
                "PATCH",
                location,
                expect=(202,),
                what=what,
                headers={
                    "Content-Type": OCTET_STREAM,
                    "Content-Range": f"{start}-{writer.size - 1}",
                },
                content=chunk,
            )
            response.close()
            location = _location(response, what)
    _check(writer, digest, size, what)
    response = session.request(
        "PUT", location.copy_add_param("digest", digest), expect=(201,), what=what, headers={"Content-Length": "0"}
    )
    response.close()


def _stream(opener: Opener, digest: str, size: int, what: str) -> Iterator[bytes]:
    writer = DigestWriter()
    with opener() as stream:
        while block := stream.read(READ_SIZE):
            writer.write(block)
            if writer.size > size:
                break
            yield block
    _check(writer, digest, size, what)


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    parts, left = [], count
    while left > 0:
        block = stream.read(left)
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)


def _check(writer: DigestWriter, digest: str, size: int, what: str) -> None:
    if writer.size != size or writer.digest != digest:
        raise DigestMismatchError(
            f"{what}: the local content is {writer.size} bytes with digest {writer.digest}, "
            f"but was announced as {size} bytes with digest {digest}",
            hint="the blob changed on disk after it was hashed; rebuild it",
        )


def _location(response: httpx.Response, what: str) -> httpx.URL:
    location = response.headers.get("Location")
    if not location:
        raise RegistryError(f"{what}: the registry answered {response.status_code} without a Location header")
    return response.url.join(location)
