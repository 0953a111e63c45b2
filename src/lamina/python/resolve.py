"""Resolving an image's Python requirements for its platform with uv, its base's pins as constraints.

uv evaluates markers and wheel tags for the target (pip does not: see docs/python.md), and writes a
``pylock.toml`` listing one wheel per package with its sha256; that is what lamina locks and installs.
Only wheels are used: a package without a wheel for the target is an error that says so.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from lamina.errors import LaminaError
from lamina.python.target import PythonTarget


@dataclass(frozen=True)
class Indexes:
    """Where packages come from: an index, extra indexes, and local wheel folders (find-links)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def uv_args(self) -> list[str]:
        args = ["--no-index"] if self.no_index else (["--index-url", self.index_url] if self.index_url else [])
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in self.find_links:
            args += ["--find-links", link]
        return args

    def fingerprint(self) -> str:
        parts = [self.index_url or "", *self.extra_index_urls, "#", *self.find_links]
        return "|".join(parts + ["no-index"] if self.no_index else parts)


@dataclass(frozen=True)
class LockedDist:
    """One distribution chosen for an image: a single wheel, pinned by its hash."""

    name: str
    version: str
    url: str
    sha256: str
    size: int | None = None
    #: For a wheel lamina built from a pure-Python sdist: the sdist's sha256 (``url`` is the sdist's,
    #: ``sha256`` and ``size`` the wheel's) and the wheel's file name.
    sdist_sha256: str | None = None
    wheel_name: str | None = None

    @property
    def filename(self) -> str:
        return self.wheel_name or unquote(urlparse(self.url).path.rsplit("/", 1)[-1])

    @property
    def unbuilt_sdist(self) -> bool:
        """An sdist the resolver chose that is not built yet (its sha256 is the sdist's)."""
        return self.sdist_sha256 is None and not self.filename.endswith(".whl")

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def to_lock(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "version": self.version, "url": self.url, "sha256": self.sha256}
        if self.size is not None:
            out["size"] = self.size
        if self.sdist_sha256:
            out["sdist_sha256"] = self.sdist_sha256
            out["wheel"] = self.wheel_name
        return out

    @classmethod
    def from_lock(cls, data: Mapping[str, object]) -> LockedDist:
        size = data.get("size")
        return cls(str(data["name"]), str(data["version"]), str(data["url"]), str(data["sha256"]),
                   int(size) if isinstance(size, int) else None,
                   str(data["sdist_sha256"]) if data.get("sdist_sha256") else None,
                   str(data["wheel"]) if data.get("wheel") else None)


