"""``lamina init``: write lamina.toml for a repository, whatever its layout, and say what it decided.

It finds the service folders (the seed's ``apps/svc_*``, ``services/*``, ``src/*``, top-level package
folders, uv workspace members, a Poetry project), each one's dependency source (requirements.txt,
pyproject.toml, the workspace's uv.lock), entry point and kind (:mod:`lamina.python.entry`), its port
(Dockerfile ``EXPOSE``/``CMD``, compose ``ports``, ``--port``/``port=`` in the code) and the folders of
shared code to ship. Bases: the seed's ``requirements-base.txt``/``requirements-ml.txt`` when there
are; else the requirements every service declares identically go into ``base-runtime``, heavy ML
stacks into ``base-ml``. What it cannot decide is written as a comment in the file, never a refusal.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lamina.config import OUTPUT_FOLDERS, ServiceCode, service_name
from lamina.config.services import import_roots
from lamina.errors import LaminaError
from lamina.oci.model import Platform
from lamina.oci.store import BlobStore
from lamina.python.check import imports_in, modules_of_dists
from lamina.python.entry import ServiceEntry, find_entry
from lamina.python.requirements import read_requirements
from lamina.python.resolve import Indexes, resolve
from lamina.python.sources import pyproject_requirements
from lamina.python.target import PythonTarget

SKIP_DIRS = set(OUTPUT_FOLDERS) | {"docs", "tests", "test", "examples", "scripts", "infra", "deploy", "charts"}
DEBIAN_PYTHON = PythonTarget("3.11", "/usr/bin/python3.11", Platform())
#: libc-bin brings ldconfig, which ctypes.util.find_library runs to read /etc/ld.so.cache.
PYTHON_PACKAGES = ["python3", "ca-certificates", "tzdata", "libstdc++6", "libc-bin"]
#: Requirements that make a service belong on base-ml.
ML_STACK = {"torch", "tensorflow", "jax", "transformers", "sentence-transformers", "scikit-learn", "scipy",
            "spacy", "nltk", "pandas", "numpy", "onnxruntime", "xgboost", "lightgbm", "opencv-python",
            "opencv-python-headless", "keras", "tokenizers", "datasets"}
PARENTS = ("apps", "services", "src", "packages", "projects", "components", "cmd")


@dataclass
class Service:
    folder: Path
    entry: ServiceEntry | None
    source: str | None  # "requirements.txt", "pyproject.toml", "uv.lock", or None
    requirements: list[str] = field(default_factory=list)
    port: int | None = None
    port_from: str = ""
    base: str = "base-runtime"
    notes: list[str] = field(default_factory=list)
    app: str | None = None


@dataclass
class Layout:
    """What ``init`` found in the repository."""

    kind: str
    services: list[Service]
    globs: list[str]
    base_requirements: Path | None = None
    ml_requirements: Path | None = None
    shared: list[str] = field(default_factory=list)
    ml_shared: list[str] = field(default_factory=list)
    ship: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    python_from: str = "debian:bookworm"

    @property
    def ml_services(self) -> list[str]:
        return [s.folder.name for s in self.services if s.base == "base-ml"]


def _find(root: Path, name: str) -> Path | None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if name in filenames:
            return Path(dirpath) / name
    return None


def _toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def _has_code(folder: Path) -> bool:
    return any(p for p in folder.rglob("*.py") if not any(part in SKIP_DIRS for part in p.relative_to(folder).parts))


def candidate_folders(root: Path) -> tuple[str, list[Path]]:
    """The layout's name and its service folders."""
    data = _toml(root / "pyproject.toml")
    members = ((data.get("tool") or {}).get("uv") or {}).get("workspace", {}).get("members")
    if members:
        found = sorted({p for m in members for p in root.glob(m) if p.is_dir() and (p / "pyproject.toml").is_file()})
        services = [p for p in found if find_entry(_code(p, root)) is not None]
        if services:
            return "uv workspace", services
    for parent in PARENTS:
        folder = root / parent
        if folder.is_dir():
            subs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and _has_code(p)
                          and not p.name.startswith((".", "_")))
            services = [p for p in subs if find_entry(_code(p, root)) is not None or (p / "Dockerfile").is_file()]
            if services:
                return f"{parent}/*", services
    tops = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")
                  and p.name not in PARENTS and _has_code(p))
    services = [p for p in tops if find_entry(_code(p, root)) is not None or (p / "Dockerfile").is_file()]
    project = "Poetry project" if ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") else \
        "PEP 621 project" if (data.get("project") or {}).get("dependencies") is not None else None
    own_deps = [p for p in services if (p / "requirements.txt").is_file() or (p / "pyproject.toml").is_file()]
    if project and ((root / "Dockerfile").is_file() or not own_deps):
        return project, [root]  # one project: its packages are the code, its pyproject the dependencies
    if services:
        return "top-level packages", services
    return "none", []


