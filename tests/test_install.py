"""lamina installs on a clean machine: every module imports from what pyproject.toml declares, and the
console script runs. Meant to run in a fresh virtual environment (``.ci/run`` makes one without system
site-packages): there, a dependency imported but not declared is missing and these tests fail."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TEST_MODULES = {p.stem for p in Path(__file__).parent.glob("*.py")}  # conftest, helpers, projects, ...

IMPORT_ALL = """
import importlib, pkgutil, sys
import lamina
failed, names = [], ["lamina"]
def record(name):
    failed.append(f"{name}: {sys.exc_info()[1]!r}")
for info in pkgutil.walk_packages(lamina.__path__, "lamina.", onerror=record):
    names.append(info.name)
    if info.name.endswith(".__main__"):
        continue  # importing it runs the CLI; the console script test runs it
    try:
        importlib.import_module(info.name)
    except Exception as e:
        failed.append(f"{info.name}: {e!r}")
print(len(names), lamina.__file__)
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def clean_env() -> dict[str, str]:
    """The test interpreter's environment without anything that would add the checkout to the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def test_the_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "lamina"
    assert script.is_file(), f"no `lamina` console script next to {sys.executable}: pip install -e '.[test]' first"
    result = subprocess.run([str(script), "--help"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: lamina" in result.stdout and "build" in result.stdout


def test_every_module_imports_in_a_fresh_isolated_interpreter(tmp_path):
    # -I: no PYTHONPATH, no user site-packages, not the current directory: only the installed environment
    result = subprocess.run([sys.executable, "-I", "-c", IMPORT_ALL], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"modules that do not import:\n{result.stdout}\n{result.stderr}"
    count, where = result.stdout.split("\n", 1)[0].split(" ", 1)
    assert int(count) >= 40, result.stdout  # the whole package was walked, not just its top
    assert Path(where).is_relative_to(REPO / "src") or "site-packages" in where, where


def imported_names(folder: Path) -> dict[str, str]:
    """Each top-level name imported anywhere under ``folder`` (absolute imports), with one place it is imported."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        if "fixtures" in path.relative_to(folder).parts:
            continue  # the code of the fixture projects the tests build, not the tests' own imports
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def undeclared(folder: Path, declared: set[str], local: set[str]) -> list[str]:
    distributions = packages_distributions()
    problems = []
    for name, where in sorted(imported_names(folder).items()):
        if name in sys.stdlib_module_names or name in local:
            continue
        dists = {canonicalize_name(d) for d in distributions.get(name, [])}
        if not dists:
            problems.append(f"{where}: `{name}` is imported but no installed distribution provides it")
        elif not dists & declared:
            problems.append(f"{where}: `{name}` (from {', '.join(sorted(dists))}) is imported but not declared")
    return problems


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_every_import_of_the_package_is_a_declared_dependency():
    declared = requirement_names(PYPROJECT["project"]["dependencies"])
    assert {"installer", "packaging", "uv", "httpx"} <= declared
    assert undeclared(REPO / "src", declared, {"lamina", "__future__"}) == []


def test_every_import_of_the_tests_is_declared_for_them():
    project = PYPROJECT["project"]
    declared = requirement_names(project["dependencies"] + project["optional-dependencies"]["test"])
    assert undeclared(REPO / "tests", declared, {"lamina", "__future__", *TEST_MODULES}) == []
