"""Python packaging pieces on their own: requirement files, layer grouping, installing a wheel, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ConfigError
from lamina.oci.model import Platform
from lamina.python.check import ERROR, NOTE, WARNING, check_service, imports_in, wheel_modules
from lamina.python.install import install_wheel
from lamina.python.layers import BUCKETS, group_dists
from lamina.python.requirements import read_requirements
from lamina.python.resolve import LockedDist, parse_pylock
from lamina.python.target import PythonTarget
from lamina.python.venv import venv_entries
from helpers import write_wheel

TARGET = PythonTarget("3.11.2", "/usr/bin/python3.11", Platform())


def dist(name: str, version: str = "1.0", size: int = 1000) -> LockedDist:
    return LockedDist(name, version, f"https://files.example/{name}-{version}-py3-none-any.whl", "0" * 64, size)


def test_requirements_keep_file_and_line_and_follow_includes(tmp_path):
    (tmp_path / "base.txt").write_text("# core\nfastapi==0.115.6\n\nuvicorn>=0.30  # server\n")
    (tmp_path / "svc.txt").write_text("-r base.txt\n--extra-index-url https://example\nnumpy\n")
    found = [(r.name, r.file.name, r.line) for r in read_requirements(tmp_path / "svc.txt")]
    assert found == [("fastapi", "base.txt", 2), ("uvicorn", "base.txt", 4), ("numpy", "svc.txt", 3)]


def test_bad_requirement_names_file_and_line(tmp_path):
    (tmp_path / "r.txt").write_text("fastapi\nnot a requirement!\n")
    with pytest.raises(ConfigError, match="r.txt:2: not a valid requirement"):
        read_requirements(tmp_path / "r.txt")


def test_grouping_is_stable_when_packages_come_and_go():
    small = [dist(f"pkg{i}") for i in range(30)]
    big = [dist("torch", size=200_000_000), dist("numpy", size=20_000_000)]
    groups = group_dists(small + big)
    assert len(groups) <= BUCKETS + 2
    assert [["numpy"], ["torch"]] == [[d.name for d in g] for g in groups[-2:]]
    bumped = [d if d.name != "pkg3" else dist("pkg3", "2.0") for d in small] + big
    changed = [a != b for a, b in zip(groups, group_dists(bumped))]
    assert sum(changed) == 1  # only pkg3's bucket
    without = group_dists([d for d in small if d.name != "pkg7"] + big)
    assert sum(1 for g in without if g not in groups) == 1  # only pkg7's bucket changed


def test_pylock_wheels_become_locked_dists():
    text = """
lock-version = "1.0"
[[packages]]
name = "Typing_Extensions"
version = "4.12.2"
wheels = [{ url = "https://files.example/typing_extensions-4.12.2-py3-none-any.whl", size = 37438, hashes = { sha256 = "ab" } }]
"""
    (only,) = parse_pylock(text, "test")
    assert (only.name, only.version, only.size, only.filename) == (
        "typing-extensions", "4.12.2", 37438, "typing_extensions-4.12.2-py3-none-any.whl")


def make_wheel(tmp_path: Path) -> Path:
    return write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "VALUE = 1\n",
        "demo_cli.py": "def main():\n    print('hi')\n",
        "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo = demo_cli:main\n",
    })


def test_wheel_installs_into_the_venv_with_image_shebangs_and_record(tmp_path):
    staging = tmp_path / "stage"
    install_wheel(make_wheel(tmp_path), "demo", TARGET, staging, compile_bytecode=TARGET.host_can_compile)
    site = staging / "opt/venv/lib/python3.11/site-packages"
    assert (site / "demo/__init__.py").read_text() == "VALUE = 1\n"
    script = (staging / "opt/venv/bin/demo").read_text()
    assert script.startswith("#!/opt/venv/bin/python\n")
    record = (site / "demo-1.0.dist-info/RECORD").read_text()
    assert "../../../bin/demo," in record and "demo-1.0.dist-info/INSTALLER," in record
    if TARGET.host_can_compile:
        assert "demo/__pycache__/__init__.cpython-311.pyc," in record


def test_bytecode_is_the_same_whatever_the_file_times(tmp_path):
    if not TARGET.host_can_compile:
        pytest.skip("the host Python is not 3.11")
    outputs = []
    for n in range(2):
        staging = tmp_path / f"s{n}"
        install_wheel(make_wheel(tmp_path), "demo", TARGET, staging, compile_bytecode=True)
        outputs.append((staging / "opt/venv/lib/python3.11/site-packages/demo/__pycache__/__init__.cpython-311.pyc").read_bytes())
    assert outputs[0] == outputs[1]


def test_venv_is_made_by_hand():
    entries = {e.path: e for e in venv_entries(TARGET)}
    cfg = entries["opt/venv/pyvenv.cfg"].data.decode()
    assert "home = /usr/bin\n" in cfg and "version = 3.11.2\n" in cfg
    assert entries["opt/venv/bin/python"].target == "/usr/bin/python3.11"


def test_wheel_modules_come_from_its_file_list(tmp_path):
    assert wheel_modules(make_wheel(tmp_path)) == {"demo", "demo_cli"}


def test_check_reports_missing_duplicate_conflicting_and_unused(tmp_path):
    code = tmp_path / "apps" / "svc"
    code.mkdir(parents=True)
    (code / "main.py").write_text("import os\nimport fastapi\nfrom sklearn import svm\nfrom apps.svc import x\n")
    (code / "requirements.txt").write_text("fastapi>=0.100\nnumpy==1.0\nrequests\n")
    declared = read_requirements(code / "requirements.txt")
    findings = check_service(
        "svc", [tmp_path / "apps"], declared,
        provided={"fastapi": "fastapi", "numpy": "numpy", "requests": "requests"},
        base_name="base-runtime:1", base_pins={"fastapi": "0.115.6", "numpy": "2.2.1"},
        own_dists={"requests": "requests"}, family={"sklearn": ("scikit-learn", "base-ml")},
    )
    by_code = {f.code: f for f in findings}
    missing = by_code["missing-import"]
    assert missing.level == ERROR and missing.where.endswith("main.py:3") and "scikit-learn" in missing.hint
    assert by_code["duplicate-requirement"].level == WARNING and by_code["duplicate-requirement"].where.endswith(":1")
    conflict = by_code["conflicting-pin"]
    assert conflict.level == ERROR and conflict.where.endswith(":2") and "numpy==2.2.1" in conflict.message
    assert by_code["unused-requirement"].level == NOTE and by_code["unused-requirement"].where.endswith(":3")
    assert len(findings) == 4


def test_imports_ignore_relative_and_find_nested(tmp_path):
    (tmp_path / "m.py").write_text("from . import x\ndef f():\n    import yaml.loader\n")
    assert [(s.module, s.line) for s in imports_in([tmp_path])] == [("yaml", 3)]


def test_a_local_wheel_weighs_what_its_file_does(tmp_path):
    """uv lists no size for find-links wheels: the file gives it, so layers do not depend on the index."""
    wheel = make_wheel(tmp_path)
    text = f"""
lock-version = "1.0"
[[packages]]
name = "demo"
version = "1.0"
wheels = [{{ url = "{wheel.as_uri()}", hashes = {{ sha256 = "ab" }} }}]
"""
    (only,) = parse_pylock(text, "test", TARGET)
    assert only.size == wheel.stat().st_size