def _code(folder: Path, root: Path, port: int = 8000) -> ServiceCode:
    roots = import_roots([folder], root)
    pyproject = folder / "pyproject.toml"
    return ServiceCode(folder, (folder,), None, root=root, import_roots=roots, port=port,
                       pyproject=pyproject if pyproject.is_file() else None)


def discover(root: Path, *, store: BlobStore, indexes: Indexes = Indexes()) -> Layout:
    """Find the services, their sources, entries and ports, and decide the bases."""
    kind, folders = candidate_folders(root)
    base = _find(root, "requirements-base.txt")
    ml = _find(root, "requirements-ml.txt")
    layout = Layout(kind, [], [], base, ml)
    if folders == [root]:
        layout.notes.append(f"the repository is one project ({kind}): it is the only service")
    for folder in folders:
        layout.services.append(_service(folder, root))
    if not layout.services:
        layout.notes.append("no service folder found (a folder with an ASGI/WSGI app, a gRPC server, __main__.py or a "
                            "Dockerfile): add [services] glob = \"DIR/*\" by hand")
    layout.globs = _globs(root, [s.folder for s in layout.services])
    layout.notes += python_notes(root, [s.folder for s in layout.services])
    layout.ship = _shared_code(root, layout)
    if base is not None:
        _seed_bases(root, layout, store, indexes)
    else:
        _shared_bases(layout)
    return layout


def python_notes(root: Path, folders: Sequence[Path]) -> list[str]:
    """What the repository's Dockerfiles say of the Python they run, against what the images get."""
    versions: dict[str, list[str]] = {}
    for folder in {root, *folders}:
        for dockerfile in (folder / "Dockerfile",):
            if dockerfile.is_file() and (m := re.search(r"^\s*FROM\s+(?:\S+/)?python:(3\.\d+)(\S*)", dockerfile.read_text(
                    errors="replace"), re.M | re.I)):
                versions.setdefault(m.group(1), []).append(dockerfile.relative_to(root).as_posix())
    notes = [f"Python: the images get Debian bookworm's Python 3.11 (/usr/bin/python3.11); packages are resolved "
             "for it"]
    for version, files in sorted(versions.items()):
        if version != "3.11":
            notes.append(f"{', '.join(sorted(files))} use{'s' if len(files) == 1 else ''} Python {version}: to match, set "
                         f"[images.python] from = \"python:{version}-slim\" and drop its packages (or from = "
                         f"\"debian:trixie\" for 3.13)")
    return notes


