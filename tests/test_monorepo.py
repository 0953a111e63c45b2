"""Real monorepos end to end: for each layout (services/*, src/*, top-level packages, a uv workspace, a
Poetry project) `lamina init` writes a config that needs no hand edits, `lamina build` builds it and
`lamina test` finds every service healthy under podman (HTTP, TCP, gRPC health protocol, workers with
no check); a hashed pip-compile file is installed with exactly its pins and hashes; Debian packages are
left as apt leaves them (ld.so.cache, alternatives). Against the real Debian archive and PyPI."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PODMAN_RUN_FLAGS, container_storage
from conftest import archives_unreachable as reachable
from helpers import lamina
from lamina.python.requirements import read_requirements

pytestmark = [pytest.mark.network, pytest.mark.slow]
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    if (problem := reachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI cannot be reached ({problem})")
    return tmp_path_factory.mktemp("monorepo-store")


@pytest.fixture(scope="module")
def podman() -> Iterator[list[str]]:
    with container_storage("lm-") as tools:
        yield tools["podman"]


def podman_env(podman: list[str]) -> dict[str, str]:
    return {"LAMINA_PODMAN": " ".join(podman),
            "LAMINA_PODMAN_RUN_FLAGS": " ".join([*PODMAN_RUN_FLAGS, "--network", "host"])}


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest / name, ignore=shutil.ignore_patterns("build", "lamina.toml", "lamina.lock"))
    return dest / name


@pytest.mark.parametrize("fixture, healthy", [
    ("monorepo-kinds", {"grpc-echo": "gRPC health check (grpc.health.v1)", "tcp-echo": "tcp connect",
                        "web-flask": "HTTP GET http://127.0.0.1:8731/healthz", "worker": "none"}),
    ("layout-src", {"api": "HTTP GET http://127.0.0.1:8741/healthz", "jobs": "none"}),
    ("layout-toplevel", {"api": "HTTP GET http://127.0.0.1:8742/healthz", "mailer": "none"}),
    ("layout-uv", {"api": "HTTP GET http://127.0.0.1:8743/healthz"}),
    ("layout-poetry", {"layout-poetry": "HTTP GET http://127.0.0.1:8744/healthz"}),
])
def test_init_build_and_test_pass_for_every_service(tmp_path, store, podman, fixture, healthy):
    root = copy_fixture(fixture, tmp_path)
    lamina(root, store, "init")
    result = lamina(root, store, "test", env={**podman_env(podman), "COLUMNS": "400"}, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, check in healthy.items():
        line = next((ln for ln in result.stderr.splitlines() if ln.startswith(f"healthy {name}:")), "")
        assert check in line, result.stderr
    leftover = subprocess.run(podman + ["ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    assert "lamina-test-" not in leftover.stdout


def test_a_hashed_pip_compile_file_is_installed_with_exactly_its_pins_and_hashes(tmp_path, store):
    root = copy_fixture("monorepo-kinds", tmp_path)
    lamina(root, store, "init")
    lamina(root, store, "lock", "grpc-echo")
    lock = tomllib.loads((root / "lamina.lock").read_text())
    dists = _dists(lock, "grpc-echo")
    declared = {r.name: r for r in read_requirements(root / "services/grpc_echo/requirements.txt")}
    own = {d["name"]: d for d in dists if d["name"] != "pip"}
    assert set(own) == set(declared)
    for name, dist in own.items():
        assert dist["version"] == declared[name].pinned and dist["sha256"] in declared[name].hashes


def test_a_hash_the_file_does_not_list_stops_the_build(tmp_path, store):
    root = copy_fixture("monorepo-kinds", tmp_path)
    req = root / "services/grpc_echo/requirements.txt"
    lines = [ln for ln in req.read_text().splitlines() if "cp311-cp311-manylinux" not in ln]
    req.write_text("\n".join(ln for ln in lines if "--hash" not in ln or ln.endswith("\\")) + "\n")
    text = req.read_text().splitlines()
    # keep only the first hash (of some other wheel): the one for this platform is no longer listed
    first = next(i for i, ln in enumerate(text) if "--hash" in ln)
    req.write_text("\n".join(text[:first] + [text[first].rstrip(" \\")]) + "\n")
    lamina(root, store, "init")
    result = lamina(root, store, "lock", "grpc-echo", check=False)
    assert result.returncode != 0
    assert "requirements.txt:7: grpcio" in result.stderr and "is not among the 1 hashes listed" in result.stderr


def _dists(lock: dict, image: str) -> list[dict]:
    """The Python dists the lock records for ``image`` (whatever the platform key)."""
    found: list[dict] = []

    def walk(node: object, inside: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "dists" and inside and isinstance(value, list):
                    found.extend(value)
                else:
                    walk(value, inside or key == image)
        elif isinstance(node, list):
            for item in node:
                walk(item, inside)

    walk(lock, False)
    return found


def test_debian_packages_are_left_as_apt_leaves_them(tmp_path, store, podman):
    (tmp_path / "lamina.toml").write_text('[project]\nversion = "1"\n[images.numpy]\nfrom = "debian:bookworm"\n'
                                          'packages = ["python3", "python3-numpy", "libc-bin"]\n')
    lamina(tmp_path, store, "build")
    probe = ("import ctypes, ctypes.util, os, numpy; ssl = ctypes.util.find_library('ssl'); ctypes.CDLL(ssl); "
             "print(ssl, os.readlink('/usr/lib/x86_64-linux-gnu/libblas.so.3'), numpy.dot([1, 2], [3, 4]))")
    run = subprocess.run(podman + ["run", "--rm", *PODMAN_RUN_FLAGS, f"oci:{tmp_path}/build/oci:numpy:1",
                                   "python3", "-c", probe], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["libssl.so.3", "/etc/alternatives/libblas.so.3-x86_64-linux-gnu", "11"]


def test_a_pure_python_sdist_is_built_into_a_wheel_and_a_native_one_refused(tmp_path, store):
    (tmp_path / "lamina.toml").write_text('[project]\nversion = "1"\n[images.py]\nfrom = "debian:bookworm"\n'
                                          'packages = ["python3"]\npython_packages = ["docopt==0.6.2"]\n')
    lamina(tmp_path, store, "build")
    dist = next(d for d in _dists(tomllib.loads((tmp_path / "lamina.lock").read_text()), "py") if d["name"] == "docopt")
    assert dist["url"].endswith("docopt-0.6.2.tar.gz") and dist["wheel"] == "docopt-0.6.2-py2.py3-none-any.whl"
    assert dist["sdist_sha256"] == "49b3a825280bd66b3aa83585ef59c4a8c82f2c8a522dbe754a8bc8d08c85c491"
    (tmp_path / "lamina.toml").write_text((tmp_path / "lamina.toml").read_text().replace('"docopt==0.6.2"',
                                                                                      '"psycopg2==2.9.10"'))
    result = lamina(tmp_path, store, "lock", check=False)
    assert result.returncode != 0 and "psycopg2==2.9.10 is published only as a source distribution" in result.stderr
    assert "compiled code (psycopg2-2.9.10/psycopg/" in result.stderr and "psycopg2-binary" in result.stderr


def test_lamina_test_removes_its_container_even_when_podman_run_fails(tmp_path, store, podman):
    from lamina.runtime import HealthTest, Podman

    root = copy_fixture("layout-src", tmp_path)
    lamina(root, store, "init")
    lamina(root, store, "build")
    broken = Podman(tuple(podman), (*PODMAN_RUN_FLAGS, "--entrypoint", "/no/such/binary"))
    result = HealthTest(broken, f"oci:{root}/build/oci:jobs:0.1.0", {}).run()
    assert not result.healthy and result.detail.startswith("podman run failed")
    leftover = subprocess.run(podman + ["ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    assert "lamina-test-" not in leftover.stdout