def uv_binary() -> str:
    """The uv executable (the ``uv`` package puts one next to Python, or on PATH)."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:
        found = shutil.which("uv")
        if found is None:
            raise LaminaError("uv is needed to resolve Python packages", hint="pip install uv") from None
        return found


def inputs_fingerprint(requirements: Sequence[Path], extra: Sequence[str], target: PythonTarget,
                       constraints: Mapping[str, str], indexes: Indexes) -> str:
    """What a resolution depends on: a lock made from other inputs is stale."""
    digest = hashlib.sha256()
    for path in requirements:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for line in extra:
        digest.update(line.encode() + b"\0")
    digest.update(f"{target.minor}|{target.uv_platform}|{indexes.fingerprint()}".encode())
    for name, version in sorted(constraints.items()):
        digest.update(f"{name}=={version}\n".encode())
    return "sha256:" + digest.hexdigest()


def resolve(
    requirements: Sequence[Path],
    target: PythonTarget,
    *,
    extra: Sequence[str] = (),
    constraints: Mapping[str, str] | None = None,
    indexes: Indexes = Indexes(),
    where: str,
    no_deps: bool = False,
) -> list[LockedDist]:
    """Every distribution the requirements need on ``target``, each base pin kept as it is. With
    ``no_deps`` the requirements are taken as the complete set (a hashed lock file): nothing is added."""
    with tempfile.TemporaryDirectory(prefix="lamina-resolve-") as tmp:
        inputs = [str(p) for p in requirements]
        if extra:
            extra_file = Path(tmp) / "extra-requirements.txt"
            extra_file.write_text("\n".join(extra) + "\n")
            inputs.append(str(extra_file))
        cmd = [uv_binary(), "pip", "compile", *inputs, "--python-platform", target.uv_platform,
               "--python-version", target.minor, "--only-binary", ":all:", "--format", "pylock.toml",
               "--no-header", "--quiet", "--native-tls", "-o", str(Path(tmp) / "pylock.toml"), *indexes.uv_args()]
        if constraints:
            constraint_file = Path(tmp) / "base-constraints.txt"
            constraint_file.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
            cmd += ["--constraint", str(constraint_file)]
        if no_deps:
            cmd.append("--no-deps")
        env = {**os.environ, "UV_NO_CONFIG": "1"}
        sdists: list[str] = []
        while True:
            result = subprocess.run(cmd + [a for n in sdists for a in ("--no-binary", n)], capture_output=True,
                                    text=True, env=env)
            only_sdist = _sdist_only(result.stderr) if result.returncode != 0 else None
            if only_sdist is None or only_sdist in sdists or len(sdists) >= MAX_SDISTS:
                break
            sdists.append(only_sdist)  # resolve again, taking that package's sdist (built later, if pure Python)
        if result.returncode != 0:
            raise _resolution_error(result.stderr, where, requirements)
        return parse_pylock((Path(tmp) / "pylock.toml").read_text(), where, target, sdists=set(sdists))


#: How many sdist-only packages one resolution may take (each costs a resolution and a build).
MAX_SDISTS = 10


def _sdist_only(stderr: str) -> str | None:
    """The package uv could not resolve because it has no wheels at all (only an sdist)."""
    m = re.search(r"Wheels are required for `([^`]+)`", stderr) or re.search(r"Because ([A-Za-z0-9_.-]+)[=<>!~\s][^\n]*?"
                                                                          r"has no usable wheels", stderr)
    return canonicalize_name(m.group(1)) if m else None


def target_tags(target: PythonTarget) -> list[Tag]:
    """The wheel tags the target accepts, best first (as pip ranks them)."""
    arch = target.uv_platform.split("-", 1)[0]
    glibc_minor = int(target.manylinux.rsplit("_", 1)[1])
    platforms = []
    for minor in range(glibc_minor, 4, -1):
        platforms.append(f"manylinux_2_{minor}_{arch}")
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}.get(minor)
        if legacy:
            platforms.append(f"{legacy}_{arch}")
    platforms.append(f"linux_{arch}")
    version = tuple(int(p) for p in target.minor.split("."))
    interpreter = f"cp{version[0]}{version[1]}"
    return [*cpython_tags(version, platforms=platforms), *compatible_tags(version, interpreter, platforms)]


def best_wheel(wheels: Sequence[Mapping[str, Any]], ranking: Mapping[Tag, int]) -> Mapping[str, Any] | None:
    """The wheel whose best tag ranks first for the target (uv may list several that fit)."""
    def rank(wheel: Mapping[str, Any]) -> int:
        filename = unquote(urlparse(wheel.get("url") or wheel.get("path", "")).path.rsplit("/", 1)[-1])
        try:
            tags = parse_wheel_filename(filename)[3]
        except InvalidWheelFilename:
            return len(ranking)
        return min((ranking.get(tag, len(ranking)) for tag in tags), default=len(ranking))

    ranked = sorted(wheels, key=rank)
    return ranked[0] if ranked and rank(ranked[0]) < len(ranking) else None


def parse_pylock(text: str, where: str, target: PythonTarget | None = None,
                 sdists: set[str] = frozenset()) -> list[LockedDist]:  # type: ignore[assignment]
    """The wheels of a ``pylock.toml`` written by ``uv pip compile`` (the best one per package); for the
    packages in ``sdists``, their sdist (to be built)."""
    data = tomllib.loads(text)
    ranking = {tag: i for i, tag in enumerate(target_tags(target))} if target else None
    dists = []
    for package in data.get("packages", []):
        name = canonicalize_name(package["name"])
        wheels = package.get("wheels") or []
        if not wheels and name in sdists and package.get("sdist"):
            sdist = package["sdist"]
            dists.append(LockedDist(name, str(package["version"]), sdist.get("url") or Path(sdist["path"]).absolute().as_uri(),
                                    sdist["hashes"]["sha256"], sdist.get("size")))
            continue
        wheel = wheels[0] if len(wheels) == 1 and ranking is None else (
            best_wheel(wheels, ranking) if ranking is not None else None)
        if wheel is None:
            platform = target.platform if target else "this platform"
            raise LaminaError(f"{where}: {name} {package.get('version')} has no wheel for {platform}",
                              hint="it is published as a source distribution only; pick a release with wheels")
        url = wheel.get("url") or Path(wheel["path"]).absolute().as_uri()
        dists.append(LockedDist(name, str(package["version"]), url, wheel["hashes"]["sha256"], _size(wheel, url)))
    return sorted(dists, key=lambda d: d.name)


def _size(wheel: Mapping[str, Any], url: str) -> int | None:
    """The wheel's size: uv lists it for index wheels, not for local ones (find-links), whose file says it.
    Layers are assigned by size, so the same wheel must weigh the same from any index."""
    if wheel.get("size") is not None:
        return int(wheel["size"])
    parsed = urlparse(url)
    if parsed.scheme == "file":
        try:
            return Path(unquote(parsed.path)).stat().st_size
        except OSError:
            return None
    return None


def _resolution_error(stderr: str, where: str, requirements: Sequence[Path]) -> LaminaError:
    text = "\n".join(line for line in stderr.strip().splitlines() if line.strip())
    hint = "check the pins in " + ", ".join(str(p) for p in requirements) if requirements else None
    if re.search(r"no wheels|only source distributions|--only-binary|no matching distribution", text, re.I):
        hint = ("lamina installs wheels only (nothing is compiled for the image): pick a release that has a "
                "wheel for this platform and Python, or a -binary variant (e.g. psycopg2-binary)")
    return LaminaError(f"{where}: the Python requirements cannot be resolved:\n{text}", hint=hint)
