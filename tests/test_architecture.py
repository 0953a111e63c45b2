"""The shape of the code: data flows one way, and the OCI core knows nothing of Python or Debian.

Read from the source (module-level imports, ``if TYPE_CHECKING:`` blocks left out), so a new import
that breaks a rule fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Modules imported at import time (top level, not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the package
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1])
                    name = f"{base}.{node.module}" if node.module else base
                else:
                    name = node.module or ""
                found.add(name)
                found.update(f"{name}.{a.name}" for a in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])

    visit(tree.body)
    return found


def _all_imports(tree: ast.Module) -> set[str]:
    """Every ``lamina`` module named anywhere in the file (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return {n for n in names if n == "lamina" or n.startswith("lamina.")}


MODULES = {module_name(p): p for p in (SRC / "lamina").rglob("*.py")}


def graph(*, runtime: bool) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        names = _runtime_imports(tree, name, path.name == "__init__.py") if runtime else _all_imports(tree)
        out[name] = {n for n in names if n in MODULES and n != name}
    return out


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("package, allowed", [
    ("lamina.oci", ("lamina.oci", "lamina.errors")),
])
def test_the_oci_core_imports_nothing_outside_itself(package, allowed):
    bad = [f"{m} imports {d}" for m, deps in graph(runtime=False).items() if _within(m, package)
           for d in sorted(deps) if not any(_within(d, a) for a in allowed)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ["lamina.python", "lamina.debian"])
def test_package_sources_import_neither_the_family_nor_the_cli_nor_each_other(package):
    other = "lamina.debian" if package == "lamina.python" else "lamina.python"
    forbidden = ("lamina.build", "lamina.family", "lamina.cli", other)
    bad = [f"{m} imports {d}" for m, deps in graph(runtime=False).items() if _within(m, package)
           for d in sorted(deps) if any(_within(d, f) for f in forbidden)]
    assert not bad, "\n".join(bad)


def test_config_imports_no_package_source():
    bad = [f"{m} imports {d}" for m, deps in graph(runtime=False).items() if _within(m, "lamina.config")
           for d in sorted(deps) if _within(d, "lamina.python") or _within(d, "lamina.debian")]
    assert not bad, "\n".join(bad)


def test_the_library_does_not_import_the_cli():
    bad = [f"{m} imports {d}" for m, deps in graph(runtime=False).items() if not _within(m, "lamina.cli")
           and m != "lamina.__main__" for d in sorted(deps) if _within(d, "lamina.cli")]
    assert not bad, "\n".join(bad)


def test_module_level_imports_have_no_cycle():
    edges = graph(runtime=True)
    # a package's __init__ importing its own submodules is how packages re-export; not a cycle of concerns
    edges = {m: {d for d in deps if not (_within(d, m) and MODULES[m].name == "__init__.py")} for m, deps in edges.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(" → ".join([*stack[stack.index(dep):], dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)
