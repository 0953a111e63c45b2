"""Reading ``lamina.toml`` into the typed specs of :mod:`lamina.config.model`.

Every problem is reported with the file, the line, the key, what was expected and what was found.
Registry, owner and version can be overridden by environment (``LAMINA_REGISTRY``, ``LAMINA_OWNER``,
``LAMINA_VERSION``) and by command-line flags, in that order of strength (flags win).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from lamina.config.model import (
    CONFIG_NAME,
    CopySpec,
    DependencySource,
    ImageSpec,
    ProjectConfig,
    PythonSettings,
    _suggest,
)
from lamina.errors import ConfigError, UnsafePathError
from lamina.oci.compress import Compression
from lamina.oci.model import Format, HealthCheck, Platform, RunConfig, host_platform
from lamina.oci.paths import lexically_inside, project_path

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
        """1-based line of ``key`` in ``[table]`` (or of the table header; 1 if not found). A key that is
        a table of its own (``[table.key]``, ``[[table.key]]``, or ``[key...]`` at the top) is found by
        its header."""
        header = re.compile(r"^\s*\[\[?\s*" + re.escape(table) + r"\s*\]\]?\s*(#.*)?$")
        start = next((i for i, line in enumerate(self.lines) if header.match(line)), None)
        if key is not None:
            full = f"{table}.{key}" if table else key
            sub = re.compile(r"^\s*\[\[?\s*" + re.escape(full) + r"\s*[\].]")
            if (found := next((i for i, line in enumerate(self.lines) if sub.match(line)), None)) is not None:
                if start is None or not self._key_line(start, key):
                    return found + 1
        if start is None:
            if key is not None and not table:
                start = -1
            else:
                return 1
        if key is None:
            return start + 1
        return self._key_line(start, key) or max(start + 1, 1)

    def _raw_value(self, table: str, key: str) -> str | None:
        """The value of ``key`` as written in the file (to quote it back in a hint)."""
        line = self.line_of(table, key)
        m = re.match(r"^\s*" + re.escape(key) + r"\s*=\s*([^#\s]+)", self.lines[line - 1] if self.lines else "")
        return m.group(1) if m else None

    def _key_line(self, start: int, key: str) -> int | None:
        key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        return None

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
            if isinstance(proj.get(key), float):
                raise self.error("project", key, f"{proj[key]!r} is a number, so TOML has already dropped what "
                                 f"it cannot keep (1.10 reads as 1.1)",
                                 f"quote it: {key} = \"{self._raw_value('project', key) or proj[key]}\"")
            if (v := self.get("project", proj, key, (str, int), "a string")) is not None:
                values[key] = str(v)
        values["base_version_scheme"] = self.choice("project", proj, "base_version_scheme",
                                                    ("patch", "minor", "major", "date"), "patch")
        values["format"] = self.choice("project", proj, "format", get_args(Format), "oci")
        values["compression"] = self.choice("project", proj, "compression", get_args(Compression), "gzip")
        values["insecure_registries"] = tuple(self.str_list("project", proj, "insecure_registries") or ())
        if (cache := self.get("project", proj, "cache", str, "a reference such as \"registry/owner/lamina-cache:main\"")) is not None:
            values["cache"] = cache
        values["cache_from"] = tuple(self.str_list("project", proj, "cache_from") or ())
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
        if (ca_file := self.get("project", proj, "ca_file", str, "a path to a PEM file of CA certificates")) is not None:
            values["ca_file"] = (self.path.parent / ca_file).absolute()
            if not values["ca_file"].is_file():
                raise self.error("project", "ca_file", f"{values['ca_file']} does not exist",
                                 "paths are relative to lamina.toml")
        if (keyring := self.get("project", proj, "debian_keyring", str, "a path to a keyring file")) is not None:
            values["debian_keyring"] = (self.path.parent / keyring).absolute()
        default_platform = self.platforms("project", proj, (host_platform(),))
        images = data.get("images", {})
        if not isinstance(images, dict):
            raise self.error("", "images", "expected tables [images.NAME]")
        specs = {name: self.image(name, body, default_platform) for name, body in images.items()}
        for spec in read_services(self, data.get("services"), default_platform):
            if spec.name in specs:
                raise self.error("services", None, f"service {spec.name!r} has the name of an image in [images]",
                                 "rename one of them")
            specs[spec.name] = spec
        for spec in specs.values():
            self.check_base(spec, specs)
        return ProjectConfig(path=self.path, images=specs, python=self.python_settings(data.get("python", {})),
                             podman=tuple(self.str_list("test", test, "podman") or ()),
                             podman_run_flags=tuple(self.str_list("test", test, "run_flags") or ()), **values)

    def check_base(self, spec: ImageSpec, specs: Mapping[str, ImageSpec]) -> None:
        """A ``from`` that is no project image but a bare name close to one (``busyboxx``) is a typo, not a
        Docker Hub image: said now, naming the key and the close match, before any network."""
        base = spec.base
        if base in specs or base == "scratch" or any(c in base for c in ":/@"):
            return
        close = difflib.get_close_matches(base, [n for n in specs if n != spec.name], n=1, cutoff=0.75)
        if close:
            table, key = (spec.service.table_key, "base") if spec.service else (f"images.{spec.name}", "from")
            raise self.error(table, key, f"{base!r} is not an image of this project; did you mean {close[0]!r}?",
                             f"fix the name; for a registry image, write it with its tag "
                             f"(e.g. \"{base}:latest\" or \"docker.io/library/{base}:1\")")

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

    def choice(self, table: str, data: Mapping[str, Any], key: str, options: tuple[str, ...], default: str) -> str:
        value = data.get(key, default)
        if value not in options:
            raise self.error(table, key, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    def platforms(self, table: str, data: Mapping[str, Any],
                  default: tuple[Platform, ...]) -> tuple[Platform, ...]:
        """``platform = "linux/arm64"`` or ``platforms = ["linux/amd64", "linux/arm64"]`` (not both)."""
        if "platform" in data and "platforms" in data:
            raise self.error(table, "platforms", "set either platform or platforms, not both")
        key = "platforms" if "platforms" in data else "platform"
        texts = self.str_list(table, data, key)
        if texts is None:
            return default
        if not texts:
            raise self.error(table, key, "expected at least one platform such as \"linux/amd64\"")
        try:
            platforms = tuple(Platform.parse(t) for t in texts)
        except Exception as e:
            raise self.error(table, key, str(e), "write platforms as OS/ARCH[/VARIANT], e.g. \"linux/arm64\"") from None
        if len(set(platforms)) != len(platforms):
            raise self.error(table, key, "a platform is listed twice")
        return platforms

    def image(self, name: str, body: Any, default_platform: tuple[Platform, ...]) -> ImageSpec:
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
        deps = self.dependencies(table, body)
        return ImageSpec(
            name=name,
            base=base or "scratch",
            platforms=self.platforms(table, body, default_platform),
            copies=tuple(self.copies(table, body.get("copy", []))),
            symlinks=self.str_map(table, body, "symlinks"),
            run=self.run_config(table, body),
            annotations=self.str_map(table, body, "annotations"),
            repository=repository,
            tags=tuple(self.str_list(table, body, "tags") or ()),
            base_version=self.get(table, body, "base_version", str, "a tag such as \"v1.0.2\""),
            packages=packages,
            requirements=tuple(d for d in deps if isinstance(d, Path)),
            sources=tuple(d for d in deps if isinstance(d, DependencySource)),
            python_packages=tuple(self.str_list(table, body, "python_packages") or ()),
            python=self.get(table, body, "python", str, "the interpreter's path, e.g. \"/usr/bin/python3.11\""),
        )

    def requirement_files(self, table: str, body: Mapping[str, Any]) -> list[Path]:
        return [d for d in self.dependencies(table, body) if isinstance(d, Path)]

    def dependencies(self, table: str, body: Mapping[str, Any]) -> list[Path | DependencySource]:
        """``requirements``: requirements files, ``pyproject.toml[EXTRA,...]`` or ``uv.lock#MEMBER``."""
        return [self.dependency(table, name, self.path.parent) for name in self.str_list(table, body, "requirements") or []]

    def dependency(self, table: str, text: str, folder: Path, member: str | None = None) -> Path | DependencySource:
        """One dependency source, relative to ``folder``: a requirements file, a pyproject.toml
        (with extras in brackets) or a uv.lock (``#member`` names the workspace member)."""
        m = re.fullmatch(r"\s*([^\[#]+?)\s*(?:\[([^\]]*)\])?\s*(?:#\s*(\S+))?\s*", text)
        if not m:
            raise self.error(table, "requirements", f"cannot read {text!r}",
                             "write a file (\"requirements.txt\"), \"pyproject.toml[extra]\" or \"uv.lock#member\"")
        path = (folder / m.group(1)).absolute()
        if not path.is_file():
            raise self.error(table, "requirements", f"{path} does not exist",
                             "paths are relative to lamina.toml (to the service folder under [services])")
        extras = tuple(e.strip() for e in (m.group(2) or "").split(",") if e.strip())
        if path.name == "uv.lock":
            return DependencySource("uv.lock", path, extras, m.group(3) or member)
        if path.suffix == ".toml":
            return DependencySource("pyproject", path, extras)
        if extras or m.group(3):
            raise self.error(table, "requirements", f"{text!r}: extras and members apply to pyproject.toml and uv.lock")
        return path

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
            if not source.exists() and not source.is_symlink():
                raise self.error(where, "src", f"{source} does not exist", "paths are relative to lamina.toml")
            try:  # a host path written as such (src = "/bin/busybox") is the user's choice; a project path is
                if lexically_inside(source, self.path.parent):  # refused if a symlink takes it outside
                    project_path(source, self.path.parent, what="copy src")
            except UnsafePathError as e:
                raise self.error(where, "src", e.message, e.hint) from None
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


