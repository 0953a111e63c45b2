"""sha256 digests in the OCI form ``sha256:<64 hex>``."""

from __future__ import annotations

import hashlib
import re
from typing import BinaryIO

from lamina.errors import DigestMismatchError

DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def sha256_digest(data: bytes) -> str:
    """The OCI digest of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    """True if ``value`` is a well-formed sha256 digest."""
    return bool(DIGEST_RE.match(value))


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>`` (raises ValueError on anything else)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


class DigestWriter:
    """Counts and hashes every byte passed to :meth:`write`, optionally forwarding it to a sink."""

    def __init__(self, sink: BinaryIO | None = None) -> None:
        self._hash = hashlib.sha256()
        self._sink = sink
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        if self._sink is not None:
            self._sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def file_digest(stream: BinaryIO) -> tuple[str, int]:
    """Digest and size of everything left in ``stream``."""
    writer = DigestWriter()
    while chunk := stream.read(CHUNK):
        writer.write(chunk)
    return writer.digest, writer.size


def verify(data: bytes, expected: str, *, what: str) -> None:
    """Raise :class:`DigestMismatchError` unless ``data`` hashes to ``expected``."""
    actual = sha256_digest(data)
    if actual != expected:
        raise DigestMismatchError(
            f"{what}: expected {expected}, got {actual}",
            hint="the content was corrupted or tampered with; it was not used",
        )
