"""Finding a service's ASGI application in its code (``app = FastAPI(...)``), for its command."""

from __future__ import annotations

import ast
from pathlib import Path

ASGI_FACTORIES = {"FastAPI", "Starlette", "Quart", "Litestar", "Sanic"}
PREFERRED_FILES = ("main.py", "app.py", "server.py", "api.py", "__init__.py")


def find_asgi_app(service_dir: Path, project_root: Path) -> str | None:
    """``apps.svc_x.main:app`` for the first ``NAME = FastAPI(...)``-like assignment, preferring main.py."""
    files = sorted(service_dir.rglob("*.py"), key=lambda p: (p.name not in PREFERRED_FILES,
                                                            PREFERRED_FILES.index(p.name) if p.name in PREFERRED_FILES else 0,
                                                            len(p.parts), str(p)))
    for file in files:
        if "__pycache__" in file.parts:
            continue
        name = _app_variable(file)
        if name is not None:
            module = file.relative_to(project_root).with_suffix("")
            parts = list(module.parts[:-1]) if module.name == "__init__" else list(module.parts)
            return ".".join(parts) + ":" + name
    return None


def _app_variable(file: Path) -> str | None:
    try:
        tree = ast.parse(file.read_bytes())
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            func = node.value.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            target = node.targets[0]
            if called in ASGI_FACTORIES and isinstance(target, ast.Name):
                return target.id
    return None
