"""``lamina.toml``: the project's images, read and checked into typed specs.

Every problem is reported with the file, the line, the key, what was expected and what was found.
Registry, owner and version can be overridden by environment (``LAMINA_REGISTRY``, ``LAMINA_OWNER``,
``LAMINA_VERSION``) and by command-line flags, in that order of strength (flags win).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

from lamina.errors import ConfigError
from lamina.oci.compress import Compression
from lamina.oci.model import Format, HealthCheck, Platform, RunConfig
from lamina.oci.reference import Reference
from lamina.python.asgi import find_asgi_app

CONFIG_NAME = "lamina.toml"
DEFAULT_OUTPUT = "oci:build/oci"
#: What a service's code layers leave out: build inputs and caches, not code (so bumping a requirement
#: changes the package layers only).
CODE_EXCLUDES = ("__pycache__", ".git", "*.pyc", "requirements*.txt")
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
    platform: Platform = field(default_factory=Platform)
    copies: tuple[CopySpec, ...] = ()
    symlinks: Mapping[str, str] = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    annotations: Mapping[str, str] = field(default_factory=dict)
    repository: str | None = None
    tags: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    requirements: tuple[Path, ...] = ()
    python_packages: tuple[str, ...] = ()
    python: str | None = None
    service: ServiceCode | None = None

    @property
    def uses_python(self) -> bool:
        return bool(self.requirements or self.python_packages)


@dataclass(frozen=True)
class ServiceCode:
    """What makes an image a service: its folder, the code it ships, its own requirements file."""

    folder: Path
    code: tuple[Path, ...]
    requirements: Path | None


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
    format: Format = "oci"
    compression: Compression = "gzip"
    output: str = DEFAULT_OUTPUT
    insecure_registries: tuple[str, ...] = ()
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
        """Where ``spec`` is pushed: ``registry/owner/name:version`` unless configured otherwise."""
        repository = spec.repository or "/".join(p for p in (self.owner, spec.name) if p)
        if not _has_host(repository):
            if self.registry is None:
                raise ConfigError(
                    f"image {spec.name!r} has no registry to push to",
                    hint="set `registry` in [project], LAMINA_REGISTRY, or pass --registry",
                )
            repository = f"{self.registry}/{repository}"
        return Reference.parse(repository).with_tag(tag or self.tag_of(spec))

    def tag_of(self, spec: ImageSpec) -> str:
        """An image's tag: its own ``tags``, else ``base_version`` for bases (images that are not
        services) when set, else ``version``, else ``latest`` (the seed's BASE_VERSION/version split)."""
        if spec.tags:
            return spec.tags[0]
        if spec.service is None and self.base_version:
            return self.base_version
        return self.version or "latest"


def service_name(folder: Path) -> str:
    """The image name of a service folder: ``apps/svc_ocr`` → ``svc-ocr`` (as the seed names them)."""
    return folder.name.replace("_", "-").lower()


def _has_host(repository: str) -> bool:
    first, slash, _ = repository.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


# -- reading -----------------------------------------------------------------------------------


def find_config(start: Path) -> Path:
    """``lamina.toml`` in ``start`` or the nearest parent directory."""
    for directory in (start.absolute(), *start.absolute().parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no {CONFIG_NAME} in {start.absolute()} or any parent directory",
        hint="run lamina from your project, or pass --config PATH",
    )


def load_config(path: Path) -> ProjectConfig:
    """Read and check ``path``."""
    path = path.absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", hint="pass --config PATH or create lamina.toml") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}", hint="fix the syntax at that line") from None
    return _Reader(path, text).project(data)


