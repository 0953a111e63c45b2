"""Helpers shared by the tests: run the real CLI, copy the example project, read an OCI layout or a store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tax-agent"
REF_NAME = "org.opencontainers.image.ref.name"
LOOPBACK = "127.0.0.1,localhost"


# -- the CLI ---------------------------------------------------------------------------------------------


def run_lamina(*args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None):
    """Run the real CLI in a subprocess (as a user would)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "lamina", *args], cwd=cwd, env=full_env, capture_output=True, text=True, input=stdin
    )
    if check and result.returncode != 0:
        raise AssertionError(f"lamina {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def lamina(root: Path, store: Path, *args: str, check: bool = True, env: dict[str, str] | None = None):
    """``lamina ARGS`` in the project ``root`` with the blob store ``store``; loopback registries bypass any proxy."""
    return run_lamina(*args, cwd=root, env={"LAMINA_STORE": str(store), "NO_PROXY": LOOPBACK, **(env or {})},
                      check=check)


def build_json(root: Path, store: Path, *args: str) -> dict:
    """``lamina build --json ARGS``: its summary."""
    return json.loads(lamina(root, store, "build", "--json", *args).stdout)


def copy_example(dest: Path, *, ignore: tuple[str, ...] = ()) -> Path:
    """A copy of examples/tax-agent at ``dest``, without what a build or export writes."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "__pycache__", *ignore))
    return dest


# -- OCI layouts and stores ------------------------------------------------------------------------------


def blob(root: Path, digest: str) -> bytes:
    """A blob of an OCI layout or of a lamina store (both keep them under blobs/sha256/)."""
    return (root / "blobs" / "sha256" / digest.split(":")[-1]).read_bytes()


def layout_index(layout: Path) -> dict:
    return json.loads((layout / "index.json").read_bytes())


def layout_images(layout: Path) -> list[dict]:
    """The layout's image entries (not the SBOMs and attestations that refer to them: those have an
    ``artifactType`` and no ref name)."""
    return [m for m in layout_index(layout)["manifests"] if "artifactType" not in m]


def ref_digests(layout: Path) -> dict[str, str]:
    """Each ref name of the layout's index and its manifest digest."""
    return {m["annotations"][REF_NAME]: m["digest"] for m in layout_images(layout)}


def manifest_of(layout: Path, ref_name: str) -> tuple[str, dict]:
    """The digest and the manifest tagged ``ref_name`` in the layout."""
    for entry in layout_images(layout):
        if entry["annotations"][REF_NAME] == ref_name:
            return entry["digest"], json.loads(blob(layout, entry["digest"]))
    raise AssertionError(f"{ref_name} not in the layout {layout}")


def config_of(layout: Path, ref_name: str) -> dict:
    """The image config of ``ref_name`` in the layout."""
    return json.loads(blob(layout, manifest_of(layout, ref_name)[1]["config"]["digest"]))


def layer_digests(layout: Path, ref_name: str) -> list[str]:
    return [layer["digest"] for layer in manifest_of(layout, ref_name)[1]["layers"]]


# -- wheels ----------------------------------------------------------------------------------------------


def record_line(name: str, data: bytes) -> str:
    """A RECORD row: ``name,sha256=<urlsafe b64>,size``."""
    import base64
    import hashlib

    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def wheel_metadata(name: str, version: str = "1.0") -> dict[str, bytes]:
    """The METADATA and WHEEL members :func:`write_wheel` adds."""
    info_dir = f"{name}-{version}.dist-info"
    return {f"{info_dir}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
            f"{info_dir}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}


def record_with(rows: str, name: str, version: str = "1.0") -> str:
    """A RECORD for :func:`write_wheel`: its METADATA and WHEEL rows, ``rows`` (whole lines), RECORD's own."""
    meta = "".join(record_line(member, data) for member, data in wheel_metadata(name, version).items())
    return f"{meta}{rows}{name}-{version}.dist-info/RECORD,,\n"


def write_wheel(path: Path, files: dict[str, str | bytes], *, name: str = "demo", version: str = "1.0",
                record: str | None = None, modes: dict[str, int] | None = None) -> Path:
    """A wheel at ``path`` holding ``files`` plus METADATA, WHEEL and a RECORD that matches them (unless
    ``record`` gives RECORD's text); ``modes`` sets a member's Unix mode (file type bits included)."""
    import zipfile

    info_dir = f"{name}-{version}.dist-info"
    members = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    for member, data in wheel_metadata(name, version).items():
        members.setdefault(member, data)
    text = record if record is not None else (
        "".join(record_line(k, v) for k, v in members.items()) + f"{info_dir}/RECORD,,\n")
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in [*members.items(), (f"{info_dir}/RECORD", text.encode())]:
            info = zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = ((modes or {}).get(member, 0o100644)) << 16
            zf.writestr(info, data)
    return path


WHEELS_PROJECT = """\
[project]
version = "1"
[python]
find_links = ["wheels"]
no_index = true
[images.pybase]
from = "scratch"
env = {{ PYTHON_VERSION = "3.11.2", VIRTUAL_ENV = "/opt/venv" }}
symlinks = {{ "/usr/local/bin/python3.11" = "/bin/true" }}
[images.app]
from = "pybase"
python_packages = ["{name}==1.0"]
"""


def wheels_project(root: Path, name: str, *, app: str = "") -> Path:
    """A project at ``root`` whose image ``app`` installs ``name==1.0`` from the wheels in ``root/wheels``
    (find_links, no index) on a scratch image posing as Python 3.11; ``app`` is more TOML for lamina.toml's
    end (the app's copies). Returns ``root``; the wheels are the caller's."""
    (root / "wheels").mkdir(parents=True, exist_ok=True)
    (root / "lamina.toml").write_text(WHEELS_PROJECT.format(name=name) + app)
    return root


def assert_one_line_error(result, *needles: str) -> None:
    """The run failed with exactly one ``error:`` line (plus its hint), no traceback, naming ``needles``."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0] or needle in result.stderr, result.stderr
