"""The typed specs ``lamina.toml`` is read into: the project, its images, its services.

Nothing here reads files or knows a package source; :mod:`lamina.config.reader` fills these in.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from lamina import naming
from lamina.errors import ConfigError
from lamina.oci.compress import Compression
from lamina.oci.model import Format, Platform, RunConfig
from lamina.oci.reference import Reference

CONFIG_NAME = "lamina.toml"
DEFAULT_OUTPUT = "oci:build/oci"
#: What a service's code layers leave out: build inputs and caches, not code (so bumping a requirement
#: changes the package layers only).
CODE_EXCLUDES = ("__pycache__", ".git", "*.pyc", "requirements*.txt")
#: Folders a service's code layer leaves out (and ``lamina check`` does not read) unless configured.
TEST_FOLDERS = ("tests", "test")
#: What lamina writes into a project: never an image's code, never a service folder.
OUTPUT_FOLDERS = ("build", ".lamina", "dist", ".venv", "venv", "node_modules", "__pycache__", ".git")
ENV_OVERRIDES = {
    "registry": "LAMINA_REGISTRY",
    "owner": "LAMINA_OWNER",
    "version": "LAMINA_VERSION",
    "base_version": "LAMINA_BASE_VERSION",
}


@dataclass(frozen=True)
class CopySpec:
    """Copy ``src`` (a file or directory of the project) to ``dest`` in the image."""

    src: Path
    dest: str
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    exclude: tuple[str, ...] = ("__pycache__", ".git")


@dataclass(frozen=True)
class ImageSpec:
    """One image of the project, as declared under ``[images.NAME]``."""

    name: str
    base: str = "scratch"
    #: The platforms it is built for (one image per platform; an index when there are several).
    platforms: tuple[Platform, ...] = (Platform(),)
    copies: tuple[CopySpec, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    annotations: Mapping[str, str] = field(default_factory=dict)
    repository: str | None = None
    tags: tuple[str, ...] = ()
    #: This base's own ``base_version`` (wins over the project's): set by ``lamina update`` when only
    #: some bases changed, so the others and the images on them keep their tags and digests.
    base_version: str | None = None
    packages: tuple[str, ...] = ()
    requirements: tuple[Path, ...] = ()
    python_packages: tuple[str, ...] = ()
    #: Dependency sources other than requirements files (pyproject.toml, uv.lock).
    sources: tuple[DependencySource, ...] = ()
    python: str | None = None
    service: ServiceCode | None = None

    @property
    def uses_python(self) -> bool:
        return bool(self.requirements or self.python_packages or self.sources)

    @property
    def platform(self) -> Platform:
        """The first of its platforms (the only one of a single-platform image)."""
        return self.platforms[0]


@dataclass(frozen=True)
class DependencySource:
    """Where an image's Python requirements are declared when it is not a requirements file:
    ``pyproject.toml`` (PEP 621 dependencies with ``extras``, or Poetry's) or ``uv.lock`` (the pins of
    workspace member ``package``)."""

    kind: str  # "pyproject" | "uv.lock"
    path: Path
    extras: tuple[str, ...] = ()
    package: str | None = None

    @property
    def label(self) -> str:
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        member = f"#{self.package}" if self.package else ""
        return f"{self.path.parent.name}/{self.path.name}{extras}{member}"


@dataclass(frozen=True)
class ServiceCode:
    """What makes an image a service: its folder, the code it ships, its own requirements file."""

    folder: Path
    code: tuple[Path, ...]
    requirements: Path | None
    #: The project's folder (module paths are relative to it), the port it serves on, and the
    #: lamina.toml table that configures it (for messages).
    root: Path = Path(".")
    port: int = 8000
    table: str = "services"
    #: ``module:attr`` or ``module:factory()`` of its ASGI/WSGI app, when lamina.toml names it.
    app: str | None = None
    #: ``uvicorn`` or ``gunicorn`` (None: by the app's framework).
    server: str | None = None
    #: The health check as lamina.toml states it (None: chosen by the kind of service found).
    health: str | tuple[str, ...] | None = None
    #: Project folders on the image's ``sys.path`` besides the project root (``src/`` layouts, projects).
    import_roots: tuple[Path, ...] = ()
    #: Folder names neither shipped nor checked (tests).
    tests: tuple[str, ...] = TEST_FOLDERS
    #: The service's own pyproject.toml (console scripts), if any.
    pyproject: Path | None = None

    def image_path(self, path: Path) -> str:
        """Where a project path is in the image (code is shipped under /app)."""
        return "/app/" + path.relative_to(self.root).as_posix() if path != self.root else "/app"

    @property
    def python_path(self) -> list[str]:
        return list(dict.fromkeys(["/app", *(self.image_path(r) for r in self.import_roots)]))
    #: The name of that table (``services`` or ``services.NAME``), for errors pointing into it.
    table_key: str = "services"


@dataclass(frozen=True)
class PythonSettings:
    """``[python]``: where packages come from and which manylinux the images' glibc allows."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    manylinux: str = "manylinux_2_28"
    no_index: bool = False


