"""Images lamina writes run under real runtimes and are read by real tools."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PODMAN_RUN_FLAGS, container_storage, require_tool
from helpers import ref_digests, run_lamina
from projects import make_hello_project

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runtime") / "project"
    root.mkdir()
    make_hello_project(root)
    env = {"LAMINA_STORE": str(root.parent / "store")}
    run_lamina("build", "busybox", cwd=root, env=env)
    run_lamina("build", "hello", cwd=root, env=env)
    run_lamina("build", "busybox", "hello", "--output", "docker-archive:images.tar", cwd=root, env=env)
    return root


@pytest.fixture
def podman() -> Iterator[list[str]]:
    with container_storage("lp-") as tools:
        yield tools["podman"]


def podman_run(podman: list[str], image: str) -> subprocess.CompletedProcess:
    cmd = podman + [
        "run", "--rm", *PODMAN_RUN_FLAGS, "--network", "host", image,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_umoci_unpack_and_runc_run_print_what_the_script_prints(built, tmp_path):
    require_tool("umoci")
    require_tool("runc")
    if os.geteuid() != 0:
        pytest.skip("runc run of an unpacked bundle needs root here")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{built}/build/oci:hello:1.0", str(bundle)], check=True,
                   capture_output=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"lamina-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(["runc", "run", name], cwd=bundle, capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "delete", "--force", name], capture_output=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from lamina as 1000"


def test_podman_loads_the_docker_archive_and_runs_it(built, podman):
    load = subprocess.run(podman + ["load", "-i", str(built / "images.tar")], capture_output=True, text=True,
                          timeout=120)
    assert load.returncode == 0, load.stderr
    assert "hello:1.0" in load.stdout
    result = podman_run(podman, "localhost/hello:1.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from lamina as 1000"


def test_podman_runs_the_oci_layout_directly(built, podman):
    result = podman_run(podman, f"oci:{built}/build/oci:hello:1.0")
    assert result.returncode == 0, result.stderr
    assert "hello from lamina as 1000" in result.stdout


def test_skopeo_inspects_the_layout_with_our_digest(built):
    require_tool("skopeo")
    ours = ref_digests(built / "build" / "oci")
    out = subprocess.run(["skopeo", "inspect", f"oci:{built}/build/oci:hello:1.0"], capture_output=True, text=True,
                         check=True).stdout
    info = json.loads(out)
    assert info["Digest"] == ours["hello:1.0"]
    assert info["Env"] == ["GREETING=lamina"]


def test_skopeo_copy_preserving_digests_keeps_our_manifest(built, tmp_path):
    require_tool("skopeo")
    dest = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", f"oci:{built}/build/oci:hello:1.0",
                    f"oci:{dest}:copied"], check=True, capture_output=True)
    theirs = json.loads((dest / "index.json").read_text())["manifests"][0]["digest"]
    assert theirs == ref_digests(built / "build" / "oci")["hello:1.0"]
