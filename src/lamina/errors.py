"""Errors a user can act on: each says what went wrong, where, and what to do about it."""

from __future__ import annotations


class LaminaError(Exception):
    """Base of every error lamina reports to a user (the CLI prints it without a traceback)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(LaminaError):
    """lamina.toml is malformed or names something that does not exist."""


class StoreError(LaminaError):
    """The blob store is missing a blob or holds a corrupt one."""


class DigestMismatchError(LaminaError):
    """Bytes read from a store, layout or registry do not hash to the digest that named them."""


class RegistryError(LaminaError):
    """A registry answered with an error we cannot recover from."""


class RegistryUnreachableError(RegistryError):
    """The registry could not be reached (DNS, connection refused, TLS, time-out)."""


class AuthError(RegistryError):
    """The registry refused our credentials (or we had none and it wants some)."""


class NotFoundError(RegistryError):
    """A manifest or blob is not in the registry (wrong reference, or never pushed)."""


class LockStaleError(LaminaError):
    """``--locked`` and the lock file has no fresh entry for an image (run ``lamina lock``)."""


class DownloadError(LaminaError):
    """An HTTP download failed: the server refused it, never answered, or the retries ran out.

    ``url`` is what was asked for; ``status`` the HTTP status of the last answer (None when there was none);
    ``reason`` what went wrong in a few words, for a caller that words its own message.
    """

    def __init__(self, message: str, *, url: str, status: int | None = None, reason: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.url = url
        self.status = status
        self.reason = reason or message


class CertificateError(DownloadError):
    """The server's TLS certificate did not verify against the CA bundle in use."""


class UnsafePathError(LaminaError):
    """A path from a wheel, a ``.deb``, a copy or a service folder would leave the image tree or the project,
    or is something lamina never puts in a layer (a device node, a setuid file from a wheel)."""


class DiskFullError(LaminaError):
    """A write failed because the filesystem is full (or over quota); nothing half-written was kept."""


class DocumentError(RegistryError):
    """A registry (or layout) sent a manifest, index or config that is too big, not JSON, or lacks a field."""
