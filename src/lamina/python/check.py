"""Build-time checks of a service against the layers of its image (``lamina check``).

(a) a module the code imports that no layer provides → error, with the distribution to add when
another image of the family has it; (b) a requirement the base already provides → warning (the
seed's "image too large"); (c) a requirement whose pin contradicts the base's → error showing both;
(d) a declared requirement the code never imports → note. Modules are mapped to distributions
exactly, from the installed wheels' file lists, plus the standard library and the app's own code.
"""

from __future__ import annotations

import ast
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lamina.config import ServiceCode
from lamina.oci.store import BlobStore
from lamina.python.findings import ERROR, MODULES_KIND, NOTE, WARNING, Finding, allows  # noqa: F401 (re-exported)
from lamina.python.requirements import DeclaredRequirement, read_requirements
from lamina.python.resolve import LockedDist
from lamina.python.wheels import fetch_wheels, verified_wheel

@dataclass(frozen=True)
class ImportSite:
    module: str
    file: Path
    line: int
    #: Under ``try: ... except ImportError`` or ``if TYPE_CHECKING:``: the code runs without it.
    optional: bool = False


_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any((t.id if isinstance(t, ast.Name) else getattr(t, "attr", "")) in _IMPORT_ERRORS for t in types)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _sites(node: ast.AST, file: Path, optional: bool) -> list[ImportSite]:
    """Imports under ``node``, marking those the code guards (try/except ImportError, TYPE_CHECKING)."""
    found: list[ImportSite] = []
    if isinstance(node, ast.Import):
        return [ImportSite(a.name.split(".")[0], file, node.lineno, optional) for a in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level == 0 and node.module:
            return [ImportSite(node.module.split(".")[0], file, node.lineno, optional)]
        return []
    if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
        guarded = optional or any(_catches_import_error(h) for h in node.handlers)  # type: ignore[attr-defined]
        for child in node.body:  # type: ignore[attr-defined]
            found += _sites(child, file, guarded)
        for child in [*node.handlers, *node.orelse, *node.finalbody]:  # type: ignore[attr-defined]
            found += _sites(child, file, optional)
        return found
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.body:
            found += _sites(child, file, True)
        for child in node.orelse:
            found += _sites(child, file, optional)
        return found
    for child in ast.iter_child_nodes(node):
        found += _sites(child, file, optional)
    return found


def imports_in(paths: Iterable[Path], skip: Iterable[str] = ()) -> list[ImportSite]:
    """Absolute imports in the Python files under ``paths`` (top-level module names), leaving out the
    folders named in ``skip`` (tests)."""
    skip = set(skip)
    sites = []
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            rel = file.relative_to(root).parts[:-1] if file != root else ()
            if "__pycache__" in file.parts or any(part in skip for part in rel):
                continue
            try:
                tree = ast.parse(file.read_bytes(), filename=str(file))
            except (SyntaxError, ValueError):
                continue
            sites += _sites(tree, file, False)
    return sites


def local_modules(paths: Iterable[Path]) -> set[str]:
    """Top-level names importable from the shipped code: its packages, modules and their children."""
    names = set()
    for root in paths:
        candidates = [root] if root.is_file() else [root, *root.rglob("*")]
        for path in candidates:
            if path.is_dir() and path.name != "__pycache__":
                names.add(path.name)
            elif path.suffix == ".py":
                names.add(path.stem)
    return names


def image_modules(service: ServiceCode) -> set[str]:
    """Top-level names the service can import from its own code *in the image*: from ``/app`` (the
    first folder of each shipped path, a namespace package, or a module shipped at the top), and
    from each import root on its ``PYTHONPATH`` (its packages and modules)."""
    names = set()
    for path in service.code:
        rel = path.relative_to(service.root).parts
        if rel:
            names.add(rel[0] if len(rel) > 1 or path.is_dir() else Path(rel[0]).stem)
    for root in service.import_roots:
        if not any(root == c or c in root.parents for c in service.code):
            continue
        for child in root.iterdir():
            if child.is_dir() and child.name != "__pycache__":
                names.add(child.name)
            elif child.suffix == ".py":
                names.add(child.stem)
    return names


def project_modules(root: Path, skip: Iterable[str] = ()) -> dict[str, Path]:
    """Every name a folder or module of the project could be imported as → where it is."""
    skip = set(skip) | {"build", "dist", "node_modules", "__pycache__", ".git", ".venv", "venv"}
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*"), key=lambda p: (len(p.parts), str(p))):
        rel = path.relative_to(root).parts
        if any(part in skip or part.startswith(".") for part in rel):
            continue
        if path.is_dir() and ((path / "__init__.py").is_file() or any(path.glob("*.py"))):
            found.setdefault(path.name, path)
        elif path.suffix == ".py":
            found.setdefault(path.stem, path)
    return found


def wheel_modules(wheel: Path) -> set[str]:
    """Top-level importable names a wheel installs (from its file list, as installed)."""
    names = set()
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            top = member.split("/", 1)[0]
            if top.endswith((".dist-info", ".data")) or top == "__pycache__":
                continue
            if "/" in member:
                names.add(top)
            elif top.endswith(".py"):
                names.add(top[:-3])
            elif top.endswith((".so", ".pyd")):
                names.add(top.split(".", 1)[0])
            elif top.endswith(".pth"):
                continue
    return {n for n in names if n.isidentifier()}


def check_service(
    image: str,
    code: Sequence[Path],
    declared: Sequence[DeclaredRequirement],
    *,
    provided: Mapping[str, str],
    base_name: str,
    base_pins: Mapping[str, str],
    own_dists: Mapping[str, str],
    family: Mapping[str, tuple[str, str]],
    local: set[str] | None = None,
    repo: Mapping[str, Path] | None = None,
    skip: Sequence[str] = (),
    python_path: Sequence[str] = ("/app",),
) -> list[Finding]:
    """Findings for one service.

    ``provided``: module → distribution, for every distribution in the image; ``base_pins``:
    distribution → version in the base; ``own_dists``: modules → dists of the service's own
    requirements (installed or not); ``family``: module → (distribution, image) anywhere in the family;
    ``local``: names importable from the service's own code in the image (default: every name in
    ``code``); ``repo``: names of the project's code → where it is (imported but not importable: not shipped).
    """
    findings = []
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    local = local_modules(code) if local is None else local
    reported: set[tuple[str, Path]] = set()
    for site in imports_in(code, skip):
        if site.module in stdlib or site.module in local or site.module in provided:
            continue
        if (site.module, site.file) in reported:
            continue  # one finding per module per file
        reported.add((site.module, site.file))
        elsewhere = (repo or {}).get(site.module)
        where = f"{site.file}:{site.line}"
        if site.optional:
            findings.append(Finding(NOTE, "optional-import", image, where,
                                    f"imports {site.module!r} optionally (guarded), and {image} does not have it",
                                    "fine if the code runs without it"))
        elif elsewhere is not None:
            findings.append(Finding(ERROR, "not-shipped", image, where,
                                    f"imports {site.module!r}, which is first-party code at {elsewhere} but not "
                                    f"importable in {image} (its sys.path: {', '.join(python_path)})",
                                    f"ship its folder (ship = [...] in lamina.toml), or add it to the service's "
                                    "requirements if it is a package of its own"))
        else:
            owner = family.get(site.module)
            hint = (f"add {owner[0]} to the service's requirements, or build it on {owner[1]} which has it"
                    if owner else "add the distribution that provides it to the service's requirements")
            findings.append(Finding(ERROR, "missing-import", image, where,
                                    f"imports {site.module!r}, which no layer of {image} provides", hint))
    for req in declared:
        base_version = base_pins.get(req.name)
        if base_version is None:
            continue
        if not allows(req, base_version):
            findings.append(Finding(ERROR, "conflicting-pin", image, req.where,
                                    f"requires {req.requirement}, but its base {base_name} has {req.name}=={base_version}",
                                    f"use the base's version, or change it in the base's requirements and rebuild {base_name}"))
        else:
            findings.append(Finding(WARNING, "duplicate-requirement", image, req.where,
                                    f"{req.name} is already in its base {base_name} ({req.name}=={base_version})",
                                    "remove it from the service's requirements: the base provides it"))
    imported = {s.module for s in imports_in(code, skip)}
    for req in declared:
        modules = {m for m, dist in own_dists.items() if dist == req.name}
        if modules and not modules & imported and req.name not in base_pins:
            findings.append(Finding(NOTE, "unused-requirement", image, req.where,
                                    f"{req.name} is declared but the code never imports {', '.join(sorted(modules))}",
                                    "remove it if nothing needs it at run time"))
    return findings


def modules_of_dists(dists: Iterable[LockedDist], store: BlobStore) -> dict[str, str]:
    """module → distribution for ``dists``, read from their wheels (fetched if the store lacks them)."""
    dists = list(dists)
    mapping: dict[str, str] = {}
    missing = []
    for dist in dists:
        record = store.get_key(MODULES_KIND, dist.sha256)
        if record is None:
            missing.append(dist)
        else:
            mapping.update({m: dist.name for m in record["modules"]})
    if missing:
        paths = fetch_wheels(missing, store)
        for dist in missing:
            modules = sorted(wheel_modules(verified_wheel(paths[dist.name], dist)))
            store.put_key(MODULES_KIND, dist.sha256, {"modules": modules})
            mapping.update({m: dist.name for m in modules})
    return mapping


def check_family(images: Sequence[CheckedImage], store: BlobStore) -> list[Finding]:
    """Findings for every service among ``images`` (the family, bases included for context)."""
    family: dict[str, tuple[str, str]] = {}
    for image in images:
        for module, dist in modules_of_dists(image.added, store).items():
            family.setdefault(module, (dist, image.name))
    findings: list[Finding] = []
    for image in images:
        if image.service_code is None:
            continue
        provided = modules_of_dists(image.all_dists, store)
        own = modules_of_dists(image.added, store)
        declared = read_requirements(image.service_requirements) if image.service_requirements else []
        service = image.service
        extra = {} if service is None else dict(
            local=image_modules(service), repo=project_modules(service.root, service.tests), skip=service.tests,
            python_path=service.python_path)
        findings += check_service(image.name, image.service_code, declared, provided=provided,
                                  base_name=image.base_name or "its base", base_pins=image.base_pins,
                                  own_dists=own, family=family, **extra)  # type: ignore[arg-type]
    return findings


@dataclass(frozen=True)
class CheckedImage:
    """What the checks need to know of one built image."""

    name: str
    all_dists: tuple[LockedDist, ...]
    added: tuple[LockedDist, ...]
    base_name: str | None
    base_pins: Mapping[str, str]
    service_code: tuple[Path, ...] | None = None
    service_requirements: Path | None = None
    service: ServiceCode | None = None
