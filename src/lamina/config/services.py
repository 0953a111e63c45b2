"""``[services]``: one image per service folder matching a glob, with per-service tables as overrides.

Reading a service decides its files, user, port, environment and health check; the command that
serves its app, when the table sets none, is found later from its code (:mod:`lamina.python.step`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lamina.config.model import CODE_EXCLUDES, CopySpec, ImageSpec, ServiceCode, service_name
from lamina.oci.model import HealthCheck, Platform, RunConfig

if TYPE_CHECKING:
    from lamina.config.reader import _Reader


def read_services(reader: _Reader, table: Any, default_platform: tuple[Platform, ...]) -> list[ImageSpec]:
    """One image per folder matching ``[services] glob``, with per-service tables as overrides."""
    from lamina.config.reader import _SERVICE_KEYS, _suggest

    if table is None:
        return []
    if not isinstance(table, dict):
        raise reader.error("", "services", "expected a table [services]")
    defaults = {k: v for k, v in table.items() if not isinstance(v, dict) or k in ("env", "labels")}
    overrides = {k: v for k, v in table.items() if isinstance(v, dict) and k not in ("env", "labels")}
    reader.check_keys("services", defaults, _SERVICE_KEYS)
    patterns = reader.str_list("services", defaults, "glob")
    if not patterns:
        raise reader.error("services", None, "needs glob = \"apps/svc_*\" (where the service folders are)")
    pattern = ", ".join(patterns)
    excluded = reader.str_list("services", defaults, "exclude") or []
    root = reader.path.parent
    found = {p for glob in patterns for p in root.glob(glob) if p.is_dir() and p.name != "__pycache__"}
    folders = sorted((p for p in found if not any(fnmatch.fnmatchcase(p.name, x) for x in excluded)),
                     key=lambda p: p.name)
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


def read_service(reader: _Reader, folder: Path, body: Mapping[str, Any], table: str,
                 default_platform: tuple[Platform, ...]) -> ImageSpec:
    root = reader.path.parent
    name = service_name(folder)
    uid, gid = reader.owner(table, body.get("user", "1000:1000"))
    port = body.get("port", 8000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise reader.error(table, "port", f"expected a port number, got {port!r}")
    ship = [root / p for p in reader.str_list(table, body, "ship") or []]
    for path in ship:
        if not path.exists():
            raise reader.error(table, "ship", f"{path} does not exist", "paths are relative to lamina.toml")
    req_name = reader.get(table, body, "requirements", str, "a file name such as \"requirements.txt\"") or "requirements.txt"
    requirements = folder / req_name if (folder / req_name).is_file() else None
    copies = [CopySpec(src=p, dest="/app/" + p.relative_to(root).as_posix(), uid=uid, gid=gid, exclude=CODE_EXCLUDES)
              for p in [*ship, folder]]
    command = reader.str_list(table, body, "command")
    health = reader.get(table, body, "health", str, "an HTTP path such as \"/healthz\"") or "/healthz"
    probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{health}', timeout=3)"
    run = RunConfig(
        env={"PYTHONPATH": "/app", "PYTHONUNBUFFERED": "1", **reader.str_map(table, body, "env")},
        cmd=command,
        workdir="/app",
        user=f"{uid}:{gid}",
        exposed_ports=[f"{port}/tcp"],
        labels={"org.opencontainers.image.title": name, **reader.str_map(table, body, "labels")},
        healthcheck=HealthCheck(test=["CMD", "python", "-c", probe], interval_s=10, timeout_s=5,
                                start_period_s=5, retries=3),
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
        python_packages=tuple(reader.str_list(table, body, "python_packages") or ()),
        service=ServiceCode(folder, tuple(ship) + (folder,), requirements, root=root, port=port,
                            table=f"{reader.path}:{reader.line_of(table)}: [{table}]"),
    )
