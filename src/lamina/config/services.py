"""``[services]``: one image per service folder matching a glob, with per-service tables as overrides.

Reading a service decides its files, user, port, environment, its dependency source (a requirements
file, its ``pyproject.toml``, or the workspace's ``uv.lock``) and, when the table states one, its
health check. The command that serves it and the health check its kind calls for (HTTP for an
ASGI/WSGI app, the gRPC health protocol for a gRPC server, none for a worker) are found later from
its code (:mod:`lamina.python.entry`).
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.config.model import (
    CODE_EXCLUDES,
    CONFIG_NAME,
    OUTPUT_FOLDERS,
    TEST_FOLDERS,
    CopySpec,
    DependencySource,
    ImageSpec,
    ServiceCode,
    service_name,
)
from lamina.errors import UnsafePathError
from lamina.oci.paths import is_inside, project_path
from lamina.oci.model import HealthCheck, Platform, RunConfig

if TYPE_CHECKING:
    from lamina.config.reader import _Reader

HEALTH_KINDS = ("tcp", "grpc", "none")
SERVERS = ("uvicorn", "gunicorn")
#: The label that says, in words, what the image's health check does (``lamina test`` prints it).
HEALTH_LABEL = "dev.lamina.health"


def read_services(reader: _Reader, table: Any, default_platform: tuple[Platform, ...]) -> list[ImageSpec]:
    """One image per folder matching ``[services] glob``, with per-service tables as overrides."""
    from lamina.config.reader import _SERVICE_KEYS, _suggest

    if table is None:
        return []
    if not isinstance(table, dict):
        raise reader.error("", "services", "expected a table [services]")
    per_service = ("env", "labels")
    defaults = {k: v for k, v in table.items() if not isinstance(v, dict) or k in per_service}
    overrides = {k: v for k, v in table.items() if isinstance(v, dict) and k not in per_service}
    reader.check_keys("services", defaults, _SERVICE_KEYS)
    patterns = reader.str_list("services", defaults, "glob")
    if not patterns:
        raise reader.error("services", None, "needs glob = \"apps/svc_*\" (where the service folders are)")
    pattern = ", ".join(patterns)
    excluded = reader.str_list("services", defaults, "exclude") or []
    root = reader.path.parent
    matched: dict[str, set[Path]] = {
        glob: {p for p in ([root] if glob.strip("/") in (".", "") else root.glob(glob))
               if p.is_dir() and not is_output(p, root)}
        for glob in patterns}
    for glob, paths in matched.items():
        if not paths:
            raise reader.error("services", "glob", f"{glob!r} matches no folder under {root}",
                               "fix the pattern (it is relative to lamina.toml), or remove it")
    found = set().union(*matched.values())
    folders = sorted((p for p in found if not any(fnmatch.fnmatchcase(p.name, x) for x in excluded)),
                     key=lambda p: p.name)
    for folder in folders:
        if not is_inside(folder, root):
            raise reader.error("services", "glob", f"service folder {folder} is a symlink to a folder outside "
                               f"the project", "lamina builds the project's own folders only; move the code in")
    seen: dict[str, Path] = {}
    for folder in folders:
        if (other := seen.get(service_name(folder))) is not None:
            raise reader.error("services", "glob",
                               f"service folders {other.relative_to(root)} and {folder.relative_to(root)} both "
                               f"make the image {service_name(folder)!r}",
                               "rename one of the folders, or leave one out with exclude = [...]")
        seen[service_name(folder)] = folder
    by_name = {f.name: f for f in folders} | {service_name(f): f for f in folders}
    for key in overrides:
        if key not in by_name:
            raise reader.error(f"services.{key}", None, f"no service folder {key!r} matches {pattern!r}",
                               _suggest(key, by_name) or f"services found: {', '.join(map(service_name, folders))}")
    specs = []
    for folder in folders:
        own = overrides.get(folder.name) or overrides.get(service_name(folder)) or {}
        table_name = f"services.{folder.name if folder.name in overrides else service_name(folder)}"
        reader.check_keys(table_name, own, _SERVICE_KEYS)
        specs.append(read_service(reader, folder, {**defaults, **own}, table_name if own else "services",
                                  default_platform))
    return specs


def is_output(path: Path, root: Path) -> bool:
    """Whether ``path`` is (inside) something lamina or other tools write: build output, venvs,
    caches, hidden folders. A glob never picks those as services."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return True
    return any(p in OUTPUT_FOLDERS or p.startswith(".") for p in parts)


