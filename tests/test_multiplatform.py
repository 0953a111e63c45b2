"""Multi-platform families: linux/amd64 and linux/arm64 in one index, built natively (no emulation).

The example family is built for both platforms from per-platform wheels and per-architecture .deb files;
arm64 binaries then run under Debian's qemu-user-static to prove the image is whole. A binary of the
wrong CPU in a layer fails the build, naming the file and what it came from.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import PODMAN_RUN_FLAGS, archives_unreachable, container_storage, require_tool, wait_for
from helpers import blob, build_json, copy_example, lamina, layout_images
from lamina.oci.elf import elf_architecture
from registry_servers import free_port, unique_repo

PLATFORMS = ("linux/amd64", "linux/arm64")
REF_NAME = "org.opencontainers.image.ref.name"
#: Shared by this module's tests and kept between runs: the arm64 wheels and .debs are downloaded once.
STORE = Path("/tmp/lamina-test-multiplatform-store")


def host_library() -> Path:
    """A shared library of this machine's CPU (x86-64 here)."""
    for candidate in ("/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1"):
        if Path(candidate).exists():
            return Path(candidate).resolve()
    pytest.skip("needs an x86-64 host with zlib")


# -- the ELF check, alone ------------------------------------------------------------------------------


def elf_header(machine: int, e_type: int = 3) -> bytes:
    return b"\x7fELF\x02\x01\x01" + b"\0" * 9 + e_type.to_bytes(2, "little") + machine.to_bytes(2, "little")


def test_elf_headers_name_their_architecture():
    assert elf_architecture(elf_header(62)) == "amd64"
    assert elf_architecture(elf_header(183)) == "arm64"
    assert elf_architecture(elf_header(183, e_type=1)) is None  # a relocatable object (.o) is not run
    assert elf_architecture(b"#!/bin/sh\n" + b"\0" * 20) is None
    assert elf_architecture(host_library().read_bytes()[:20]) == "amd64"


def scratch_project(root: Path, platforms: str) -> Path:
    (root / "lib").mkdir(parents=True)
    shutil.copy(host_library(), root / "lib" / "libhost.so.1")
    (root / "lamina.toml").write_text(f"""
[project]
platforms = {platforms}

[images.native]
from = "scratch"
[[images.native.copy]]
src = "lib"
dest = "/usr/lib/extra"
""")
    return root


def test_a_binary_for_another_cpu_fails_the_build_naming_the_file(tmp_path):
    root = scratch_project(tmp_path / "p", '["linux/arm64"]')
    result = lamina(root, tmp_path / "store", "build", check=False)
    assert result.returncode != 0
    assert "image 'native' for linux/arm64: /usr/lib/extra/libhost.so.1 is a x86-64 binary" in result.stderr
    assert "(from copy lib → /usr/lib/extra)" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "build" / "oci" / "index.json").exists()


def test_the_same_layer_is_checked_for_every_platform_that_uses_it(tmp_path):
    root = scratch_project(tmp_path / "p", '["linux/amd64"]')
    lamina(root, tmp_path / "store", "build")  # amd64: the library belongs there
    toml = root / "lamina.toml"
    toml.write_text(toml.read_text().replace('["linux/amd64"]', '["linux/amd64", "linux/arm64"]'))
    result = lamina(root, tmp_path / "store", "build", check=False)  # the layer is reused, and checked again
    assert result.returncode != 0 and "libhost.so.1 is a x86-64 binary" in result.stderr


# -- the example family for two platforms --------------------------------------------------------------


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> tuple[Path, dict]:
    if reason := archives_unreachable():
        pytest.skip(f"needs the Debian archive and PyPI: {reason}")
    root = copy_example(tmp_path_factory.mktemp("multi") / "tax-agent")
    toml = root / "lamina.toml"
    toml.write_text(toml.read_text().replace("[project]\n", f"[project]\nplatforms = {json.dumps(list(PLATFORMS))}\n", 1))
    summary = build_json(root, STORE)
    return root, summary


def manifests_by_platform(layout: Path, ref_name: str) -> dict[str, dict]:
    entry = next(m for m in layout_images(layout) if m["annotations"][REF_NAME] == ref_name)
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index = json.loads(blob(layout, entry["digest"]))
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": json.loads(blob(layout, m["digest"]))
            for m in index["manifests"]}


@pytest.mark.slow
def test_every_image_is_an_index_of_one_valid_manifest_per_platform(family, oci_schemas):
    root, summary = family
    layout = root / "build" / "oci"
    assert {(i["name"], i["platform"]) for i in summary["images"]} == {
        (name, p) for name in ("python", "base-runtime", "base-ml", "svc-classifier", "svc-forms", "svc-ingestion",
                               "svc-retriever") for p in PLATFORMS}
    oci_schemas.validate("index", (layout / "index.json").read_bytes())
    for entry in layout_images(layout):  # the SBOMs referring to them are checked in tests/test_verify.py
        oci_schemas.validate("index", blob(layout, entry["digest"]))
        for platform, manifest in manifests_by_platform(layout, entry["annotations"][REF_NAME]).items():
            oci_schemas.validate("manifest", manifest)
            config = json.loads(blob(layout, manifest["config"]["digest"]))
            oci_schemas.validate("config", config)
            assert f"{config['os']}/{config['architecture']}" == platform


