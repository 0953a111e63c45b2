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


class NetworkError(LaminaError):
    """A server lamina downloads from (a registry, a Debian mirror, a package index) could not be reached."""


class RegistryError(LaminaError):
    """A registry answered with an error we cannot recover from."""


class RegistryUnreachableError(RegistryError, NetworkError):
    """The registry could not be reached (DNS, connection refused, TLS, time-out)."""


class AuthError(RegistryError):
    """The registry refused our credentials (or we had none and it wants some)."""


class NotFoundError(RegistryError):
    """A manifest or blob is not in the registry (wrong reference, or never pushed)."""


class BaseImageNotFound(NotFoundError):
    """A base the build takes from the registry as published is not there (the seed's "Base image not found")."""


class LockStaleError(LaminaError):
    """The lock file lacks a fresh entry for an image and resolving is forbidden (``--locked``, ``export``)."""


class DownloadError(NetworkError):
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


class ServiceCheckFailed(LaminaError):
    """``lamina check`` found errors: the services would fail at run time (missing imports, pin conflicts)."""


class UsageError(LaminaError):
    """The command line asks for something impossible (flags that need each other, a verb without its input)."""


class ThresholdExceeded(LaminaError):
    """``lamina report``: an image is over ``--max-size``, ``--max-layers`` or ``--max-wasted`` (CI limits)."""


class VerificationError(LaminaError):
    """``lamina verify``: a signature, attestation or SBOM does not check out; the image must not be trusted."""


#: Exit codes of the ``lamina`` command, by error class: the first class the error is an instance of wins, so
#: the more specific classes come first. Scripts (CI) can branch on them; ``lamina --help`` and docs/cli.md list them.
EXIT_CODES: tuple[tuple[type[LaminaError], int, str], ...] = (
    (ThresholdExceeded, 6, "lamina report: an image is over --max-size, --max-layers or --max-wasted"),
    (LockStaleError, 5, "lamina.lock must be updated (run `lamina lock`), and --locked or export forbids resolving"),
    (VerificationError, 7, "lamina verify: a signature, attestation or SBOM did not verify"),
    (ServiceCheckFailed, 3, "lamina check found errors: the services would fail at run time"),
    (RegistryError, 4, "a registry refused the request or lacks what was asked for"),
    (NetworkError, 4, "a server (registry, Debian mirror) could not be reached"),
    (ConfigError, 2, "lamina.toml or lamina.lock is malformed or names what does not exist"),
    (UsageError, 2, "the command line is wrong"),
    (LaminaError, 1, "any other error lamina reports (it says what, where, and what to do)"),
)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_INTERNAL = 70  # EX_SOFTWARE: an unexpected exception, a bug in lamina


def exit_code(error: LaminaError) -> int:
    """The exit code the ``lamina`` command returns for ``error`` (see ``EXIT_CODES``)."""
    return next(code for cls, code, _ in EXIT_CODES if isinstance(error, cls))
