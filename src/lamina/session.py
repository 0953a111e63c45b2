"""What every lamina command shares, usable from Python without the CLI.

A ``Session`` holds the loaded config (with the environment's and the caller's overrides applied), the blob
store, the registry clients (with credentials) and the lock of one project. The CLI's verbs open one, use it and
close it; a Python user does the same::

    from lamina.session import Session

    with Session.open("examples/tax-agent/lamina.toml") as session, session.store.shared_lock():
        family = session.family()
        built = family.build(list(session.config.images))

Nothing here reads a terminal or argv: a password read from stdin is the CLI's business, passed in as a string.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lamina import naming
from lamina.build import BuildOptions
from lamina.config import ProjectConfig, find_config, load_config
from lamina.errors import ConfigError, UsageError
from lamina.family import Family, Product
from lamina.lock import Lock
from lamina.oci import http
from lamina.oci.cache import RemoteLayers
from lamina.oci.model import Platform
from lamina.oci.reference import Reference
from lamina.oci.registry.credentials import Credential
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.publish import Named


@dataclass
class Session:
    """One project's config, store, registries and lock; close it (or use ``with``) to close the registry clients."""

    config: ProjectConfig
    store: BlobStore
    registries: Registries
    _lock: Lock | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        *,
        store_root: str | os.PathLike[str] | None = None,
        registry: str | None = None,
        owner: str | None = None,
        insecure: Iterable[str] = (),
        username: str | None = None,
        password: str | None = None,
        chunk_size: int | None = None,
        cwd: Path | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> Session:
        """Load ``config_path`` (default: lamina.toml found upwards from ``cwd``) and open the store.

        ``registry``/``owner`` override the config and LAMINA_REGISTRY/LAMINA_OWNER; ``insecure`` adds hosts to
        the config's ``insecure_registries``; ``username``+``password`` is the credential for the config's registry
        (else the usual sources: LAMINA_REGISTRY_USERNAME/PASSWORD, the Docker config, credential helpers).
        ``ca_file`` (else the config's ``ca_file``) is a private CA trusted besides the system's, by every
        HTTP client of the process (registries, the Debian archive, wheel downloads).
        """
        path = Path(config_path) if config_path else find_config(cwd or Path.cwd())
        config = load_config(path).with_overrides(registry=registry, owner=owner)
        trusted = ca_file or config.ca_file
        if trusted is not None:
            if not Path(trusted).is_file():
                raise UsageError(f"--ca-file: {trusted} does not exist", hint="give a PEM file of CA certificates")
            http.trust(trusted)
        return cls(config, BlobStore.open_default(store_root),
                   registries_for(config, insecure=insecure, username=username, password=password,
                                  chunk_size=chunk_size))

    @property
    def lock(self) -> Lock:
        """The project's lock file (lamina.lock next to lamina.toml), read on first use."""
        if self._lock is None:
            images = self.config.images
            self._lock = Lock.for_config(self.config.path,
                                         lambda n: str(images[n].platform) if n in images else "linux/amd64")
        return self._lock

    @property
    def tag(self) -> str:
        """The tag services get by default: the project's version, else ``latest``."""
        return self.config.version or "latest"

    def family(self, *, tag: str | None = None, format: str | None = None, compression: str | None = None,
               pushing: bool = False, locked: bool = False, update: Sequence[str] = (),
               platforms: Sequence[Platform] = (), remote: RemoteLayers | None = None,
               published_bases: bool = False) -> Family:
        """The image family of this project, with ``format``/``compression`` overriding the config's."""
        options = BuildOptions(
            format=format or self.config.format,
            compression=compression or self.config.compression,
            source=self.config.source,
            revision=self.config.revision,
            version=self.config.version,
        )
        return Family(self.config, self.store, self.registries, options, tag or self.tag,
                      pushing=pushing, locked=locked, update=update, platforms=platforms, remote=remote,
                      published_bases=published_bases)

    def images(self, names: Sequence[str] = ()) -> list[str]:
        """``names`` checked against the config, or every image when empty."""
        if not self.config.images:
            raise ConfigError(f"{self.config.path} declares no images", hint="add an [images.NAME] table")
        for name in names:
            self.config.image(name)  # raises ConfigError naming the images there are
        return list(names) or list(self.config.images)

    def named(self, products: Iterable[Product], tag: str | None = None) -> list[Named]:
        """Images (or multi-platform indexes) with their output names: services get ``tag`` (default: the
        version), bases their own tag (:mod:`lamina.naming`)."""
        return [Named(p.name, naming.tag_for(self.config, p.spec, tag or self.tag), p.artifact) for p in products]

    def targets(self, named: Iterable[Named]) -> list[tuple[Named, Reference]]:
        """Where each named image is pushed."""
        return [(n, naming.push_target(self.config, self.config.image(n.name), n.tag)) for n in named]

    def close(self) -> None:
        self.registries.close()
        self.store.close()  # its temp folder (a killed process's is removed by the next run)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def registries_for(config: ProjectConfig, *, insecure: Iterable[str] = (), username: str | None = None,
                   password: str | None = None, chunk_size: int | None = None) -> Registries:
    """Registry clients with the config's insecure hosts plus ``insecure``, and an explicit credential if given."""
    if (username is None) != (password is None):
        raise UsageError("a registry username needs a password, and a password a username",
                         hint='echo "$TOKEN" | lamina build --push --username me --password-stdin')
    credential = Credential(username, password, "--username/--password-stdin") if username and password is not None else None
    return Registries(
        insecure=frozenset(config.insecure_registries) | frozenset(insecure),
        credential=credential,
        credential_host=config.registry if credential else None,
        chunk_size=chunk_size,
    )