def _service(folder: Path, root: Path) -> Service:
    port, port_from = find_port(folder, root)
    entry = find_entry(_code(folder, root, port or 8000))
    if (folder / "requirements.txt").is_file() and folder != root:
        source: str | None = "requirements.txt"
        reqs = [r.name for r in read_requirements(folder / "requirements.txt") if not r.constraint]
    elif (folder / "pyproject.toml").is_file():
        lock = next((d / "uv.lock" for d in (folder, *folder.parents) if (d / "uv.lock").is_file()
                     and (d == root or root in d.parents)), None)
        source = "uv.lock" if lock is not None else "pyproject.toml"
        try:
            reqs = [re.split(r"[\s\[<>=!~;@]", line.strip(), maxsplit=1)[0].lower()
                    for line in pyproject_requirements(folder / "pyproject.toml")]
        except LaminaError:
            reqs = []
    else:
        source, reqs = None, []
    service = Service(folder, entry, source, reqs)
    service.port, service.port_from = port, port_from
    if entry is None:
        service.notes.append("found nothing to run (no app, gRPC server, __main__): set command = [...]")
    if source is None:
        service.notes.append("no requirements.txt or pyproject.toml: it gets only what its base has")
    return service


def find_port(folder: Path, root: Path) -> tuple[int | None, str]:
    """The port a service listens on, and where it was found."""
    dockerfile = folder / "Dockerfile"
    if dockerfile.is_file():
        text = dockerfile.read_text(errors="replace")
        if m := re.search(r"^\s*EXPOSE\s+(\d+)", text, re.M | re.I):
            return int(m.group(1)), "Dockerfile EXPOSE"
        if m := re.search(r"--port[\"',=\s]+(\d+)|(?:-b|--bind)[\"',=\s]+[\w.\[\]:]*:(\d+)", text):
            return int(next(g for g in m.groups() if g)), "Dockerfile CMD"
    for compose in ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"):
        path = root / compose
        if path.is_file():
            text = path.read_text(errors="replace")
            block = re.search(rf"^\s+{re.escape(folder.name)}:\s*$(.*?)(?=^\s{{2}}\S|\Z)", text, re.M | re.S)
            if block and (m := re.search(r"[\"']?\d+:(\d+)[\"']?", block.group(1))):
                return int(m.group(1)), compose
    for file in sorted(folder.rglob("*.py")):
        if any(p in SKIP_DIRS for p in file.relative_to(folder).parts):
            continue
        text = file.read_text(errors="replace")
        if m := re.search(r"add_(?:insecure|secure)_port\(\s*[fF]?[\"'][^\"']*:(\d+)", text):
            return int(m.group(1)), f"{file.name} (gRPC port)"
        if m := re.search(r"(?:\.run|serve)\((?:[^()]|\([^()]*\))*?port\s*=\s*(\d+)", text):
            return int(m.group(1)), f"{file.name} (port=)"
        if m := re.search(r"start_server\([^)]*,\s*[\"'][\d.]+[\"']\s*,\s*(\d+)", text):
            return int(m.group(1)), f"{file.name} (start_server)"
    return None, ""


def _globs(root: Path, folders: Sequence[Path]) -> list[str]:
    """One pattern per parent when it matches exactly the services there, else the folders themselves."""
    if list(folders) == [root]:
        return ["."]
    globs = []
    by_parent: dict[Path, list[Path]] = {}
    for f in folders:
        by_parent.setdefault(f.parent, []).append(f)
    for parent, found in sorted(by_parent.items()):
        rel = parent.relative_to(root).as_posix()
        prefix = os.path.commonprefix([f.name for f in found])
        pattern = f"{prefix}*" if prefix else "*"
        matches = {p for p in parent.glob(pattern) if p.is_dir() and p.name not in SKIP_DIRS and not p.name.startswith(".")}
        if parent != root and matches == set(found):
            globs.append(f"{rel}/{pattern}" if rel != "." else pattern)
        else:
            globs += [f.relative_to(root).as_posix() or "." for f in found]
    return globs