_PROJECT_KEYS = dict.fromkeys(
    ["registry", "owner", "version", "base_version", "base_version_scheme", "format", "compression", "output", "insecure_registries", "source", "revision", "platform",
     "platforms", "ca_file", "cache", "cache_from", "debian_mirror", "debian_security_mirror", "debian_suites", "debian_keyring"]
)
_IMAGE_KEYS = dict.fromkeys(
    ["from", "platform", "copy", "symlinks", "env", "workdir", "user", "entrypoint", "cmd", "expose", "labels", "healthcheck",
     "annotations", "repository", "tags", "base_version", "packages", "requirements", "python_packages", "python", "platforms"]
)
_PYTHON_KEYS = dict.fromkeys(["index_url", "extra_index_urls", "find_links", "manylinux", "no_index"])
_SERVICE_KEYS = dict.fromkeys(
    ["glob", "exclude", "base", "ship", "requirements", "python_packages", "packages", "port", "health", "user", "command", "env",
     "labels", "platform", "platforms", "app", "server", "workdir", "copy", "tests"]
)
_COPY_KEYS = dict.fromkeys(["src", "dest", "mode", "owner", "exclude"])
_HEALTH_KEYS = dict.fromkeys(["test", "interval", "timeout", "start_period", "retries"])


from lamina.config.services import read_services  # noqa: E402  (services are read with this reader)
