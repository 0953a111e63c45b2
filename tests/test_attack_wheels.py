"""Hostile wheels: refused before anything of them is installed, nothing written outside the image tree.

Each wheel is built here (zipfile + RECORD) and served from a local find-links folder with ``no_index``; the
build runs as a user runs it (the CLI in a subprocess). After each refusal the test lists the host path the
wheel aimed at and every layer in the store: neither holds the payload.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from helpers import (assert_one_line_error, record_line, record_with, run_lamina, wheel_metadata, wheels_project,
                     write_wheel)
from lamina.errors import UnsafePathError
from lamina.python.safety import check_wheel

pytestmark = pytest.mark.attack

PAYLOAD = b"lamina-attack-payload\n"


def build(root: Path, *args: str):
    return run_lamina("build", "app", "-o", f"oci:{root / 'out'}", "--no-check", *args, cwd=root,
                      env={"LAMINA_STORE": str(root / "store")}, check=False)


def layer_members(store: Path) -> set[str]:
    """Every member name of every gzip layer in the store."""
    names: set[str] = set()
    for blob in (store / "blobs" / "sha256").iterdir():
        head = blob.read_bytes()[:2]
        if head != b"\x1f\x8b":
            continue
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
            names.update(m.name for m in tar.getmembers())
    return names


def hostile(root: Path, target: Path) -> dict[str, tuple[dict, dict, str | None, tuple[str, ...]]]:
    """name → (files, modes, record override, what the error must name)."""
    up = "../" * (len(target.parts) + 3)
    rel = str(target).lstrip("/")
    good_record = "".join(record_line(n, d) for n, d in {"evil/__init__.py": b""}.items())
    return {
        "traversal": ({"evil/__init__.py": "", f"{up}{rel}": PAYLOAD}, {}, None, ("leaves the image tree",)),
        "absolute": ({"evil/__init__.py": "", str(target): PAYLOAD}, {}, None, ("is an absolute path",)),
        "data-escape": ({"evil/__init__.py": "", f"evil-1.0.data/data/{up}{rel}": PAYLOAD}, {}, None,
                        ("leaves the image tree",)),
        "unknown-scheme": ({"evil/__init__.py": "", "evil-1.0.data/root/etc/passwd": PAYLOAD}, {}, None,
                           ("unknown .data scheme",)),
        "symlink": ({"evil/__init__.py": "", "evil/shadow": b"/etc/shadow"}, {"evil/shadow": 0o120777}, None,
                    ("'evil/shadow' is a symlink",)),
        "setuid": ({"evil/__init__.py": "", "evil/tool": b"#!/bin/sh\n"}, {"evil/tool": 0o104755}, None,
                   ("setuid",)),
        "device": ({"evil/__init__.py": "", "evil/null": b""}, {"evil/null": 0o020666}, None,
                   ("character device",)),
        "bad-record-hash": ({"evil/__init__.py": "", "evil/code.py": PAYLOAD}, {},
                            good_record + "evil/code.py,sha256=AAAA,22\nevil-1.0.dist-info/RECORD,,\n",
                            ("does not match its RECORD hash",)),
        "not-in-record": ({"evil/__init__.py": "", "evil/extra.py": PAYLOAD}, {},
                          good_record + "evil-1.0.dist-info/RECORD,,\n", ("not listed in RECORD",)),
        "record-size": ({"evil/__init__.py": "", "evil/code.py": PAYLOAD}, {},
                        good_record + record_line("evil/code.py", PAYLOAD).replace(",22\n", ",999\n")
                        + "evil-1.0.dist-info/RECORD,,\n", ("RECORD says 999",)),
    }


CASES = list(hostile(Path("/x"), Path("/x")))


def _fill_record(files: dict, record: str | None) -> str | None:
    if record is None:
        return None
    return "".join(record_line(n, d) for n, d in wheel_metadata("evil").items()) + record


@pytest.mark.parametrize("case", CASES)
def test_a_hostile_wheel_is_refused_by_the_build_and_nothing_lands_outside(case, tmp_path):
    root = wheels_project(tmp_path / "proj", "evil")
    aimed = tmp_path / "host" / "PWNED"  # where the wheel tries to write, on the host
    files, modes, record, needles = hostile(root, aimed)[case]
    write_wheel(root / "wheels" / "evil-1.0-py3-none-any.whl", files, name="evil",
                record=_fill_record(files, record), modes=modes)
    result = build(root)
    assert_one_line_error(result, "evil-1.0-py3-none-any.whl", *needles)
    assert not aimed.exists() and not aimed.parent.exists()
    assert not list(tmp_path.rglob("PWNED"))
    members = layer_members(root / "store")
    assert not any("evil" in m or "PWNED" in m for m in members), sorted(members)
    assert not (root / "out").exists()


def test_unit_check_refuses_each_case_without_writing(tmp_path):
    """The same cases against :func:`check_wheel` alone: each raises UnsafePathError."""
    aimed = tmp_path / "PWNED"
    for case, (files, modes, record, needles) in hostile(tmp_path, aimed).items():
        wheel = write_wheel(tmp_path / f"{case}.whl", files, name="evil", record=_fill_record(files, record),
                            modes=modes)
        with pytest.raises(UnsafePathError) as raised:
            check_wheel(wheel, wheel.name)
        assert all(n in str(raised.value) for n in needles), (case, str(raised.value))
    assert not aimed.exists()


def test_a_clean_wheel_builds_and_its_files_are_in_the_layer(tmp_path):
    root = wheels_project(tmp_path / "proj", "fine")
    write_wheel(root / "wheels" / "fine-1.0-py3-none-any.whl", {"fine/__init__.py": "X = 1\n"}, name="fine")
    result = build(root)
    assert result.returncode == 0, result.stderr
    assert "opt/venv/lib/python3.11/site-packages/fine/__init__.py" in layer_members(root / "store")


def _wheel_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_wheel_replaced_in_find_links_after_locking_is_refused(tmp_path):
    root = wheels_project(tmp_path / "proj", "fine")
    wheel = write_wheel(root / "wheels" / "fine-1.0-py3-none-any.whl", {"fine/__init__.py": "X = 1\n"}, name="fine")
    assert run_lamina("lock", cwd=root, env={"LAMINA_STORE": str(root / "store")}, check=False).returncode == 0
    write_wheel(wheel, {"fine/__init__.py": "import os; os.system('id')\n"}, name="fine")  # hash ≠ lock
    result = build(root)
    assert_one_line_error(result, "does not match the sha256 in the lock")
    assert not any("fine" in m for m in layer_members(root / "store"))


def test_a_wheel_swapped_in_the_store_is_refused_before_it_is_installed(tmp_path):
    root = wheels_project(tmp_path / "proj", "fine")
    wheel = write_wheel(root / "wheels" / "fine-1.0-py3-none-any.whl", {"fine/__init__.py": "X = 1\n"}, name="fine")
    assert build(root).returncode == 0
    store = root / "store"
    stored = store / "blobs" / "sha256" / _wheel_sha(wheel)
    assert stored.is_file()
    evil = write_wheel(tmp_path / "swap.whl", {"fine/__init__.py": "import os; os.system('id')\n"}, name="fine")
    os.chmod(stored, 0o644)
    shutil.copy(evil, stored)  # poisoned at the locked sha256's path
    shutil.rmtree(store / "keys")  # and the layer no longer cached: it must be made again from the wheel
    shutil.rmtree(root / "out")
    result = build(root)
    assert_one_line_error(result, "fine-1.0-py3-none-any.whl", "corrupt or was swapped")
    assert not (root / "out").exists()


def test_the_installer_release_and_the_layer_format_are_part_of_the_layer_keys(tmp_path, monkeypatch):
    from lamina.oci import layer
    from lamina.python import layers
    from lamina.python.resolve import LockedDist
    from lamina.python.target import PythonTarget
    from lamina.oci.model import Platform

    target = PythonTarget("3.11.2", "/usr/local/bin/python3.11", Platform())
    dist = LockedDist("demo", "1.0", "https://x/demo-1.0-py3-none-any.whl", "ab" * 32, 10)
    maker = layers.PythonLayers(target, {}, tmp_path)
    before = maker.spec([dist]).key
    monkeypatch.setattr(layers, "installer_version", lambda: "0.7.0")
    assert maker.spec([dist]).key != before
    full = layer._full_key("k", "m+gzip", 1, "gzip")
    monkeypatch.setattr(layer, "LAYER_FORMAT", "lamina-layer-0")
    assert layer._full_key("k", "m+gzip", 1, "gzip") != full
    maker.cleanup()
    assert stat.S_ISDIR(os.stat(tmp_path).st_mode)


def test_a_record_with_hex_hashes_is_accepted_when_the_bytes_match(tmp_path):
    """A few wheels on PyPI (gmsh) write hex instead of base64: the content still has to hash to it."""
    code = b"VALUE = 1\n"
    good = record_with(f"hexy.py,sha256={hashlib.sha256(code).hexdigest()},{len(code)}\n", "hexy")
    wheel = write_wheel(tmp_path / "hexy-1.0-py3-none-any.whl", {"hexy.py": code}, name="hexy", record=good)
    check_wheel(wheel, wheel.name)
    bad = good.replace(hashlib.sha256(code).hexdigest(), hashlib.sha256(b"other").hexdigest())
    wheel = write_wheel(tmp_path / "hexy-1.0-py3-none-any.whl", {"hexy.py": code}, name="hexy", record=bad)
    with pytest.raises(UnsafePathError, match="does not match its RECORD hash"):
        check_wheel(wheel, wheel.name)