def read_service(reader: _Reader, folder: Path, body: Mapping[str, Any], table: str,
                 default_platform: tuple[Platform, ...]) -> ImageSpec:
    root = reader.path.parent
    name = service_name(folder)
    uid, gid = reader.owner(table, body.get("user", "1000:1000"))
    port = body.get("port", 8000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise reader.error(table, "port", f"expected a port number, got {port!r}")
    ship = []
    for entry in reader.str_list(table, body, "ship") or []:
        if Path(entry).is_absolute():
            raise reader.error(table, "ship", f"{entry!r} is an absolute path",
                               "ship project folders, relative to lamina.toml (e.g. \"libs\")")
        path = root / entry
        if not path.exists() and not path.is_symlink():
            raise reader.error(table, "ship", f"{path} does not exist", "paths are relative to lamina.toml")
        try:
            project_path(path, root, what="ship")
        except UnsafePathError as e:
            raise reader.error(table, "ship", e.message, e.hint) from None
        ship.append(path)
    tests = tuple(reader.str_list(table, body, "tests") if "tests" in body else TEST_FOLDERS)  # type: ignore[arg-type]
    requirements, sources = dependency_source(reader, table, body, folder, root)
    excludes = (*CODE_EXCLUDES, *tests, *(f for f in OUTPUT_FOLDERS if f not in CODE_EXCLUDES), "lamina.lock")
    excludes += (CONFIG_NAME,) if folder == root else ()
    copies = [CopySpec(src=p, dest=("/app/" + p.relative_to(root).as_posix()).removesuffix("/."), uid=uid, gid=gid,
                       exclude=excludes) for p in [*ship, folder]]
    copies += reader.copies(table, body.get("copy", []))
    command = reader.str_list(table, body, "command")
    health = health_setting(reader, table, body.get("health"))
    app = reader.get(table, body, "app", str, "\"module:app\" or \"module:create_app()\"")
    server = reader.get(table, body, "server", str, "\"uvicorn\" or \"gunicorn\"")
    if server is not None and server not in SERVERS:
        raise reader.error(table, "server", f"expected \"uvicorn\" or \"gunicorn\", got {server!r}")
    roots = import_roots([*ship, folder], root)
    service = ServiceCode(folder, tuple(ship) + (folder,), requirements, root=root, port=port,
                          table=f"{reader.path}:{reader.line_of(table)}: [{table}]", app=app, server=server,
                          health=health, import_roots=roots, tests=tests, table_key=table,
                          pyproject=folder / "pyproject.toml" if (folder / "pyproject.toml").is_file() else None)
    workdir = reader.get(table, body, "workdir", str, "a folder of the project or an absolute image path")
    if workdir is not None and not workdir.startswith("/"):
        if not (root / workdir).is_dir():
            raise reader.error(table, "workdir", f"{root / workdir} is not a folder",
                               "write a project folder (relative to lamina.toml) or an absolute path in the image")
        workdir = service.image_path((root / workdir).absolute())
    run = RunConfig(
        env={"PYTHONPATH": ":".join(service.python_path), "PYTHONUNBUFFERED": "1", **reader.str_map(table, body, "env")},
        cmd=command,
        workdir=workdir or "/app",
        user=f"{uid}:{gid}",
        exposed_ports=[f"{port}/tcp"],
        labels={"org.opencontainers.image.title": name,
                **({HEALTH_LABEL: describe_health(health, port)} if health is not None else {}),
                **reader.str_map(table, body, "labels")},
        healthcheck=health_check(health, port) if health is not None else None,
    )
    base = reader.get(table, body, "base", str, "an image name such as \"base-runtime\"") or "scratch"
    return ImageSpec(
        name=name,
        base=base,
        platforms=reader.platforms(table, body, default_platform),
        copies=tuple(copies),
        run=run,
        packages=reader.packages(table, body, base),
        requirements=(requirements,) if requirements else (),
        sources=sources,
        python_packages=tuple(reader.str_list(table, body, "python_packages") or ()),
        service=service,
    )


def dependency_source(reader: _Reader, table: str, body: Mapping[str, Any], folder: Path,
                      root: Path) -> tuple[Path | None, tuple[DependencySource, ...]]:
    """The service's requirements: ``requirements`` when set (a file, ``pyproject.toml[extra]`` or
    ``uv.lock``, relative to the folder); else ``requirements.txt``; else the workspace's ``uv.lock``
    (for a member with a pyproject.toml); else its pyproject.toml's dependencies."""
    text = reader.get(table, body, "requirements", str, "a file name such as \"requirements.txt\"")
    member = project_name(folder / "pyproject.toml")
    if text is None:
        if (folder / "requirements.txt").is_file():
            return folder / "requirements.txt", ()
        lock = find_upwards(folder, root, "uv.lock")
        if member and lock is not None:
            return None, (DependencySource("uv.lock", lock, (), member),)
        if member is not None or declares_dependencies(folder / "pyproject.toml"):
            return None, (DependencySource("pyproject", folder / "pyproject.toml"),)
        return None, ()
    source = reader.dependency(table, text, folder, member)
    if isinstance(source, DependencySource) and source.kind == "uv.lock" and not source.package:
        raise reader.error(table, "requirements", f"{source.path}: which workspace member is {folder.name}?",
                           "write \"uv.lock#MEMBER\", or give the folder a pyproject.toml with [project] name")
    return (source, ()) if isinstance(source, Path) else (None, (source,))


def find_upwards(folder: Path, root: Path, name: str) -> Path | None:
    for directory in (folder, *folder.parents):
        if (directory / name).is_file():
            return directory / name
        if directory == root or root not in directory.parents:
            break
    return None


def project_name(pyproject: Path) -> str | None:
    data = _toml(pyproject)
    name = (data.get("project") or {}).get("name") or ((data.get("tool") or {}).get("poetry") or {}).get("name")
    return name if isinstance(name, str) else None


def declares_dependencies(pyproject: Path) -> bool:
    data = _toml(pyproject)
    return bool((data.get("project") or {}).get("dependencies") or
                ((data.get("tool") or {}).get("poetry") or {}).get("dependencies"))


def _toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}


