"""The supply chain's errors: a key that cannot be used, and a check that failed."""

from __future__ import annotations

from lamina.errors import LaminaError, VerificationError

__all__ = ["KeyFileError", "VerificationError"]


class KeyFileError(LaminaError):
    """A key file is missing, malformed, or its password is wrong."""
