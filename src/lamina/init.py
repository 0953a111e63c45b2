"""``lamina init``: write lamina.toml for a repository laid out like the seed's.

It finds the shared requirement files (``requirements-base.txt``, ``requirements-ml.txt``), the
service folders and their ASGI apps, and puts a service on ``base-ml`` when its requirements or its
imports need a distribution that only the ML requirements bring (mapped exactly, from the wheels),
else on ``base-runtime``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lamina.errors import LaminaError
from lamina.oci.model import Platform
from lamina.oci.store import BlobStore
from lamina.python.asgi import find_asgi_app
from lamina.python.check import imports_in, modules_of_dists
from lamina.python.requirements import read_requirements
from lamina.python.resolve import Indexes, resolve
from lamina.python.target import PythonTarget

SKIP_DIRS = {".git", "build", "dist", "node_modules", "__pycache__", ".venv", "venv"}
DEBIAN_PYTHON = PythonTarget("3.11", "/usr/bin/python3.11", Platform())
PYTHON_PACKAGES = ["python3", "ca-certificates", "tzdata", "libstdc++6"]


@dataclass
class Layout:
    """What ``init`` found in the repository."""

    base_requirements: Path
    ml_requirements: Path | None
    service_glob: str
    services: list[Path]
    ship: list[str] = field(default_factory=list)
    ml_services: list[str] = field(default_factory=list)
    apps: dict[str, str | None] = field(default_factory=dict)


def _find(root: Path, name: str) -> Path | None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        if name in filenames:
            return Path(dirpath) / name
    return None


def discover(root: Path, *, store: BlobStore, indexes: Indexes = Indexes()) -> Layout:
    """Find requirement files and services, and decide which services need base-ml."""
    base = _find(root, "requirements-base.txt")
    if base is None:
        raise LaminaError(f"no requirements-base.txt under {root}",
                          hint="lamina init expects the seed's layout: libs/requirements-base.txt, apps/svc_*/")
    ml = _find(root, "requirements-ml.txt")
    pattern, services = _service_folders(root)
    layout = Layout(base, ml, pattern, services)
    shared = base.parent
    if shared != root and any(shared.rglob("*.py")):
        layout.ship.append(shared.relative_to(root).as_posix())
    layout.apps = {s.name: find_asgi_app(s, root) for s in services}
    if ml is not None:
        ml_only = _ml_only_modules(base, ml, store, indexes)
        ml_names = set(ml_only.values())
        for service in services:
            req = service / "requirements.txt"
            names = {r.name for r in read_requirements(req)} if req.is_file() else set()
            imports = {site.module for site in imports_in([service])}
            if names & ml_names or imports & set(ml_only):
                layout.ml_services.append(service.name)
    return layout


def _service_folders(root: Path) -> tuple[str, list[Path]]:
    apps = root / "apps"
    candidates = sorted(p for p in apps.glob("*") if p.is_dir() and any(p.glob("*.py"))) if apps.is_dir() else []
    if not candidates:
        raise LaminaError(f"no service folders (apps/NAME/ with Python code) under {root}",
                          hint="lamina init expects the seed's layout: apps/svc_*/main.py")
    prefix = os.path.commonprefix([p.name for p in candidates])
    pattern = f"apps/{prefix}*" if prefix else "apps/*"
    return pattern, candidates


def _ml_only_modules(base: Path, ml: Path, store: BlobStore, indexes: Indexes) -> dict[str, str]:
    """module → distribution for what the ML requirements add to the base ones."""
    base_dists = resolve([base], DEBIAN_PYTHON, indexes=indexes, where=str(base))
    pins = {d.name: d.version for d in base_dists}
    ml_dists = [d for d in resolve([ml], DEBIAN_PYTHON, constraints=pins, indexes=indexes, where=str(ml))
                if d.name not in pins]
    return modules_of_dists(ml_dists, store)


def render(root: Path, layout: Layout, *, registry: str | None, owner: str | None, version: str,
           base_version: str | None) -> str:
    """The lamina.toml text for ``layout``."""
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    project = [f'registry = "{registry}"' if registry else '# registry = "gitea.example.com"   # where --push sends images',
               f'owner = "{owner}"' if owner else '# owner = "acme"',
               f'version = "{version}"']
    if base_version:
        project.append(f'base_version = "{base_version}"')
    lines = [
        "# Written by `lamina init`: the image family of this repository. Edit freely.",
        "",
        "[project]",
        *project,
        "",
        "# The OS and Python, from Debian packages (no Docker Hub needed).",
        "[images.python]",
        'from = "debian:bookworm"',
        "packages = [" + ", ".join(f'"{p}"' for p in PYTHON_PACKAGES) + "]",
        'user = "app"',
        "",
        "[images.base-runtime]",
        'from = "python"',
        f'requirements = ["{rel(layout.base_requirements)}"]',
    ]
    if layout.ml_requirements is not None:
        lines += ["", "[images.base-ml]", 'from = "base-runtime"', f'requirements = ["{rel(layout.ml_requirements)}"]']
    lines += ["", "[services]", f'glob = "{layout.service_glob}"', 'base = "base-runtime"']
    if layout.ship:
        lines.append("ship = [" + ", ".join(f'"{s}"' for s in layout.ship) + "]")
    lines += ["port = 8000", 'health = "/healthz"']
    for service in layout.services:
        extra: list[str] = []
        if service.name in layout.ml_services:
            extra.append('base = "base-ml"')
        if layout.apps.get(service.name) is None:
            extra.append(f'command = ["python", "-m", "{rel(service).replace("/", ".")}"]  # no ASGI app found: check this')
        if extra:
            lines += ["", f"[services.{service.name}]", *extra]
    return "\n".join(lines) + "\n"


def init_project(root: Path, *, store: BlobStore, registry: str | None = None, owner: str | None = None,
                 version: str = "0.1.0", base_version: str | None = None, indexes: Indexes = Indexes()) -> tuple[Path, Layout]:
    """Write ``root/lamina.toml`` (refusing to overwrite one); returns its path and what was found."""
    path = root / "lamina.toml"
    if path.exists():
        raise LaminaError(f"{path} already exists", hint="remove it first, or edit it by hand")
    layout = discover(root, store=store, indexes=indexes)
    path.write_text(render(root, layout, registry=registry, owner=owner, version=version, base_version=base_version))
    return path, layout


__all__: Sequence[str] = ["Layout", "discover", "init_project", "render"]