@pytest.mark.slow
def test_platform_independent_layers_are_built_once_and_shared(family):
    root, _ = family
    layout = root / "build" / "oci"
    forms = manifests_by_platform(layout, "svc-forms:1.0.0")
    amd, arm = ([layer["digest"] for layer in forms[p]["layers"]] for p in PLATFORMS)
    assert amd[-2:] == arm[-2:]  # libs/ and the service's code: the same bytes, the same digests
    shared = set(amd) & set(arm)
    assert len(shared) >= 3 and set(amd) - shared and set(arm) - shared  # and the native ones differ
    classifier = manifests_by_platform(layout, "svc-classifier:1.0.0")
    amd_ml, arm_ml = ({layer["digest"] for layer in classifier[p]["layers"]} for p in PLATFORMS)
    assert amd_ml - arm_ml, "numpy and scikit-learn are native: their layers must differ"


def unpack(layout: Path, manifest: dict, rootfs: Path) -> Path:
    rootfs.mkdir(parents=True)
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(blob(layout, layer["digest"])), mode="r:gz") as tar:
            tar.extractall(rootfs, filter="tar")
    return rootfs


@pytest.mark.slow
def test_the_arm64_images_run_under_emulation(family, tmp_path):
    qemu = require_tool("qemu-aarch64-static", "qemu-user-static")
    root, _ = family
    layout = root / "build" / "oci"
    base = unpack(layout, manifests_by_platform(layout, "python:v1.0.1")["linux/arm64"], tmp_path / "python")
    machine = subprocess.run([qemu, "-L", str(base), str(base / "usr/bin/python3"), "-c",
                              "import platform, ssl, sqlite3; print(platform.machine())"],
                             capture_output=True, text=True, timeout=300)
    assert machine.returncode == 0, machine.stderr
    assert machine.stdout.strip() == "aarch64"
    rootfs = unpack(layout, manifests_by_platform(layout, "svc-classifier:1.0.0")["linux/arm64"], tmp_path / "svc")
    site = rootfs / "opt/venv/lib/python3.11/site-packages"
    imports = subprocess.run(
        [qemu, "-L", str(rootfs), str(rootfs / "usr/bin/python3.11"), "-c",
         "import numpy, sklearn, apps.svc_classifier.main as m; print(numpy.__file__, m.app.title)"],
        capture_output=True, text=True, timeout=600, cwd=rootfs / "app",
        env={"PYTHONPATH": f"{site}:{rootfs / 'app'}", "PATH": "/usr/bin:/bin"},
    )
    assert imports.returncode == 0, imports.stderr[-3000:]
    assert str(site) in imports.stdout
    for so in site.glob("numpy/_core/*.so"):
        assert elf_architecture(so.read_bytes()[:20]) == "arm64"
        break
    else:
        raise AssertionError("numpy has no extension modules in the arm64 image")


def register_binfmt() -> bool:
    """Register qemu-aarch64 with binfmt_misc (root; returns whether this call registered it)."""
    folder = Path("/proc/sys/fs/binfmt_misc")
    if not (folder / "register").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(folder)], capture_output=True)
        if mounted.returncode != 0 or not (folder / "register").exists():
            pytest.skip(f"binfmt_misc cannot be mounted here: {mounted.stderr.decode().strip()}")
    if (folder / "qemu-aarch64").exists():
        return False
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if not conf.exists():
        pytest.skip("qemu-user-static has no binfmt.d entry for aarch64")
    line = next(l for l in conf.read_text().splitlines() if l.startswith(":"))
    try:
        (folder / "register").write_text(line)
    except OSError as e:
        pytest.skip(f"cannot register qemu-aarch64 with binfmt_misc: {e}")
    return True


