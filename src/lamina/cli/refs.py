"""Images named by a registry reference, for the verbs that work on pushed images (sign, verify, sbom)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from lamina.errors import NotFoundError
from lamina.oci.reference import Reference
from lamina.oci.remote import Registries


def add_registry_access(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry")
    group.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                       help="allow plain http for HOST (loopback is always allowed)")


@contextmanager
def registries(args: argparse.Namespace) -> Iterator[Registries]:
    """Registry clients with the usual credentials (LAMINA_REGISTRY_USERNAME/PASSWORD, Docker config, helpers)."""
    regs = Registries(insecure=frozenset(getattr(args, "insecure_registry", ())))
    try:
        yield regs
    finally:
        regs.close()


def resolve(regs: Registries, text: str) -> tuple[Reference, str]:
    """The reference ``text`` and the manifest digest it names now."""
    ref = Reference.parse(text)
    found = regs.client(ref.registry).head_manifest(ref.repository, ref.identifier)
    if found is None:
        raise NotFoundError(f"{ref} is not in the registry", hint="check the repository and tag, and that it was pushed")
    return ref, found[0]
