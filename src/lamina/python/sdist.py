"""Pure-Python source distributions built into wheels, once, cached in the store by the sdist's hash.

A package published only as an sdist (``docopt``) is resolved with ``--no-binary NAME``; its sdist is
downloaded (verified against the index's sha256), checked for compiled code (C/C++/Cython/Rust/Fortran
sources or ``ext_modules``: those are refused, since a wheel built on this host would be for this host's
CPU and Python, not the image's), then built in isolation with ``uv build --wheel`` (the build backend
comes from the index, ``SOURCE_DATE_EPOCH`` fixed). The wheel must be ``py*-none-any``. The store keeps
the wheel as a blob and a record sdist sha256 → wheel, so a later build reuses it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.utils import parse_wheel_filename

from lamina.errors import LaminaError
from lamina.oci.http import download_blob, make_client
from lamina.oci.store import BlobStore
from lamina.python.resolve import Indexes, LockedDist, uv_binary

RECORD_KIND = "sdist-wheel"
NATIVE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".pyx", ".pxd", ".rs", ".f", ".f90", ".go", ".m", ".cu")
#: 1980-01-01, the earliest time a zip can hold: wheels built twice come out the same.
SOURCE_DATE_EPOCH = "315532800"


class NativeSdistError(LaminaError):
    """An sdist with compiled code: lamina does not compile for the image's platform."""


def build_wheel(sdist: LockedDist, store: BlobStore, indexes: Indexes, *, where: str) -> LockedDist:
    """The wheel built from ``sdist`` (its url and sha256 are the sdist's): a LockedDist whose sha256
    and size are the wheel's, ``sdist_sha256`` the source's, its url still the sdist's."""
    record = store.get_key(RECORD_KIND, sdist.sha256)
    if record is not None and store.has("sha256:" + record["sha256"]):
        return _dist(sdist, record)
    digest = "sha256:" + sdist.sha256
    if not store.has(digest):
        if urlparse(sdist.url).scheme == "file":
            with open(unquote(urlparse(sdist.url).path), "rb") as src, store.writing(digest) as blob:
                shutil.copyfileobj(src, blob)
        else:
            with make_client() as client:
                download_blob(client, sdist.url, store, digest, size=sdist.size, what=sdist.filename)
    data = store.read_bytes(digest)
    native = native_sources(data, sdist.filename)
    if native:
        raise NativeSdistError(
            f"{where}: {sdist.pin} is published only as a source distribution, and it has compiled code "
            f"({', '.join(native[:3])}); lamina does not compile code for the image's platform",
            hint="pick a release with a wheel for this platform and Python, or a -binary variant (psycopg2-binary), "
                 "or build the wheel yourself and add its folder to [python] find_links")
    record = _build(sdist, data, indexes, where)
    wheel_path = Path(record.pop("path"))
    with open(wheel_path, "rb") as src, store.writing("sha256:" + record["sha256"]) as blob:
        shutil.copyfileobj(src, blob)
    shutil.rmtree(wheel_path.parent.parent, ignore_errors=True)
    store.put_key(RECORD_KIND, sdist.sha256, record)
    return _dist(sdist, record)


def _dist(sdist: LockedDist, record: dict) -> LockedDist:
    return LockedDist(sdist.name, sdist.version, sdist.url, record["sha256"], record["size"],
                      sdist_sha256=sdist.sha256, wheel_name=record["filename"])


def native_sources(data: bytes, filename: str) -> list[str]:
    """Files of an sdist that mean compiled code (empty: pure Python)."""
    names: list[str] = []
    setup_py = b""
    if filename.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            setup_py = next((zf.read(n) for n in names if n.count("/") == 1 and n.endswith("/setup.py")), b"")
    else:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for member in tar:
                names.append(member.name)
                if member.name.count("/") == 1 and member.name.endswith("/setup.py") and member.isfile():
                    setup_py = tar.extractfile(member).read()  # type: ignore[union-attr]
    native = [n for n in names if n.lower().endswith(NATIVE_SUFFIXES) or n.endswith("/Cargo.toml")]
    if b"ext_modules" in setup_py or b"Extension(" in setup_py:
        native.append("setup.py (ext_modules)")
    return native


def _build(sdist: LockedDist, data: bytes, indexes: Indexes, where: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="lamina-sdist-"))
    source = tmp / sdist.filename
    source.write_bytes(data)
    out = tmp / "dist"
    env = {**os.environ, "UV_NO_CONFIG": "1", "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONHASHSEED": "0"}
    cmd = [uv_binary(), "build", "--wheel", "--quiet", "--native-tls", "--out-dir", str(out), str(source),
           *indexes.uv_args()]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
    wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
    if result.returncode != 0 or len(wheels) != 1:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LaminaError(f"{where}: building a wheel from {sdist.filename} failed:\n{result.stderr.strip()[-2000:]}",
                          hint="pick a release with wheels, or build the wheel yourself and add it to [python] find_links")
    wheel = wheels[0]
    tags = parse_wheel_filename(wheel.name)[3]
    if any(t.abi != "none" or t.platform != "any" for t in tags):
        shutil.rmtree(tmp, ignore_errors=True)
        raise NativeSdistError(f"{where}: {sdist.pin} built into {wheel.name}, a wheel for this host only",
                               hint="pick a release with a wheel for the image's platform")
    content = wheel.read_bytes()
    return {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "filename": wheel.name,
            "path": str(wheel)}