@pytest.mark.slow
@pytest.mark.runtime
def test_podman_runs_the_arm64_service(family):
    root, _ = family
    layout = root / "build" / "oci"
    registered = register_binfmt()
    port = free_port()
    try:
        with container_storage("lm-") as tools:
            podman = tools["podman"]
            image = f"oci:{layout}:svc-forms:1.0.0"
            run = subprocess.run(podman + ["run", "-d", "--platform", "linux/arm64", "--name", "arm", *PODMAN_RUN_FLAGS,
                                           "--network", "host", image, "python", "-m", "uvicorn",
                                           "apps.svc_forms.main:app", "--host", "127.0.0.1", "--port", str(port)],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            status, body = wait_for(f"http://127.0.0.1:{port}/healthz", seconds=240)
            assert status == 200 and json.loads(body)
            machine = subprocess.run(podman + ["run", "--rm", "--platform", "linux/arm64", *PODMAN_RUN_FLAGS, image,
                                               "python", "-c", "import platform; print(platform.machine())"],
                                     capture_output=True, text=True, timeout=300)
            assert machine.stdout.strip() == "aarch64", machine.stderr
    finally:
        if registered:
            Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").write_text("-1")


@pytest.mark.slow
def test_a_docker_archive_holds_one_platform(family, tmp_path):
    root, _ = family
    both = lamina(root, STORE, "build", "svc-forms", "-o", f"docker-archive:{tmp_path / 'both.tar'}", check=False)
    assert both.returncode != 0 and "linux/amd64, linux/arm64" in both.stderr and "--platform" in both.stderr
    lamina(root, STORE, "build", "svc-forms", "--platform", "linux/arm64", "-o", f"docker-archive:{tmp_path / 'arm.tar'}")
    with tarfile.open(tmp_path / "arm.tar") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert ["svc-forms:1.0.0"] in [m["RepoTags"] for m in manifest]  # with the bases it is built on
        configs = [json.loads(tar.extractfile(m["Config"]).read()) for m in manifest]
    assert {c["architecture"] for c in configs} == {"arm64"}


@pytest.mark.slow
@pytest.mark.registry
def test_adding_a_platform_to_a_pushed_family_uploads_only_its_own_layers(family, registry):
    root, _ = family
    owner = unique_repo("multi")
    flags = ("--push", "--registry", registry.host, "--owner", owner, "--json")
    first = json.loads(lamina(root, STORE, "build", "--platform", "linux/amd64", *flags).stdout)
    amd_layers = {d for report in first["pushed"] for d in report["blobs"]}
    second = json.loads(lamina(root, STORE, "build", *flags).stdout)
    for report in second["pushed"]:
        uploaded = {d for d, outcome in report["blobs"].items() if outcome == "uploaded"}
        assert not uploaded & amd_layers, f"{report['target']} uploaded again what the registry had"
    assert sum(r["bytes_uploaded"] for r in second["pushed"]) > 0
    # the registry now serves an index with both platforms
    skopeo = require_tool("skopeo")
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false",
                          f"docker://{registry.host}/{owner}/svc-forms:1.0.0"], capture_output=True, text=True)
    assert raw.returncode == 0, raw.stderr
    assert {m["platform"]["architecture"] for m in json.loads(raw.stdout)["manifests"]} == {"amd64", "arm64"}


@pytest.mark.slow
def test_a_wheel_with_a_binary_of_another_cpu_is_refused_naming_the_distribution(family, tmp_path):
    root, _ = family
    wheels = root / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "hostlib-1.0-py3-none-any.whl", "w") as whl:
        files = {"hostlib/__init__.py": b"", "hostlib/_native.so": host_library().read_bytes(),
                 "hostlib-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hostlib\nVersion: 1.0\n",
                 "hostlib-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
        import base64
        import hashlib

        record = []
        for name, data in files.items():
            whl.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{name},sha256={digest},{len(data)}")
        record.append("hostlib-1.0.dist-info/RECORD,,")
        whl.writestr("hostlib-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    toml = root / "lamina.toml"
    toml.write_text(toml.read_text() + '\n[python]\nfind_links = ["wheels"]\n')
    reqs = root / "apps" / "svc_forms" / "requirements.txt"
    reqs.write_text(reqs.read_text() + "hostlib==1.0\n")
    result = lamina(root, STORE, "build", "svc-forms", "-o", f"oci:{tmp_path / 'out'}", "--no-check", check=False)
    assert result.returncode != 0, result.stdout
    assert "image 'svc-forms' for linux/arm64" in result.stderr
    assert "hostlib/_native.so is a x86-64 binary" in result.stderr
    assert "python hostlib 1.0 (hostlib-1.0-py3-none-any.whl)" in result.stderr


@pytest.mark.slow
def test_a_distribution_without_a_wheel_for_a_platform_is_an_error_naming_both(family, tmp_path):
    root = shutil.copytree(family[0], tmp_path / "p", ignore=shutil.ignore_patterns("build"))
    reqs = root / "apps" / "svc_forms" / "requirements.txt"
    reqs.write_text(reqs.read_text() + "sparse-dot-topn==1.1.5\n")  # x86-64 wheels only, no aarch64
    result = lamina(root, STORE, "lock", "svc-forms", check=False)
    assert result.returncode != 0
    assert "image 'svc-forms' for linux/arm64" in result.stderr and "sparse-dot-topn" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_base_without_the_requested_platform_is_a_clear_error(tmp_path):
    from projects import make_hello_project

    first = tmp_path / "first"
    make_hello_project(first)
    lamina(first, tmp_path / "store", "build", "busybox")
    second = tmp_path / "second"
    second.mkdir()
    (second / "lamina.toml").write_text(f"""
[images.top]
from = "oci:{first / 'build' / 'oci'}:busybox:1.0"
platforms = ["linux/arm64"]
cmd = ["/bin/true"]
""")
    result = lamina(second, tmp_path / "store", "build", check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "linux/arm64" in result.stderr and "busybox" in result.stderr and "linux/amd64" in result.stderr
