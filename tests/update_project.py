"""A small offline family for the update tests: the seed's shape (python → base-runtime → base-ml, two
services on each base) on a static busybox, its Python packages from a local find-links folder of wheels
made here (a pure-Python library in two or three versions), so nothing but the filesystem is needed."""

from __future__ import annotations

import base64
import ensurepip
import shutil
import hashlib
import zipfile
from pathlib import Path

from projects import static_busybox

PROJECT = """\
# The update tests' family: comments and layout must survive `lamina update`.
[project]
registry = "{registry}"   # where --push sends images
owner = "{owner}"
version = "1.0.0"        # the services' tag
base_version = "v1.0.1"  # BASE_VERSION: the bases' tag

[python]
find_links = ["wheels"]
no_index = true

# The "OS and Python": busybox, and the Python the wheels are installed for.
[images.python]
from = "scratch"
env = {{ PYTHON_VERSION = "{python}" }}
[[images.python.copy]]
src = "rootfs"
dest = "/"

[images.base-runtime]
from = "python"
requirements = ["libs/requirements-base.txt"]

[images.base-ml]
from = "base-runtime"
requirements = ["libs/requirements-ml.txt"]

[services]
glob = "apps/svc_*"
base = "base-runtime"
ship = ["libs"]
command = ["python", "-m", "app"]

[services.svc_classifier]
base = "base-ml"

[services.svc_retriever]
base = "base-ml"
"""

SERVICES = ["svc-classifier", "svc-forms", "svc-ingestion", "svc-retriever"]
ML_SERVICES = ["svc-classifier", "svc-retriever"]


def make_wheel(folder: Path, name: str, version: str, *, code: str | None = None) -> Path:
    """A pure-Python wheel of ``name`` ``version`` (one module), written as the wheel spec says."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": (code or f'__version__ = "{version}"\n').encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: lamina-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    return wheel


def make_update_project(root: Path, *, registry: str = "127.0.0.1:5000", owner: str = "harkon",
                        python: str = "3.11.2", ml_requirement: str = "mllib>=1.0,<2",
                        base_requirement: str = "corelib==1.0") -> Path:
    """The project at ``root`` (wheels: corelib 1.0, mllib 1.0 only); returns lamina.toml's path."""
    (root / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    busybox = root / "rootfs" / "bin" / "busybox"
    busybox.write_bytes(static_busybox().read_bytes())
    busybox.chmod(0o755)
    (root / "rootfs" / "bin" / "sh").symlink_to("busybox")
    bundled = Path(ensurepip.__file__).parent / "_bundled"  # pip: lamina puts it in every venv it makes
    (root / "wheels").mkdir()
    for wheel in bundled.glob("pip-*.whl"):
        shutil.copy(wheel, root / "wheels" / wheel.name)
    make_wheel(root / "wheels", "corelib", "1.0")
    make_wheel(root / "wheels", "mllib", "1.0")
    libs = root / "libs"
    libs.mkdir()
    (libs / "__init__.py").write_text("")
    (libs / "requirements-base.txt").write_text(f"{base_requirement}\n")
    (libs / "requirements-ml.txt").write_text(f"# ML dependencies: in base-ml only\n{ml_requirement}\n")
    for service in SERVICES:
        folder = root / "apps" / service.replace("-", "_")
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(f'print("{service}")\n')
    path = root / "lamina.toml"
    path.write_text(PROJECT.format(registry=registry, owner=owner, python=python))
    return path