def _shared_code(root: Path, layout: Layout) -> list[str]:
    """Folders of first-party code the services import but that are not services (``libs/``,
    ``libs/shared_lib/`` with a src layout, ``common/``): the smallest folder that provides the names."""
    service_dirs = {s.folder for s in layout.services}
    imported = {site.module for s in layout.services for site in imports_in([s.folder])}
    imported -= {n for s in layout.services for n in _names(s.folder)}

    def visit(folder: Path, depth: int) -> list[str]:
        if folder in service_dirs or folder.name in SKIP_DIRS or folder.name.startswith("."):
            return []
        if any(folder in d.parents for d in service_dirs) or not _names(folder, deep=False) & imported:
            found = [] if depth >= 2 else [x for child in sorted(p for p in folder.iterdir() if p.is_dir())
                                           for x in visit(child, depth + 1)]
            return found
        return [folder.relative_to(root).as_posix()]

    return [x for top in sorted(p for p in root.iterdir() if p.is_dir()) for x in visit(top, 0)]


def _names(folder: Path, deep: bool = True) -> set[str]:
    """Top-level import names a folder provides: itself as a package, its modules and packages, and
    those of its ``src/`` (a src layout)."""
    names = {folder.name} if (folder / "__init__.py").is_file() else set()
    for base in (folder, folder / "src"):
        if base.is_dir() and (base == folder / "src" or not (folder / "__init__.py").is_file()):
            names |= {p.name for p in base.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
            names |= {p.stem for p in base.glob("*.py") if p.stem not in ("__init__", "setup", "__main__")}
    if deep:
        for p in folder.rglob("*.py"):
            rel = p.relative_to(folder).parts
            if not any(x in SKIP_DIRS for x in rel):
                names.add(p.stem)
    return names


def _seed_bases(root: Path, layout: Layout, store: BlobStore, indexes: Indexes) -> None:
    """The seed's layout: base-runtime from requirements-base.txt, base-ml from requirements-ml.txt for the
    services whose requirements or imports need what only the ML requirements bring."""
    assert layout.base_requirements is not None
    if layout.ml_requirements is None:
        return
    ml_only = _ml_only_modules(layout.base_requirements, layout.ml_requirements, store, indexes)
    ml_names = set(ml_only.values())
    for service in layout.services:
        imports = {site.module for site in imports_in([service.folder])}
        if set(service.requirements) & ml_names or imports & set(ml_only):
            service.base = "base-ml"


def _shared_bases(layout: Layout) -> None:
    """Requirements declared identically by every service (at least two) go into base-runtime; services
    with ML stacks go on base-ml, which gets the ML requirements they all share."""
    with_reqs = [s for s in layout.services if s.source == "requirements.txt"]
    lines: Counter[str] = Counter()
    for s in with_reqs:
        reqs = read_requirements(s.folder / "requirements.txt")
        if any(r.hashes for r in reqs):
            continue  # a hashed lock is installed exactly as it is: nothing moves to a base
        lines.update({str(r.requirement) for r in reqs if not r.constraint})
    if len(with_reqs) >= 2 and len(with_reqs) == len(layout.services):
        layout.shared = sorted(line for line, n in lines.items() if n == len(with_reqs))
    for s in layout.services:
        if set(s.requirements) & ML_STACK:
            s.base = "base-ml"
    if not layout.shared:
        for s in layout.services:
            s.base = "python" if s.base == "base-runtime" else s.base
    ml = [s for s in layout.services if s.base == "base-ml"]
    if ml:
        layout.notes.append(f"base-ml: {', '.join(s.folder.name for s in ml)} use an ML stack; move what they share "
                            "into base-ml's requirements to share its layers")


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
    quote = lambda items: "[" + ", ".join(f'"{i}"' for i in items) + "]"  # noqa: E731
    project = [f'registry = "{registry}"' if registry else '# registry = "gitea.example.com"   # where --push sends images',
               f'owner = "{owner}"' if owner else '# owner = "acme"',
               f'version = "{version}"']
    if base_version:
        project.append(f'base_version = "{base_version}"')
    lines = ["# Written by `lamina init` (layout: " + layout.kind + "): the image family of this repository. Edit freely.",
             *(f"# NOTE: {n}" for n in layout.notes), "", "[project]", *project, "",
             "# The OS and Python from Debian packages: bookworm's Python 3.11 (trixie: 3.13). For another Python,",
             "# use an official image instead: from = \"python:3.12-slim\" (and drop packages).",
             "[images.python]", f'from = "{layout.python_from}"', f"packages = {quote(PYTHON_PACKAGES)}", 'user = "app"']
    if layout.base_requirements is not None:
        lines += ["", "[images.base-runtime]", 'from = "python"', f'requirements = ["{rel(layout.base_requirements)}"]']
        if layout.ml_requirements is not None:
            lines += ["", "[images.base-ml]", 'from = "base-runtime"',
                      f'requirements = ["{rel(layout.ml_requirements)}"]']
    else:
        if layout.shared:
            lines += ["", "# What every service declares the same way, installed once and shared.",
                      "[images.base-runtime]", 'from = "python"', f"python_packages = {quote(layout.shared)}"]
        if layout.ml_services:
            lines += ["", "[images.base-ml]", f'from = "{"base-runtime" if layout.shared else "python"}"',
                      "# python_packages = [\"torch\", ...]   # what the ML services share"]
    default_base = "base-runtime" if layout.base_requirements is not None or layout.shared else "python"
    seed = layout.base_requirements is not None
    if not layout.services:
        return "\n".join(lines + ["", "# No service folder was found. Declare them, e.g.:", "# [services]",
                                  '# glob = "services/*"', f'# base = "{default_base}"']) + "\n"
    lines += ["", "[services]", f"glob = {quote(layout.globs)}" if len(layout.globs) != 1 else f'glob = "{layout.globs[0]}"',
              f'base = "{default_base}"']
    if layout.ship:
        lines.append(f"ship = {quote(layout.ship)}")
    if seed:
        lines += ["port = 8000", 'health = "/healthz"']
    for service in layout.services:
        extra = _service_lines(service, default_base, seed)
        if extra:
            lines += ["", f"[services.{service.folder.name if service.folder != root else service_name(root)}]", *extra]
    return "\n".join(lines) + "\n"


def _service_lines(service: Service, default_base: str, seed: bool) -> list[str]:
    out: list[str] = []
    entry = service.entry
    if service.base != default_base:
        out.append(f'base = "{service.base}"')
    if entry is not None:
        out.append(f"# found: {entry.found} ({entry.kind}); dependencies: {service.source or 'none'}")
    if service.port and (service.port != 8000 or not seed):
        out.append(f"port = {service.port}   # from {service.port_from}")
    elif entry is not None and entry.kind in ("asgi", "wsgi", "grpc") and not seed:
        out.append("# port = 8000   # no port found in a Dockerfile, compose file or the code: 8000 assumed")
    if entry is not None and entry.kind == "command" and service.port:
        out.append('health = "tcp"   # a plain command listening on a port: checked by connecting')
    elif entry is not None and entry.kind == "command":
        out.append('health = "none"   # a worker with no port: add a command, e.g. health = ["python", "-m", "pkg.ping"]')
    elif entry is not None and entry.kind in ("asgi", "wsgi") and not seed:
        out.append('health = "/healthz"   # an HTTP GET; change it to the path your app answers')
    if entry is None:
        out.append('command = ["python", "-m", "CHANGE.ME"]   # nothing found to run: say what starts it')
    out += [f"# {n}" for n in service.notes]
    return out


def init_project(root: Path, *, store: BlobStore, registry: str | None = None, owner: str | None = None,
                 version: str = "0.1.0", base_version: str | None = None, indexes: Indexes = Indexes()) -> tuple[Path, Layout]:
    """Write ``root/lamina.toml`` (refusing to overwrite one); returns its path and what was found."""
    path = root / "lamina.toml"
    if path.exists():
        raise LaminaError(f"{path} already exists", hint="remove it first, or edit it by hand")
    layout = discover(root, store=store, indexes=indexes)
    path.write_text(render(root, layout, registry=registry, owner=owner, version=version, base_version=base_version))
    return path, layout


__all__: Sequence[str] = ["Layout", "Service", "discover", "find_port", "init_project", "render"]
