"""The seed's image family end to end (examples/tax-agent): Debian Python base → base-runtime → base-ml
→ services, against the real Debian archive, PyPI, a loopback registry and podman."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PODMAN_RUN_FLAGS, container_storage
from conftest import archives_unreachable as reachable
from conftest import wait_for
import helpers
from helpers import build_json, config_of, copy_example, lamina, manifest_of, run_lamina
from registry_servers import unique_repo

pytestmark = [pytest.mark.network, pytest.mark.registry]

SERVICES = ["svc-classifier", "svc-forms", "svc-ingestion", "svc-retriever"]
ML_SERVICES = ["svc-classifier", "svc-retriever"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    if (problem := reachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI cannot be reached ({problem}): family tests skipped")
    return tmp_path_factory.mktemp("family-store")


def digests(summary: dict) -> dict[str, str]:
    return {i["name"]: i["digest"] for i in summary["images"]}


def layout(root: Path) -> Path:
    return root / "build" / "oci"


def manifest(root: Path, ref: str) -> dict:
    return manifest_of(layout(root), ref)[1]


def layer_digests(root: Path, ref: str) -> list[str]:
    return helpers.layer_digests(layout(root), ref)


@pytest.fixture(scope="module")
def family(tmp_path_factory, store) -> Path:
    root = copy_example(tmp_path_factory.mktemp("family") / "tax-agent")
    build_json(root, store, "--locked")
    return root


def test_base_ml_shares_every_base_runtime_layer_and_services_add_only_theirs(family):
    runtime = layer_digests(family, "base-runtime:v1.0.1")
    ml = layer_digests(family, "base-ml:v1.0.1")
    python = layer_digests(family, "python:v1.0.1")
    assert runtime[: len(python)] == python
    assert ml[: len(runtime)] == runtime and len(ml) > len(runtime)
    for service in ML_SERVICES:
        layers = layer_digests(family, f"{service}:1.0.0")
        assert layers[: len(ml)] == ml
        assert 1 <= len(layers) - len(ml) <= 3  # its own requirements (if any), libs/, its folder
    libs = {layer_digests(family, f"{s}:1.0.0")[-2] for s in SERVICES}
    assert len(libs) == 1  # libs/ is one layer, shared by every service


def test_images_carry_the_seed_runtime_settings(family):
    config = config_of(layout(family), "svc-forms:1.0.0")
    run = config["config"]
    assert run["User"] == "1000:1000" and run["WorkingDir"] == "/app"
    assert run["Cmd"][:4] == ["python", "-m", "uvicorn", "apps.svc_forms.main:app"]
    assert run["ExposedPorts"] == {"8000/tcp": {}}
    assert "Healthcheck" in run and "VIRTUAL_ENV=/opt/venv" in run["Env"]
    annotations = manifest(family, "svc-forms:1.0.0")["annotations"]
    assert annotations["org.opencontainers.image.base.name"] == "127.0.0.1:5000/harkon/base-runtime:v1.0.1"


@pytest.fixture(scope="module")
def podman() -> Iterator[list[str]]:
    with container_storage("lf-") as tools:
        yield tools["podman"]


def port_free(port: int, seconds: float = 15) -> bool:
    """Wait until nothing listens on ``port`` (a container of an earlier test may still be stopping)."""
    import socket

    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)


def test_family_pushes_and_every_service_answers_healthz_as_non_root(family, store, registry, podman):
    owner = unique_repo("harkon")
    summary = json.loads(lamina(family, store, "build", "--locked", "--push", "--registry", registry.host,
                                "--owner", owner, "--json").stdout)
    pushed = {p["target"].split("/")[-1]: p for p in summary["pushed"]}
    assert set(pushed) >= {f"{s}:1.0.0" for s in SERVICES} | {"base-ml:v1.0.1", "base-runtime:v1.0.1"}
    # services mount the bases' layers, never upload them again: of a service's blobs, only its own layers
    # (those above base-ml's) and its config may be uploaded
    retriever = pushed["svc-retriever:1.0.0"]
    base_layers = layer_digests(family, "base-ml:v1.0.1")
    assert set(base_layers) <= set(retriever["blobs"])
    assert {retriever["blobs"][d] for d in base_layers} <= {"mounted", "exists"}
    own = set(layer_digests(family, "svc-retriever:1.0.0")) - set(base_layers)
    own.add(manifest(family, "svc-retriever:1.0.0")["config"]["digest"])
    assert {d for d, o in retriever["blobs"].items() if o == "uploaded"} <= own
    assert retriever["bytes_uploaded"] < 2_000_000
    for service in SERVICES:
        name = f"t-{service}"
        image = f"{registry.host}/{owner}/{service}:1.0.0"
        assert port_free(8000), "something else listens on 127.0.0.1:8000; the services need that port"
        run = subprocess.run(podman + ["run", "-d", "--name", name, "--tls-verify=false", *PODMAN_RUN_FLAGS,
                                       "--network", "host", image],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        try:
            status, body = wait_for("http://127.0.0.1:8000/healthz")
            assert status == 200
            health = json.loads(body)
            assert health["service"] == service and health["uid"] == 1000
            check = subprocess.run(podman + ["exec", name, "python", "-m", "pip", "check"], capture_output=True,
                                   text=True, timeout=60)
            assert check.returncode == 0 and "No broken requirements" in check.stdout, check.stdout + check.stderr
        finally:
            subprocess.run(podman + ["rm", "-f", "-t", "1", name], capture_output=True, timeout=60)
            time.sleep(0.5)


def test_lamina_test_waits_for_the_health_checks(family, store, podman):
    env_podman = " ".join(podman)
    result = run_lamina("test", "svc-forms", cwd=family, check=False, env={
        "LAMINA_STORE": str(store), "LAMINA_PODMAN": env_podman,
        "LAMINA_PODMAN_RUN_FLAGS": " ".join([*PODMAN_RUN_FLAGS, "--network", "host"])})
    assert result.returncode == 0, result.stderr
    assert "healthy svc-forms:1.0.0" in result.stderr


def test_one_app_file_changes_exactly_one_layer_and_pushes_only_it(tmp_path, store, registry):
    root = copy_example(tmp_path / "tax-agent")
    owner = unique_repo("harkon")
    push = ("--push", "--registry", registry.host, "--owner", owner, "--output", "oci:build/oci")
    build_json(root, store, "--locked", *push)
    before = {s: layer_digests(root, f"{s}:1.0.0") for s in SERVICES}
    main = root / "apps" / "svc_forms" / "main.py"
    main.write_text(main.read_text().replace("Form {{ number }}", "Tax form {{ number }}"))
    mark = registry.mark()
    summary = build_json(root, store, "--locked", *push)
    after = {s: layer_digests(root, f"{s}:1.0.0") for s in SERVICES}
    changed = [(s, i) for s in SERVICES for i, (a, b) in enumerate(zip(before[s], after[s])) if a != b]
    assert changed == [("svc-forms", len(before["svc-forms"]) - 1)]
    forms = next(p for p in summary["pushed"] if "/svc-forms:" in p["target"])
    assert sorted(d for d, o in forms["blobs"].items() if o == "uploaded") == sorted(
        [after["svc-forms"][-1], manifest(root, "svc-forms:1.0.0")["config"]["digest"]])
    uploads = registry.count(mark, "POST", r"^/v2/(?!.*/lamina-cache/).*/blobs/uploads/$")
    # the changed layer and the new config, and svc-forms' two SBOMs (its digest changed): nothing else in the
    # whole family (the other images' SBOMs are attached already, byte for byte)
    assert uploads == 2 + 2
    assert registry.count(mark, "POST", r"/lamina-cache/blobs/uploads/$") == 1  # and the layer cache's new index


def test_bumping_one_ml_library_changes_only_its_layer(tmp_path, store):
    root = copy_example(tmp_path / "tax-agent")
    lamina(root, store, "lock", "base-ml")  # today's resolution, so only the bump differs below
    build_json(root, store)
    before = {i: layer_digests(root, i) for i in ("base-ml:v1.0.1", "svc-classifier:1.0.0")}
    requirements = root / "libs" / "requirements-ml.txt"
    requirements.write_text(requirements.read_text().replace("scikit-learn==1.6.0", "scikit-learn==1.6.1"))
    build_json(root, store)
    lock = (root / "lamina.lock").read_text()
    assert 'name = "scikit-learn", version = "1.6.1"' in lock
    for ref, old in before.items():
        new = layer_digests(root, ref)
        assert len(new) == len(old)
        assert sum(1 for a, b in zip(old, new) if a != b) == 1, ref


def test_two_clones_at_different_paths_build_identical_digests(family, tmp_path, store):
    other = copy_example(tmp_path / "somewhere" / "else" / "tax-agent")
    assert digests(build_json(other, store, "--locked")) == digests(build_json(family, store, "--locked"))


def test_check_names_file_and_line_of_each_mistake(tmp_path, store):
    root = copy_example(tmp_path / "tax-agent")
    forms = root / "apps" / "svc_forms" / "main.py"
    original = forms.read_text()
    forms.write_text(original + "\nimport sklearn\n")
    sklearn_line = len(original.splitlines()) + 2
    (root / "apps" / "svc_ingestion" / "requirements.txt").write_text("pyyaml==6.0.2\nhttpx==0.28.1\n")
    (root / "apps" / "svc_retriever" / "requirements.txt").write_text("rank-bm25==0.2.2\nnumpy==1.26.4\n")
    result = lamina(root, store, "check", "--json", check=False)
    assert result.returncode == 3  # check findings
    findings = {(f["code"], f["image"]): f for f in json.loads(result.stdout)}
    missing = findings[("missing-import", "svc-forms")]
    assert missing["where"].endswith(f"apps/svc_forms/main.py:{sklearn_line}") and "scikit-learn" in missing["hint"]
    duplicate = findings[("duplicate-requirement", "svc-ingestion")]
    assert duplicate["where"].endswith("apps/svc_ingestion/requirements.txt:2") and "httpx==0.28.1" in duplicate["message"]
    conflict = findings[("conflicting-pin", "svc-retriever")]
    assert conflict["where"].endswith("apps/svc_retriever/requirements.txt:2")
    assert "numpy==2.2.1" in conflict["message"] and "libs/requirements-ml.txt:2" in conflict["message"]
    build = lamina(root, store, "build", check=False)
    assert build.returncode == 3 and "lamina check found" in build.stderr


def test_init_writes_a_config_that_builds_the_same_images(family, tmp_path, store):
    root = copy_example(tmp_path / "tax-agent")
    (root / "lamina.toml").unlink()
    lamina(root, store, "init", "--registry", "127.0.0.1:5000", "--owner", "harkon", "--version", "1.0.0",
           "--base-version", "v1.0.1")
    assert digests(build_json(root, store, "--locked")) == digests(build_json(family, store, "--locked"))