class _Reader:
    """Turns the parsed TOML into specs, knowing where each key is written for error messages."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    # where things are -----------------------------------------------------------------------

    def line_of(self, table: str, key: str | None = None) -> int:
        """1-based line of ``key`` in ``[table]`` (or of the table header; 1 if not found)."""
        header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
        start = next((i for i, line in enumerate(self.lines) if header.match(line)), None)
        if start is None:
            if key is not None and not table:
                start = -1
            else:
                return 1
        if key is None:
            return start + 1
        key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        return max(start + 1, 1)

    def error(self, table: str, key: str | None, message: str, hint: str | None = None) -> ConfigError:
        where = ".".join(p for p in (table, key) if p)
        return ConfigError(f"{self.path}:{self.line_of(table, key)}: {where}: {message}", hint=hint)

    def check_keys(self, table: str, data: Mapping[str, Any], allowed: Mapping[str, object]) -> None:
        for key in data:
            if key not in allowed:
                raise self.error(table, key, "unknown key", _suggest(key, allowed) or f"known keys: {', '.join(allowed)}")

    # typed getters ----------------------------------------------------------------------------

    def get(self, table: str, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], expected: str) -> Any:
        value = data.get(key)
        if value is None or isinstance(value, kind) and not (isinstance(value, bool) and kind is int):
            return value
        raise self.error(table, key, f"expected {expected}, got {value!r}")

    def str_list(self, table: str, data: Mapping[str, Any], key: str) -> list[str] | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise self.error(table, key, f"expected a string or a list of strings, got {value!r}")

    def str_map(self, table: str, data: Mapping[str, Any], key: str) -> dict[str, str]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(table, key, f"expected a table of strings, got {value!r}")
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise self.error(table, key, f"expected string values, got {k} = {v!r}")
            out[str(k)] = str(v)
        return out

    # the document -----------------------------------------------------------------------------

    def project(self, data: Mapping[str, Any]) -> ProjectConfig:
        self.check_keys("", data, {"project": 0, "images": 0, "python": 0, "services": 0, "test": 0})
        test = data.get("test", {})
        if not isinstance(test, dict):
            raise self.error("", "test", "expected a table [test]")
        self.check_keys("test", test, {"podman": 0, "run_flags": 0})
        proj = data.get("project", {})
        if not isinstance(proj, dict):
            raise self.error("", "project", "expected a table [project]")
        self.check_keys("project", proj, _PROJECT_KEYS)
        values: dict[str, Any] = {}
        for key in ("registry", "owner", "version", "base_version", "output", "source", "revision"):
            if (v := self.get("project", proj, key, (str, int, float), "a string")) is not None:
                values[key] = str(v)
        values["format"] = self.choice("project", proj, "format", get_args(Format), "oci")
        values["compression"] = self.choice("project", proj, "compression", get_args(Compression), "gzip")
        values["insecure_registries"] = tuple(self.str_list("project", proj, "insecure_registries") or ())
        for key in ("debian_mirror", "debian_security_mirror"):
            if (url := self.get("project", proj, key, str, "a URL such as \"https://deb.debian.org/debian\"")) is not None:
                if not re.match(r"https?://[^/]+", url):
                    raise self.error("project", key, f"expected an http(s) URL, got {url!r}")
                values[key] = url.rstrip("/")
        suites = tuple(self.str_list("project", proj, "debian_suites") or ())
        if bad := [x for x in suites if x not in ("updates", "security")]:
            raise self.error("project", "debian_suites", f"unknown suite {bad[0]!r}",
                             "the extra suites are \"updates\" (RELEASE-updates) and \"security\" (RELEASE-security)")
        values["debian_suites"] = suites
        if (keyring := self.get("project", proj, "debian_keyring", str, "a path to a keyring file")) is not None:
            values["debian_keyring"] = (self.path.parent / keyring).absolute()
        default_platform = self.platform("project", proj, Platform())
        images = data.get("images", {})
        if not isinstance(images, dict):
            raise self.error("", "images", "expected tables [images.NAME]")
        specs = {name: self.image(name, body, default_platform) for name, body in images.items()}
        for spec in self.services(data.get("services"), default_platform):
            if spec.name in specs:
                raise self.error("services", None, f"service {spec.name!r} has the name of an image in [images]",
                                 "rename one of them")
            specs[spec.name] = spec
        return ProjectConfig(path=self.path, images=specs, python=self.python_settings(data.get("python", {})),
                             podman=tuple(self.str_list("test", test, "podman") or ()),
                             podman_run_flags=tuple(self.str_list("test", test, "run_flags") or ()), **values)

    def python_settings(self, table: Any) -> PythonSettings:
        if not isinstance(table, dict):
            raise self.error("", "python", "expected a table [python]")
        self.check_keys("python", table, _PYTHON_KEYS)
        links = []
        for link in self.str_list("python", table, "find_links") or []:
            links.append(link if "://" in link else str((self.path.parent / link).absolute()))
        manylinux = self.get("python", table, "manylinux", str, "a tag such as \"manylinux_2_28\"") or "manylinux_2_28"
        if not re.fullmatch(r"manylinux_2_\d+", manylinux):
            raise self.error("python", "manylinux", f"expected a tag such as \"manylinux_2_28\", got {manylinux!r}")
        return PythonSettings(
            index_url=self.get("python", table, "index_url", str, "a URL"),
            extra_index_urls=tuple(self.str_list("python", table, "extra_index_urls") or ()),
            find_links=tuple(links),
            manylinux=manylinux,
            no_index=bool(self.get("python", table, "no_index", bool, "true or false")),
        )

    def services(self, table: Any, default_platform: Platform) -> list[ImageSpec]:
        """One image per folder matching ``[services] glob``, with per-service tables as overrides."""
        if table is None:
            return []
        if not isinstance(table, dict):
            raise self.error("", "services", "expected a table [services]")
        defaults = {k: v for k, v in table.items() if not isinstance(v, dict) or k in ("env", "labels")}
        overrides = {k: v for k, v in table.items() if isinstance(v, dict) and k not in ("env", "labels")}
        self.check_keys("services", defaults, _SERVICE_KEYS)
        patterns = self.str_list("services", defaults, "glob")
        if not patterns:
            raise self.error("services", None, "needs glob = \"apps/svc_*\" (where the service folders are)")
        pattern = ", ".join(patterns)
        excluded = self.str_list("services", defaults, "exclude") or []
        found = {p for glob in patterns for p in self.path.parent.glob(glob) if p.is_dir() and p.name != "__pycache__"}
        folders = sorted((p for p in found if not any(fnmatch.fnmatchcase(p.name, x) for x in excluded)),
                         key=lambda p: p.name)
        by_name = {f.name: f for f in folders} | {service_name(f): f for f in folders}
        for key in overrides:
            if key not in by_name:
                raise self.error(f"services.{key}", None, f"no service folder {key!r} matches {pattern!r}",
                                 _suggest(key, by_name) or f"services found: {', '.join(map(service_name, folders))}")
        specs = []
        for folder in folders:
            own = overrides.get(folder.name) or overrides.get(service_name(folder)) or {}
            table_name = f"services.{folder.name if folder.name in overrides else service_name(folder)}"
            self.check_keys(table_name, own, _SERVICE_KEYS)
            specs.append(self.service(folder, {**defaults, **own}, table_name if own else "services", default_platform))
        return specs

    def service(self, folder: Path, body: Mapping[str, Any], table: str, default_platform: Platform) -> ImageSpec:
        root = self.path.parent
        name = service_name(folder)
        uid, gid = self.owner(table, body.get("user", "1000:1000"))
        port = body.get("port", 8000)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise self.error(table, "port", f"expected a port number, got {port!r}")
        ship = [root / p for p in self.str_list(table, body, "ship") or []]
        for path in ship:
            if not path.exists():
                raise self.error(table, "ship", f"{path} does not exist", "paths are relative to lamina.toml")
        req_name = self.get(table, body, "requirements", str, "a file name such as \"requirements.txt\"") or "requirements.txt"
        requirements = folder / req_name if (folder / req_name).is_file() else None
        copies = [CopySpec(src=p, dest="/app/" + p.relative_to(root).as_posix(), uid=uid, gid=gid, exclude=CODE_EXCLUDES)
                  for p in [*ship, folder]]
        command = self.str_list(table, body, "command") or self.uvicorn(folder, table, port)
        health = self.get(table, body, "health", str, "an HTTP path such as \"/healthz\"") or "/healthz"
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{health}', timeout=3)"
        run = RunConfig(
            env={"PYTHONPATH": "/app", "PYTHONUNBUFFERED": "1", **self.str_map(table, body, "env")},
            cmd=command,
            workdir="/app",
            user=f"{uid}:{gid}",
            exposed_ports=[f"{port}/tcp"],
            labels={"org.opencontainers.image.title": name, **self.str_map(table, body, "labels")},
            healthcheck=HealthCheck(test=["CMD", "python", "-c", probe], interval_s=10, timeout_s=5,
                                    start_period_s=5, retries=3),
        )
        base = self.get(table, body, "base", str, "an image name such as \"base-runtime\"") or "scratch"
        return ImageSpec(
            name=name,
            base=base,
            platform=self.platform(table, body, default_platform),
            copies=tuple(copies),
            run=run,
            packages=self.packages(table, body, base),
            requirements=(requirements,) if requirements else (),
            python_packages=tuple(self.str_list(table, body, "python_packages") or ()),
            service=ServiceCode(folder, tuple(ship) + (folder,), requirements),
        )

    def uvicorn(self, folder: Path, table: str, port: int) -> list[str]:
        app = find_asgi_app(folder, self.path.parent)
        if app is None:
            raise self.error(table, "command", f"no ASGI app (such as `app = FastAPI()`) found in {folder}",
                             "set command = [...] for this service")
        return ["python", "-m", "uvicorn", app, "--host", "0.0.0.0", "--port", str(port)]

    def choice(self, table: str, data: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
        value = data.get(key, default)
        if value not in options:
            raise self.error(table, key, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    def platform(self, table: str, data: Mapping[str, Any], default: Platform) -> Platform:
        text = self.get(table, data, "platform", str, "a platform such as \"linux/amd64\"")
        if text is None:
            return default
        try:
            return Platform.parse(text)
        except Exception as e:
            raise self.error(table, "platform", str(e)) from None

    def image(self, name: str, body: Any, default_platform: Platform) -> ImageSpec:
        table = f"images.{name}"
        if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", name):
            raise self.error(table, None, "image names are lower-case letters, digits and . _ -")
        if not isinstance(body, dict):
            raise self.error("images", name, "expected a table [images.NAME]")
        self.check_keys(table, body, _IMAGE_KEYS)
        base = self.get(table, body, "from", str,
                        "an image reference, \"oci:DIR:NAME\", \"debian:RELEASE\" or \"scratch\"")
        if base is not None and base.startswith("debian:") and not re.fullmatch(r"debian:[a-z]+", base):
            raise self.error(table, "from", f"expected a Debian release such as \"debian:bookworm\", got {base!r}")
        repository = self.get(table, body, "repository", str, "a repository such as \"owner/name\"")
        packages = self.packages(table, body, base or "scratch")
        return ImageSpec(
            name=name,
            base=base or "scratch",
            platform=self.platform(table, body, default_platform),
            copies=tuple(self.copies(table, body.get("copy", []))),
            symlinks=self.str_map(table, body, "symlinks"),
            run=self.run_config(table, body),
            annotations=self.str_map(table, body, "annotations"),
            repository=repository,
            tags=tuple(self.str_list(table, body, "tags") or ()),
            packages=packages,
            requirements=tuple(self.requirement_files(table, body)),
            python_packages=tuple(self.str_list(table, body, "python_packages") or ()),
            python=self.get(table, body, "python", str, "the interpreter's path, e.g. \"/usr/bin/python3.11\""),
        )

    def requirement_files(self, table: str, body: Mapping[str, Any]) -> list[Path]:
        files = []
        for name in self.str_list(table, body, "requirements") or []:
            path = (self.path.parent / name).absolute()
            if not path.is_file():
                raise self.error(table, "requirements", f"{path} does not exist", "paths are relative to lamina.toml")
            files.append(path)
        return files

    def packages(self, table: str, body: Mapping[str, Any], base: str) -> tuple[str, ...]:
        names = self.str_list(table, body, "packages") or []
        for name in names:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(\s*\(\s*(<<|<=|=|>=|>>)\s*[A-Za-z0-9.+~:-]+\s*\))?", name.strip()):
                raise self.error(table, "packages", f"{name!r} is not a Debian package name",
                                 "write names such as \"python3\", optionally with a version: \"libc6 (>= 2.36)\"")
        if names and base == "scratch":
            raise self.error(table, "packages", "Debian packages need a Debian base, but the image is from scratch",
                             "set from = \"debian:bookworm\", or a Debian-based image such as python:3.12-slim")
        return tuple(n.strip() for n in names)

    def run_config(self, table: str, body: Mapping[str, Any]) -> RunConfig:
        expose = body.get("expose", [])
        if isinstance(expose, (int, str)):
            expose = [expose]
        if not isinstance(expose, list) or not all(isinstance(p, (int, str)) for p in expose):
            raise self.error(table, "expose", f"expected ports such as [8000] or [\"53/udp\"], got {expose!r}")
        ports = [p if isinstance(p, str) and "/" in p else f"{p}/tcp" for p in expose]
        return RunConfig(
            env=self.str_map(table, body, "env"),
            entrypoint=self.str_list(table, body, "entrypoint"),
            cmd=self.str_list(table, body, "cmd"),
            workdir=self.get(table, body, "workdir", str, "an absolute path"),
            user=self.user(table, body),
            exposed_ports=ports,
            labels=self.str_map(table, body, "labels"),
            healthcheck=self.healthcheck(table, body.get("healthcheck")),
        )

    def user(self, table: str, body: Mapping[str, Any]) -> str | None:
        value = body.get("user")
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        raise self.error(table, "user", f"expected a user such as \"1000:1000\" or \"app\", got {value!r}")

    def healthcheck(self, table: str, value: Any) -> HealthCheck | None:
        if value is None:
            return None
        if isinstance(value, (str, list)):
            value = {"test": value}
        if not isinstance(value, dict):
            raise self.error(table, "healthcheck", "expected a command or a table with test, interval, ...")
        self.check_keys(f"{table}.healthcheck", value, _HEALTH_KEYS)
        test = value.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        elif isinstance(test, list) and test and test[0] not in ("CMD", "CMD-SHELL", "NONE"):
            test = ["CMD", *test]
        if not isinstance(test, list) or not all(isinstance(t, str) for t in test):
            raise self.error(table, "healthcheck", f"test: expected a command, got {test!r}")
        retries = value.get("retries", 3)
        if not isinstance(retries, int) or retries < 0:
            raise self.error(table, "healthcheck", f"retries: expected a count, got {retries!r}")
        return HealthCheck(
            test=test,
            interval_s=self.duration(table, "interval", value.get("interval", "30s")),
            timeout_s=self.duration(table, "timeout", value.get("timeout", "30s")),
            start_period_s=self.duration(table, "start_period", value.get("start_period", "0s")),
            retries=retries,
        )

    def duration(self, table: str, key: str, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
        if not m:
            raise self.error(table, "healthcheck", f"{key}: expected a duration such as \"30s\", got {value!r}")
        scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
        return float(m.group(1)) * scale

    def copies(self, table: str, items: Any) -> list[CopySpec]:
        if not isinstance(items, list):
            raise self.error(table, "copy", "expected [[images.NAME.copy]] entries")
        specs = []
        for item in items:
            where = f"{table}.copy"
            if not isinstance(item, dict):
                raise self.error(table, "copy", "expected tables with src and dest")
            self.check_keys(where, item, _COPY_KEYS)
            src, dest = item.get("src"), item.get("dest")
            if not isinstance(src, str) or not isinstance(dest, str):
                raise self.error(where, None, "each copy needs src (a project path) and dest (an image path)")
            source = (self.path.parent / src).absolute()
            if not source.exists():
                raise self.error(where, "src", f"{source} does not exist", "paths are relative to lamina.toml")
            uid, gid = self.owner(where, item.get("owner", "0:0"))
            specs.append(
                CopySpec(
                    src=source,
                    dest=dest,
                    mode=self.mode(where, item.get("mode")),
                    uid=uid,
                    gid=gid,
                    exclude=tuple(self.str_list(where, item, "exclude") or CopySpec.exclude),
                )
            )
        return specs

    def mode(self, table: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777:
            return value
        if isinstance(value, str) and re.fullmatch(r"0?o?[0-7]{3,4}", value):
            return int(value.replace("o", ""), 8)
        raise self.error(table, "mode", f"expected an octal mode such as \"0755\" or 0o755, got {value!r}")

    def owner(self, table: str, value: Any) -> tuple[int, int]:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, value
        m = re.fullmatch(r"(\d+)(?::(\d+))?", str(value))
        if not m:
            raise self.error(table, "owner", f"expected numeric \"uid:gid\" such as \"1000:1000\", got {value!r}")
        uid = int(m.group(1))
        return uid, int(m.group(2) or uid)


def _suggest(word: str, options: Mapping[str, object] | Callable[[], object]) -> str | None:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f"did you mean {close[0]!r}?" if close else None


_PROJECT_KEYS = dict.fromkeys(
    ["registry", "owner", "version", "base_version", "format", "compression", "output", "insecure_registries", "source", "revision", "platform",
     "debian_mirror", "debian_security_mirror", "debian_suites", "debian_keyring"]
)
_IMAGE_KEYS = dict.fromkeys(
    ["from", "platform", "copy", "symlinks", "env", "workdir", "user", "entrypoint", "cmd", "expose", "labels", "healthcheck",
     "annotations", "repository", "tags", "packages", "requirements", "python_packages", "python"]
)
_PYTHON_KEYS = dict.fromkeys(["index_url", "extra_index_urls", "find_links", "manylinux", "no_index"])
_SERVICE_KEYS = dict.fromkeys(
    ["glob", "exclude", "base", "ship", "requirements", "python_packages", "packages", "port", "health", "user", "command", "env",
     "labels", "platform"]
)
_COPY_KEYS = dict.fromkeys(["src", "dest", "mode", "owner", "exclude"])
_HEALTH_KEYS = dict.fromkeys(["test", "interval", "timeout", "start_period", "retries"])
