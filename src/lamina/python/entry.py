"""What a service runs, found in its code when lamina.toml does not say: the kind of service and its
command, and the health check that kind calls for.

In order: an app named in lamina.toml (``app = "pkg.main:create_app()"``); an ASGI app object
(``app = FastAPI()``) or factory (``def create_app(): ... return FastAPI()``) → uvicorn; a WSGI app
(``app = Flask(__name__)``, Django's ``get_wsgi_application()``) or factory → gunicorn; a gRPC server
(``grpc.server(...)``) → its ``__main__`` module; a package with ``__main__.py`` or a module with
``if __name__ == "__main__":`` → ``python -m``; a console script of the service's pyproject.toml.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lamina.config import ServiceCode

ASGI_CLASSES = {"FastAPI", "Starlette", "Quart", "Litestar", "Sanic", "get_asgi_application"}
WSGI_CLASSES = {"Flask", "Bottle", "Falcon", "get_wsgi_application", "Pyramid", "make_wsgi_app"}
FACTORY_NAMES = ("create_app", "make_app", "build_app", "get_app", "app_factory")
PREFERRED_FILES = ("main.py", "app.py", "server.py", "api.py", "wsgi.py", "asgi.py", "__init__.py", "__main__.py")


@dataclass(frozen=True)
class ServiceEntry:
    """How a service is started and checked."""

    kind: str  # "asgi" | "wsgi" | "grpc" | "command"
    command: list[str]
    #: The health setting its kind calls for (as ``health`` in lamina.toml would write it).
    health: str
    #: In words, for init and messages: what was found where.
    found: str


def python_files(folder: Path, skip: Sequence[str] = ()) -> Iterator[Path]:
    """The service's Python files, preferred names first, tests and caches left out."""
    files = [p for p in folder.rglob("*.py")
             if not any(part in ("__pycache__", *skip) or part.startswith(".") for part in p.relative_to(folder).parts[:-1])]
    rank = {n: i for i, n in enumerate(PREFERRED_FILES)}
    yield from sorted(files, key=lambda p: (len(p.relative_to(folder).parts), rank.get(p.name, len(rank)), str(p)))


def module_of(file: Path, roots: Sequence[Path]) -> str:
    """The dotted module name of ``file`` from the first import root that holds it."""
    for root in roots:
        if root == file.parent or root in file.parents:
            rel = file.relative_to(root).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            return ".".join(parts)
    raise ValueError(f"{file} is under none of {roots}")


def find_entry(service: ServiceCode) -> ServiceEntry | None:
    """The service's entry point (see the module docstring), or None when nothing fits."""
    roots = [*service.import_roots, service.root]
    port = str(service.port)
    if service.app:
        kind = service.server and ("asgi" if service.server == "uvicorn" else "wsgi") or _kind_of_named_app(service, roots)
        return ServiceEntry(kind, app_command(kind, service.app, port), "/healthz", f"app {service.app} (lamina.toml)")
    files = list(python_files(service.folder, service.tests))
    for file in files:
        tree = _parse(file)
        if tree is None:
            continue
        found = _app_in(tree)
        if found is not None:
            kind, target = found
            app = f"{module_of(file, roots)}:{target}"
            return ServiceEntry(kind, app_command(kind, app, port), "/healthz",
                                f"{'ASGI' if kind == 'asgi' else 'WSGI'} app {app}")
    for file in files:
        tree = _parse(file)
        if tree is not None and _calls_grpc_server(tree):
            runnable = _runnable_module(file, files, roots)
            if runnable:
                return ServiceEntry("grpc", ["python", "-m", runnable], "grpc", f"gRPC server in {runnable}")
    main = next((f for f in files if f.name == "__main__.py"), None)
    if main is not None:
        module = module_of(main.parent / "__init__.py", roots) if (main.parent / "__init__.py").exists() \
            else module_of(main, roots).rsplit(".", 1)[0]
        return ServiceEntry("command", ["python", "-m", module], "none", f"package {module} (__main__.py)")
    for file in files:
        tree = _parse(file)
        if tree is not None and _has_main_block(tree):
            module = module_of(file, roots)
            return ServiceEntry("command", ["python", "-m", module], "none", f"module {module} (__main__ block)")
    if service.pyproject is not None:
        from lamina.python.sources import console_scripts

        scripts = console_scripts(service.pyproject)
        if scripts:
            name, target = sorted(scripts.items())[0]
            module, _, func = target.partition(":")
            code = f"import sys; from {module} import {func.split('.')[0]} as f; sys.exit({func.replace(func.split('.')[0], 'f', 1)}())"
            return ServiceEntry("command", ["python", "-c", code], "none", f"console script {name} ({target})")
    return None


def app_command(kind: str, app: str, port: str) -> list[str]:
    """uvicorn for ASGI, gunicorn for WSGI; a factory is ``module:create_app()``."""
    factory = app.endswith("()")
    if kind == "wsgi":
        return ["python", "-m", "gunicorn", "--bind", f"0.0.0.0:{port}", "--access-logfile", "-", app]
    target = app[:-2] if factory else app
    return ["python", "-m", "uvicorn", *(["--factory"] if factory else []), target, "--host", "0.0.0.0", "--port", port]


def _kind_of_named_app(service: ServiceCode, roots: Sequence[Path]) -> str:
    module, _, _ = service.app.partition(":")  # type: ignore[union-attr]
    for root in roots:
        for file in (root / (module.replace(".", "/") + ".py"), root / module.replace(".", "/") / "__init__.py"):
            if file.is_file() and (tree := _parse(file)) is not None and (found := _app_in(tree)) is not None:
                return found[0]
    return "asgi"


def _parse(file: Path) -> ast.Module | None:
    try:
        return ast.parse(file.read_bytes())
    except (SyntaxError, ValueError):
        return None


def _called(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return None


def _kind(called: str | None) -> str | None:
    return "asgi" if called in ASGI_CLASSES else "wsgi" if called in WSGI_CLASSES else None


def _app_in(tree: ast.Module) -> tuple[str, str] | None:
    """(kind, ``name`` or ``factory()``) of a module-level app or app factory."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            kind = _kind(_called(node.value))
            if kind:
                return kind, node.targets[0].id
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in FACTORY_NAMES and not node.args.args:
            for inner in ast.walk(node):
                kind = _kind(_called(inner))
                if kind:
                    return kind, f"{node.name}()"
    return None


def _calls_grpc_server(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "server":
            value = node.func.value
            name = value.id if isinstance(value, ast.Name) else value.attr if isinstance(value, ast.Attribute) else ""
            if name in ("grpc", "aio"):
                return True
    return False


def _has_main_block(tree: ast.Module) -> bool:
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            consts = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if "__name__" in names and "__main__" in consts:
                return True
    return False


def _runnable_module(file: Path, files: Sequence[Path], roots: Sequence[Path]) -> str | None:
    """The module to ``python -m`` for the code in ``file``: itself with a __main__ block, else its
    package's __main__.py, else any module with a __main__ block."""
    tree = _parse(file)
    if tree is not None and _has_main_block(tree):
        return module_of(file, roots)
    main = file.parent / "__main__.py"
    if main.is_file():
        return module_of(main, roots).rsplit(".", 1)[0]
    for other in files:
        t = _parse(other)
        if t is not None and _has_main_block(t):
            return module_of(other, roots)
    return None