def import_roots(paths: Sequence[Path], root: Path | None = None) -> tuple[Path, ...]:
    """Folders put on the image's ``sys.path`` besides /app: a shipped project's ``src/`` (src layout);
    the project folder itself (a folder with a pyproject.toml/setup.py whose packages are imported by
    their own name, as ``pip install`` would make them importable); a folder of modules that import
    each other by their bare names (as its Dockerfile's ``WORKDIR`` would make them importable)."""
    roots = []
    for path in paths:
        if not path.is_dir() or path == root:
            continue
        if (path / "src").is_dir() and any((path / "src").glob("*/__init__.py")) | any((path / "src").glob("*.py")):
            roots.append(path / "src")
        elif ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()) and not (path / "__init__.py").is_file():
            roots.append(path)
        elif not (path / "__init__.py").is_file() and _imports_siblings(path):
            roots.append(path)
    return tuple(roots)


def _imports_siblings(folder: Path) -> bool:
    """Whether the folder's own modules import each other by bare name (``import settings``)."""
    children = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    pattern = re.compile(r"^\s*(?:from|import)\s+(" + "|".join(map(re.escape, sorted(children))) + r")\b", re.M)
    if not children:
        return False
    return any(pattern.search(p.read_text(errors="replace")) for p in folder.glob("*.py"))


def health_setting(reader: _Reader, table: str, value: Any) -> str | tuple[str, ...] | None:
    """``"/healthz"`` (HTTP GET), ``"tcp"``, ``"grpc"``, ``"none"``, or a command list (exec)."""
    if value is None:
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, str) and (value.startswith("/") or value in HEALTH_KINDS):
        return value
    raise reader.error(table, "health", f"expected an HTTP path, \"tcp\", \"grpc\", \"none\" or a command, got {value!r}",
                       "e.g. health = \"/healthz\", health = \"tcp\", health = [\"python\", \"-m\", \"app.ping\"]")


def health_check(health: str | tuple[str, ...], port: int) -> HealthCheck:
    """The image's health check for a service's ``health`` setting, run inside the image with its own
    Python (nothing else is assumed to be there)."""
    if isinstance(health, tuple):
        return HealthCheck(test=["CMD", *health], interval_s=10, timeout_s=5, start_period_s=5, retries=3)
    if health == "none":
        return HealthCheck(test=["NONE"])
    probe = health_probe(health, port)
    return HealthCheck(test=["CMD", "python", "-c", probe], interval_s=10, timeout_s=5, start_period_s=5, retries=3)


def health_probe(health: str, port: int) -> str:
    """Python code the image runs as its check; on failure it exits with one line saying what failed
    (podman keeps it, and ``lamina test`` prints it)."""
    if health == "tcp":
        action = f"socket.create_connection(('127.0.0.1', {port}), timeout=3).close()"
        return _probe("import socket", action, f"tcp connect to 127.0.0.1:{port}")
    if health == "grpc":
        # grpc.health.v1.Health/Check with an empty HealthCheckRequest (service ""), bytes in and out,
        # so grpcio alone is enough; b'\x08\x01' is HealthCheckResponse{status: SERVING}.
        action = (f"r = grpc.insecure_channel('127.0.0.1:{port}').unary_unary('/grpc.health.v1.Health/Check')"
                  "(b'', timeout=3)\n    assert r == b'\\x08\\x01', f'status {r!r}, not SERVING'")
        return _probe("import grpc", action, f"gRPC health check on 127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}{health}"
    return _probe("import urllib.request", f"urllib.request.urlopen('{url}', timeout=3)", f"GET {url}")


def _probe(imports: str, action: str, what: str) -> str:
    return (f"import sys\n{imports}\ntry:\n    {action}\nexcept Exception as e:\n"
            f"    sys.exit(f'{what} failed: {{type(e).__name__}}: {{e}}')")


def describe_health(health: str | tuple[str, ...], port: int) -> str:
    """The health check in words, for the image label and ``lamina test``."""
    if isinstance(health, tuple):
        return "exec " + json.dumps(list(health))
    return {"tcp": f"tcp connect to 127.0.0.1:{port}", "grpc": f"gRPC health check (grpc.health.v1) on 127.0.0.1:{port}",
            "none": "none"}.get(health, f"HTTP GET http://127.0.0.1:{port}{health} answering 2xx")
