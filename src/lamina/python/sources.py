"""Dependency sources other than requirements files, turned into one: a ``pyproject.toml``'s PEP 621
``[project.dependencies]`` (with the extras asked for) or Poetry's ``[tool.poetry.dependencies]``, and
a ``uv.lock`` (exported with its hashes by ``uv export --frozen``, so its pins *are* the lock).

Each is written as a pip requirements file under the store's staging area; the resolver, the lock's
fingerprint and the checks then treat it like any requirements file.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lamina.config import DependencySource
from lamina.errors import ConfigError, LaminaError
from lamina.python.resolve import uv_binary


def materialize(source: DependencySource, folder: Path) -> Path:
    """A requirements file with what ``source`` asks for, in ``folder`` (named by its content)."""
    if source.kind == "uv.lock":
        text = uv_lock_requirements(source.path, source.package)
    else:
        text = "".join(f"{line}\n" for line in pyproject_requirements(source.path, source.extras))
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    out = folder / f"{source.label.replace('/', '_').replace('[', '.').replace(']', '').replace(',', '.')}-{digest}.txt"
    if not out.is_file():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    return out


def pyproject_requirements(path: Path, extras: tuple[str, ...] = ()) -> list[str]:
    """PEP 621 dependencies (and those of ``extras``), else Poetry's, as requirement lines."""
    data = _toml(path)
    project = data.get("project") or {}
    poetry = (data.get("tool") or {}).get("poetry") or {}
    if "dependencies" in project or "optional-dependencies" in project:
        lines = list(project.get("dependencies") or [])
        optional = project.get("optional-dependencies") or {}
        for extra in extras:
            if extra not in optional:
                raise ConfigError(f"{path}: no extra {extra!r} in [project.optional-dependencies]",
                                  hint=f"extras there: {', '.join(optional) or 'none'}")
            lines += optional[extra]
        return [_without_self(line, project.get("name")) for line in lines if _without_self(line, project.get("name"))]
    if "dependencies" in poetry:
        deps = dict(poetry.get("dependencies") or {})
        deps.pop("python", None)
        wanted_extras = {name for extra in extras for name in (poetry.get("extras") or {}).get(extra, [])}
        lines = []
        for name, spec in deps.items():
            if isinstance(spec, dict) and spec.get("optional") and name not in wanted_extras:
                continue
            lines.append(poetry_requirement(name, spec, path))
        return lines
    raise ConfigError(f"{path} declares no dependencies ([project] dependencies or [tool.poetry.dependencies])",
                      hint="point requirements at a requirements file instead")


def _without_self(line: str, name: Any) -> str:
    """Self-references (``pkg[extra]`` in pkg's own extras) expand to nothing: pkg's code is shipped."""
    if isinstance(name, str) and re.match(rf"^{re.escape(name)}\s*(\[|$)", line.strip(), re.I):
        return ""
    return line


def poetry_requirement(name: str, spec: Any, path: Path) -> str:
    """``^1.2`` → ``>=1.2,<2.0``, ``~1.2`` → ``>=1.2,<1.3``; tables with version/extras/markers/url."""
    extras, marker, version = "", "", "*"
    if isinstance(spec, str):
        version = spec
    elif isinstance(spec, dict):
        if "git" in spec or "path" in spec:
            raise ConfigError(f"{path}: {name} comes from a git repository or a path, which lamina does not build",
                              hint="publish it as a wheel (find_links) or ship its folder with the service")
        if "url" in spec:
            return f"{name} @ {spec['url']}"
        version = str(spec.get("version", "*"))
        if spec.get("extras"):
            extras = "[" + ",".join(spec["extras"]) + "]"
        if spec.get("markers"):
            marker = f" ; {spec['markers']}"
        elif spec.get("python"):
            marker = f" ; python_version {_python_marker(str(spec['python']))}"
    elif isinstance(spec, list):
        raise ConfigError(f"{path}: {name} has several constraints (a list), which lamina does not translate",
                          hint="use a requirements file for it")
    return f"{name}{extras}{_poetry_version(version)}{marker}"


def _python_marker(spec: str) -> str:
    m = re.fullmatch(r"\s*(>=|<=|>|<|==|!=)\s*([\d.]+)\s*", spec)
    return f"{m.group(1)} \"{m.group(2)}\"" if m else f">= \"{spec.strip('^~>=< ')}\""


def _poetry_version(version: str) -> str:
    version = version.strip()
    if version in ("", "*"):
        return ""
    out = []
    for part in (p.strip() for p in version.split(",")):
        if part.startswith("^"):
            nums = [int(x) for x in re.findall(r"\d+", part[1:])[:3]]
            idx = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1)
            upper = nums[: idx + 1]
            upper[-1] += 1
            out += [f">={part[1:]}", "<" + ".".join(map(str, upper))]
        elif part.startswith("~") and not part.startswith("~="):
            nums = [int(x) for x in re.findall(r"\d+", part[1:])[:3]]
            upper = [nums[0] + 1] if len(nums) == 1 else [nums[0], nums[1] + 1]
            out += [f">={part[1:]}", "<" + ".".join(map(str, upper))]
        elif re.match(r"^[\d]", part):
            out.append(f"=={part}")
        else:
            out.append(part)
    return ",".join(out)


def uv_lock_requirements(lock: Path, package: str | None) -> str:
    """The hashed pins ``uv.lock`` has for ``package`` (a workspace member), without the workspace's
    own packages (their code is shipped, not installed)."""
    cmd = [uv_binary(), "export", "--frozen", "--no-dev", "--no-header", "--format", "requirements-txt",
           "--no-emit-workspace", "--directory", str(lock.parent)]
    if package:
        cmd += ["--package", package]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "UV_NO_CONFIG": "1"})
    if result.returncode != 0:
        raise LaminaError(f"{lock}: cannot read its pins for {package or 'the project'}: {result.stderr.strip()}",
                          hint="run `uv lock` so that uv.lock matches the pyproject.toml files")
    return result.stdout


def project_name(pyproject: Path) -> str | None:
    data = _toml(pyproject)
    name = (data.get("project") or {}).get("name") or ((data.get("tool") or {}).get("poetry") or {}).get("name")
    return name if isinstance(name, str) else None


def console_scripts(pyproject: Path) -> Mapping[str, str]:
    """``[project.scripts]`` (or Poetry's ``scripts``): name → ``module:function``."""
    data = _toml(pyproject)
    scripts = (data.get("project") or {}).get("scripts") or ((data.get("tool") or {}).get("poetry") or {}).get("scripts")
    return {k: v for k, v in (scripts or {}).items() if isinstance(v, str)}


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
