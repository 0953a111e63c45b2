"""Installing a wheel into a staging directory laid out as the image's venv, with pypa ``installer``.

Console scripts get ``#!/opt/venv/bin/python``; ``.dist-info/RECORD`` is kept (and lists the
bytecode), so ``pip list``, ``pip check`` and ``importlib.metadata`` work in the image. Bytecode is
compiled by the host only when its Python has the target's minor version, in ``unchecked-hash`` mode,
whose output does not depend on file times (otherwise the image compiles nothing and imports a little
slower the first time).
"""

from __future__ import annotations

import base64
import compileall
import csv
import hashlib
import io
import os
import py_compile
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from lamina.errors import LaminaError
from lamina.oci.tar import Entry, tree_entries
from lamina.python.target import PythonTarget

INSTALLER_NAME = b"lamina\n"


def _scheme(target: PythonTarget, name: str) -> dict[str, str]:
    return {
        "purelib": target.site_packages,
        "platlib": target.site_packages,
        "headers": f"{target.venv}/include/site/python{target.minor}/{name}",
        "scripts": f"{target.venv}/bin",
        "data": target.venv,
    }


def install_wheel(wheel: Path, name: str, target: PythonTarget, staging: Path, *, compile_bytecode: bool) -> None:
    """Install ``wheel`` under ``staging`` as if ``staging`` were the image's root."""
    destination = SchemeDictionaryDestination(
        scheme_dict=_scheme(target, name),
        interpreter=target.venv_python,
        script_kind="posix",
        destdir=str(staging),
        bytecode_optimization_levels=(),
    )
    try:
        with WheelFile.open(wheel) as source:
            install(source=source, destination=destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
    except Exception as e:  # installer raises plain exceptions for bad wheels
        raise LaminaError(f"cannot install {wheel.name}: {e}", hint="the wheel is broken or not for this Python") from e
    if compile_bytecode:
        compile_site_packages(staging, target)


def compile_site_packages(staging: Path, target: PythonTarget) -> None:
    """Compile every ``.py`` under the staged site-packages and add the ``.pyc`` files to RECORD."""
    root = staging / target.site_packages.lstrip("/")
    compiled: list[Path] = []
    for source in sorted(root.rglob("*.py")):
        image_path = "/" + str(source.relative_to(staging))
        cfile = Path(compileall.importlib.util.cache_from_source(str(source)))  # type: ignore[attr-defined]
        try:
            py_compile.compile(str(source), cfile=str(cfile), dfile=image_path, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except py_compile.PyCompileError:
            continue  # e.g. a Python 2 file shipped as data: the interpreter would not compile it either
        compiled.append(cfile)
    _add_to_record(root, compiled)


def _add_to_record(site_packages: Path, files: list[Path]) -> None:
    records = list(site_packages.glob("*.dist-info/RECORD"))
    if len(records) != 1 or not files:
        return
    record = records[0]
    rows = list(csv.reader(io.StringIO(record.read_text())))
    known = {row[0] for row in rows if row}
    for path in files:
        rel = os.path.relpath(path, site_packages)
        if rel in known:
            continue
        data = path.read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append([rel, f"sha256={digest}", str(len(data))])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(sorted(rows, key=lambda r: r[0]))
    record.write_text(out.getvalue())


def staged_entries(staging: Path, *, uid: int = 0, gid: int = 0) -> list[Entry]:
    """Entries of everything staged, with modes kept as installer set them (scripts executable)."""
    entries: list[Entry] = []
    for top in sorted(p for p in staging.iterdir()):
        entries += tree_entries(top, top.name, uid=uid, gid=gid, exclude=())
    return entries
