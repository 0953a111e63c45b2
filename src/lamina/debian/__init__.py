"""Debian packages without apt: verified archive indexes, a resolver, and ``.deb`` files unpacked into layers.

The trust chain is checked end to end: ``InRelease`` against the Debian archive keyring (``gpgv``), each
``Packages`` index against the SHA256 the signed ``InRelease`` lists, each ``.deb`` against the SHA256 its
``Packages`` entry lists (and, on a locked build, the one ``lamina.lock`` records). Maintainer scripts
never run; :mod:`lamina.debian.system` does what they would have done where it matters in a container.

Modules: ``archive`` (download and verify), ``resolve`` (dependencies), ``deb`` (read a ``.deb``),
``status`` (dpkg's database), ``system`` (users, CA bundle, merged-/usr), ``image`` (ties them to a build).
See docs/debian.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lamina.config import ImageSpec

DEBIAN_PREFIX = "debian:"
#: The kind of the Debian step and of its sections in lamina.lock.
LOCK_KIND = "debian"


def is_debian_base(base: str) -> bool:
    """Does ``from`` name a Debian release (``debian:bookworm``) rather than an image?"""
    return base.startswith(DEBIAN_PREFIX)


def release_of(base: str) -> str:
    return base[len(DEBIAN_PREFIX):]


def uses_debian(spec: ImageSpec) -> bool:
    """Does the image install Debian packages (``packages``, or a ``debian:`` base)?"""
    return bool(spec.packages) or is_debian_base(spec.base)