@dataclass(frozen=True)
class ProjectConfig:
    """The whole ``lamina.toml``."""

    path: Path
    registry: str | None = None
    owner: str | None = None
    version: str | None = None
    base_version: str | None = None
    #: How ``lamina update`` moves a base's version: patch (v1.0.1 → v1.0.2), minor, major or date.
    base_version_scheme: str = "patch"
    format: Format = "oci"
    compression: Compression = "gzip"
    output: str = DEFAULT_OUTPUT
    insecure_registries: tuple[str, ...] = ()
    #: The layer cache pushes record their layers in (default REGISTRY/OWNER/lamina-cache:layers),
    #: and further caches builds read (never write), e.g. the main branch's from a feature branch.
    cache: str | None = None
    cache_from: tuple[str, ...] = ()
    #: A private CA (PEM) trusted for registries and downloads, besides the system's (``--ca-file`` wins).
    ca_file: Path | None = None
    source: str | None = None
    revision: str | None = None
    debian_mirror: str = "https://deb.debian.org/debian"
    debian_security_mirror: str = "https://deb.debian.org/debian-security"
    debian_suites: tuple[str, ...] = ()
    debian_keyring: Path = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    images: Mapping[str, ImageSpec] = field(default_factory=dict)
    python: PythonSettings = field(default_factory=PythonSettings)
    podman: tuple[str, ...] = ()
    podman_run_flags: tuple[str, ...] = ()

    @property
    def root(self) -> Path:
        return self.path.parent

    def with_overrides(self, env: Mapping[str, str] = os.environ, **flags: str | None) -> ProjectConfig:
        """Apply environment, then flag, overrides of registry/owner/version (None: not given)."""
        changes: dict[str, str] = {}
        for key, var in ENV_OVERRIDES.items():
            if env.get(var):
                changes[key] = env[var]
            if flags.get(key):
                changes[key] = str(flags[key])
        return replace(self, **changes)  # type: ignore[arg-type]

    def image(self, name: str) -> ImageSpec:
        if name not in self.images:
            raise ConfigError(
                f"{self.path}: no image named {name!r}",
                hint=_suggest(name, self.images) or f"images here: {', '.join(self.images) or 'none'}",
            )
        return self.images[name]

    def target(self, spec: ImageSpec, tag: str | None = None) -> Reference:
        """Where ``spec`` is pushed: ``registry/owner/name:tag`` unless configured otherwise."""
        return naming.push_target(self, spec, tag)

    def tag_of(self, spec: ImageSpec) -> str:
        """An image's own tag (:func:`lamina.naming.own_tag`)."""
        return naming.own_tag(self, spec)


def service_name(folder: Path) -> str:
    """The image name of a service folder: ``apps/svc_ocr`` → ``svc-ocr`` (as the seed names them)."""
    return folder.name.replace("_", "-").lower()


def _suggest(word: str, options: Mapping[str, object]) -> str | None:
    """``did you mean 'x'?`` for the closest of ``options``, if any is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else None
