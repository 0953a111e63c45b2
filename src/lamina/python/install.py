"""Installing a wheel into a staging directory laid out as the image's venv, with pypa ``installer``.

Console scripts get ``#!/opt/venv/bin/python``; ``.dist-info/RECORD`` is kept (and lists the
bytecode), so ``pip list``, ``pip check`` and ``importlib.metadata`` work in the image. Bytecode is
compiled by the host only when its Python has the target's minor version, in ``unchecked-hash`` mode,
whose output does not depend on file times (otherwise the image compiles nothing and imports a little
slower the first time).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

from lamina.errors import LaminaError
from lamina.oci.compress import workers
from lamina.oci.files import disk_error
from lamina.oci.tar import Entry, tree_entries
from lamina.python.safety import check_staged, check_wheel
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
    """Install ``wheel`` under ``staging`` as if ``staging`` were the image's root.

    The wheel is checked first (:func:`lamina.python.safety.check_wheel`: member paths and kinds, RECORD
    against the files) and what was staged after: path safety is lamina's own, whatever installer does.
    """
    check_wheel(wheel, wheel.name)
    destination = SchemeDictionaryDestination(
        scheme_dict=_scheme(target, name),
        interpreter=target.venv_python,
        script_kind="posix",
        destdir=str(staging),
        bytecode_optimization_levels=(),
    )
    try:
        with WheelFile.open(wheel) as source, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # installer skips __pycache__ files of bad wheels
            install(source=source, destination=destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
    except OSError as e:
        if (full := disk_error(e, staging)) is not None:
            raise full from None
        raise LaminaError(f"cannot install {wheel.name}: {e}", hint="check the store's tmp folder") from e
    except Exception as e:  # installer raises plain exceptions for bad wheels
        raise LaminaError(f"cannot install {wheel.name}: {e}", hint="the wheel is broken or not for this Python") from e
    check_staged(staging, target.venv, wheel.name)
    if compile_bytecode:
        compile_site_packages(staging, target)


def compile_site_packages(staging: Path, target: PythonTarget) -> None:
    """Compile the ``.py`` files under the staged site-packages (all but libraries' test suites) and
    add the ``.pyc`` files to RECORD.

    Always in a fresh ``python -m compileall``: marshal marks objects by their reference counts, so
    bytecode compiled inside a busy process (lamina's, with its own modules loaded) can differ from the
    same compiled elsewhere. A fresh interpreter gives the same bytes every time. It also keeps the GIL-
    bound compiling out of this process, whose threads are compressing other layers meanwhile.
    """
    root = staging / target.site_packages.lstrip("/")
    sources = sorted(root.rglob("*.py"))
    if not sources:
        return
    jobs = str(workers()) if len(sources) >= PARALLEL_COMPILE else "1"
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "-j", jobs, "--invalidation-mode", "unchecked-hash",
         "-x", SKIP_COMPILE, "-s", str(staging), "-p", "/", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,  # Python 2 files fail, as they would
    )
    compiled = [Path(importlib.util.cache_from_source(str(s))) for s in sources]
    _add_to_record(root, [c for c in compiled if c.exists()])


PARALLEL_COMPILE = 500  # below this many files, the process pool costs more than it saves
#: Libraries' own test suites (numpy/*/tests/..., about half of numpy's, scipy's and scikit-learn's
#: files) are not compiled: a service never imports them, and they would compile on first import.
SKIP_COMPILE = r"/tests?/"


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
