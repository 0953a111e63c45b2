"""`lamina export`: the seed's Dockerfiles, docker-bake.json and build scripts, generated from lamina.toml and
lamina.lock — checked for structure, determinism and staleness, then built with buildah and run with podman."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PODMAN_RUN_FLAGS, container_storage, require_tool
from conftest import archives_unreachable as reachable
from conftest import wait_for
import helpers
from helpers import config_of, run_lamina
from registry_servers import free_port, unique_repo

OUT = "infra/docker"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def copy_example(dest: Path) -> Path:
    return helpers.copy_example(dest, ignore=("infra",))


def lamina(root: Path, *args: str, check: bool = True):
    """The CLI in ``root``, with a store next to it (each test's own)."""
    return helpers.lamina(root, root.parent / "store", *args, check=check)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def load(root: Path):
    from lamina.config import load_config

    return load_config(root / "lamina.toml")


@pytest.fixture
def project(tmp_path) -> Path:
    root = copy_example(tmp_path / "tax-agent")
    lamina(root, "export", "all")
    return root


# -- what is written --------------------------------------------------------------------------------


def test_export_writes_one_dockerfile_per_image_scripts_bake_ignore_and_readme(project):
    config = load(project)
    written = set(files_of(project / OUT))
    for name in config.images:
        assert f"{name}.Dockerfile" in written and f"{name}.Dockerfile.dockerignore" in written
    assert {"docker-bake.json", ".dockerignore", "README.md", "build-base-images.sh",
            "build-and-push-images.sh"} <= written
    lock = tomllib.loads((project / "lamina.lock").read_text())["images"]
    with_dists = {n for n, s in lock.items() if s["linux/amd64"].get("python", {}).get("dists")}
    assert {p.removeprefix("requirements/").removesuffix(".txt") for p in written if p.startswith("requirements/")} == with_dists
    for script in ("build-base-images.sh", "build-and-push-images.sh"):
        assert (project / OUT / script).stat().st_mode & 0o111
        subprocess.run(["sh", "-n", str(project / OUT / script)], check=True)  # parses as POSIX sh
    readme = (project / OUT / "README.md").read_text()
    assert "lamina export" in readme and "lamina.toml" in readme and "buildah" in readme and "docker buildx bake" in readme


def test_debian_base_dockerfile_pins_the_lock_and_adds_python3_venv(project):
    text = (project / OUT / "python.Dockerfile").read_text()
    lock = tomllib.loads((project / "lamina.lock").read_text())["images"]["python"]["linux/amd64"]["debian"]
    versions = {p["name"]: p["version"] for p in lock["packages"]}
    assert "FROM debian:bookworm-slim" in text
    assert "apt-get install -y --no-install-recommends" in text and "rm -rf /var/lib/apt/lists/*" in text
    pinned = dict(re.findall(r"^\s+([a-z0-9.+-]+)=(\S+) \\$", text, re.M))
    for name in ("python3", "ca-certificates", "tzdata", "libstdc++6", "netbase"):
        assert pinned[name] == versions[name]
    # what the Dockerfile route needs for `python3 -m venv` (lamina makes its venv by hand): same source as python3
    assert pinned["python3-venv"] == versions["python3"] and "python3-venv" not in versions
    assert "useradd --uid 1000" in text and text.rstrip().splitlines()[-3] == "USER app"
    assert "ENV PATH=" in text and "LANG=C.UTF-8" in text and "PYTHON_VERSION=3.11.2" in text


def test_python_images_install_exactly_the_locked_dists_with_hashes(project):
    lock = tomllib.loads((project / "lamina.lock").read_text())["images"]
    for name in ("base-runtime", "base-ml", "svc-forms"):
        req = (project / OUT / "requirements" / f"{name}.txt").read_text()
        pattern = r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:([0-9a-f]{64})$"
        found = {n: (v, h) for n, v, h in re.findall(pattern, req, re.M)}
        assert found == {d["name"]: (d["version"], d["sha256"]) for d in lock[name]["linux/amd64"]["python"]["dists"]}
    runtime = (project / OUT / "base-runtime.Dockerfile").read_text()
    assert "ARG BASE_IMAGE=${REGISTRY}/${OWNER}/python:${BASE_VERSION}" in runtime and "FROM ${BASE_IMAGE}" in runtime
    assert "python3 -m venv --without-pip /opt/venv" in runtime and "ENV PATH=/opt/venv/bin:$PATH" in runtime
    assert "VIRTUAL_ENV=/opt/venv" in runtime
    assert "/opt/venv/bin/python \"$1/pip\" install --no-cache-dir --require-hashes --no-deps" in runtime
    forms = (project / OUT / "svc-forms.Dockerfile").read_text()
    assert "COPY infra/docker/requirements/svc-forms.txt /tmp/lamina-requirements.txt" in forms
    assert "RUN pip install --no-cache-dir --require-hashes --no-deps" in forms
    assert "COPY infra/docker/requirements/base-runtime.txt /tmp/lamina-requirements.txt" in runtime


def test_ml_service_follows_the_seed_pattern(project):
    text = (project / OUT / "svc-retriever.Dockerfile").read_text()
    config = load(project)
    for arg in (f"ARG REGISTRY={config.registry}", f"ARG OWNER={config.owner}", f"ARG BASE_VERSION={config.base_version}"):
        assert arg in text
    steps = [line.split()[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    order = ["FROM", "USER", "WORKDIR", "COPY", "RUN", "COPY", "COPY", "USER", "EXPOSE", "HEALTHCHECK", "LABEL", "CMD"]
    assert [s for s in steps if s in set(order)] == order
    assert "ARG BASE_IMAGE=${REGISTRY}/${OWNER}/base-ml:${BASE_VERSION}" in text
    assert "USER root" in text and "WORKDIR /app" in text
    assert "COPY --chown=1000:1000 libs/ ./libs/" in text
    assert "COPY --chown=1000:1000 apps/svc_retriever/ ./apps/svc_retriever/" in text
    assert "USER 1000:1000" in text and "EXPOSE 8000" in text
    assert 'CMD ["python", "-m", "uvicorn", "apps.svc_retriever.main:app", "--host", "0.0.0.0", "--port", "8000"]' in text
    assert "HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3" in text
    assert 'org.opencontainers.image.title="svc-retriever"' in text
    # a non-ML service is on base-runtime (the seed's "future improvement", as lamina.toml says)
    assert "ARG BASE_IMAGE=${REGISTRY}/${OWNER}/base-runtime:${BASE_VERSION}" in (project / OUT / "svc-forms.Dockerfile").read_text()
    ignore = (project / OUT / "svc-retriever.Dockerfile.dockerignore").read_text()
    assert "**/__pycache__" in ignore and "**/requirements*.txt" in ignore and "build/oci" in ignore


def test_bake_names_every_image_with_its_base_as_a_context(project):
    config = load(project)
    bake = json.loads((project / OUT / "docker-bake.json").read_text())
    variables = {k: v["default"] for k, v in bake["variable"].items()}
    assert variables == {"REGISTRY": config.registry, "OWNER": config.owner, "BASE_VERSION": config.base_version,
                         "VERSION": config.version}

    def expand(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], text)

    targets = bake["target"]
    assert set(targets) == set(config.images)
    order = bake["group"]["default"]["targets"]
    assert set(order) == set(config.images) and bake["group"]["all"]["targets"] == order
    for name, spec in config.images.items():
        target = targets[name]
        assert (project / target["dockerfile"]).is_file() and target["context"] == "."
        assert [expand(t) for t in target["tags"]] == [str(config.target(spec))]
        ref = str(config.target(spec)).rsplit(":", 1)[0]
        assert [expand(c) for c in target["cache-from"]] == [f"type=registry,ref={ref}:buildcache"]
        assert [expand(c) for c in target["cache-to"]] == [f"type=registry,ref={ref}:buildcache,mode=max"]
        if spec.base in config.images:
            assert target["contexts"] == {spec.base: f"target:{spec.base}"}
            assert target["args"]["BASE_IMAGE"] == spec.base  # FROM ${BASE_IMAGE} → the named context
            assert order.index(spec.base) < order.index(name)
        else:
            assert "contexts" not in target
        assert {"REGISTRY", "OWNER", "BASE_VERSION"} <= set(target["args"])
    assert targets["svc-retriever"]["contexts"] == {"base-ml": "target:base-ml"}
    assert targets["svc-forms"]["contexts"] == {"base-runtime": "target:base-runtime"}
    assert set(bake["group"]["services"]["targets"]) == {n for n, s in config.images.items() if s.service}


# -- same bytes, --check ----------------------------------------------------------------------------


def test_export_is_deterministic(project, tmp_path):
    first = files_of(project / OUT)
    other = copy_example(tmp_path / "elsewhere" / "tax-agent")  # another checkout path, same config and lock
    lamina(other, "export", "all")
    lamina(project, "export", "all")
    assert files_of(project / OUT) == first == files_of(other / OUT)
    lamina(project, "export", "dockerfiles", "--out", "build-files")
    moved = files_of(project / "build-files")
    assert moved["requirements/base-runtime.txt"] == first["requirements/base-runtime.txt"]
    assert b"COPY build-files/requirements/base-runtime.txt " in moved["base-runtime.Dockerfile"]
    assert b'cd "$(dirname "$0")/.."' in moved["build-base-images.sh"]


def test_check_passes_when_fresh_and_names_stale_files(project):
    ok = lamina(project, "export", "all", "--check")
    assert "up to date" in ok.stderr
    assert lamina(project, "export", "bake", "--check").returncode == 0
    dockerfile = project / OUT / "svc-forms.Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("EXPOSE 8000", "EXPOSE 9000"))
    (project / OUT / "requirements" / "base-ml.txt").unlink()
    orphan = project / OUT / "svc-gone.Dockerfile"
    orphan.write_text("# syntax=docker/dockerfile:1\n# Generated by lamina from lamina.toml and lamina.lock\nFROM scratch\n")
    mine = project / OUT / "notes.Dockerfile"  # not lamina's: never reported nor removed
    mine.write_text("FROM scratch\n")
    result = lamina(project, "export", "dockerfiles", "--check", check=False)
    assert result.returncode == 1
    assert "svc-forms.Dockerfile: differs" in result.stderr
    assert "requirements/base-ml.txt: missing" in result.stderr
    assert "svc-gone.Dockerfile: no longer generated" in result.stderr
    assert "notes.Dockerfile" not in result.stderr
    assert lamina(project, "export", "bake", "--check").returncode == 0  # bake's files are still fresh
    lamina(project, "export", "dockerfiles")
    assert not orphan.exists() and mine.exists()
    assert lamina(project, "export", "all", "--check").returncode == 0
    # a change to lamina.toml makes the files stale
    toml = project / "lamina.toml"
    toml.write_text(toml.read_text().replace('port = 8000', 'port = 8080'))
    result = lamina(project, "export", "all", "--check", check=False)
    assert result.returncode == 1 and "svc-forms.Dockerfile: differs" in result.stderr


def test_export_needs_the_lock_and_says_how_to_get_it(tmp_path):
    root = copy_example(tmp_path / "tax-agent")
    lock = root / "lamina.lock"
    text = lock.read_text()
    start, end = text.index('[images.svc-forms."linux/amd64".python]'), text.index('[images.svc-ingestion."linux/amd64".python]')
    lock.write_text(text[:start] + text[end:])
    result = lamina(root, "export", "dockerfiles", check=False)
    assert result.returncode == 5  # LockStaleError
    assert "svc-forms" in result.stderr and "missing from lamina.lock" in result.stderr
    assert "lamina lock" in result.stderr and "--lock" in result.stderr
    assert not (root / OUT).exists()
    outside = lamina(root, "export", "bake", "--out", str(tmp_path / "elsewhere"), check=False)
    assert outside.returncode == 2 and "outside the project" in outside.stderr  # a ConfigError


# -- built with buildah, run with podman ------------------------------------------------------------


@pytest.fixture(scope="module")
def containers() -> Iterator[dict[str, list[str]]]:
    """buildah and podman sharing one short-lived storage, and the build flags that work on these machines."""
    require_tool("buildah")
    require_tool("slirp4netns")
    if not CA_BUNDLE.is_file():
        pytest.skip(f"{CA_BUNDLE} is missing: pip inside the builds could not verify PyPI")
    if (problem := reachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI cannot be reached ({problem}): buildah build skipped")
    with container_storage("lx-") as tools, tempfile.TemporaryDirectory() as tmp:
        pip_conf = Path(tmp) / "pip.conf"  # only the CA (the host's pip config adds a local wheel folder: not wanted)
        pip_conf.write_text(f"[global]\ncert = {CA_BUNDLE}\n")
        tools["build_flags"] = ["--layers", "--isolation", "chroot", "--network", "host", "--tls-verify=false",
                                "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]
        yield tools


def podman_json(podman: list[str], image: str, *command: str) -> object:
    result = subprocess.run(podman + ["run", "--rm", *PODMAN_RUN_FLAGS,
                                      "--network", "host", "--entrypoint", command[0], image, *command[1:]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def canonical(dists: object) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", d["name"]).lower(): d["version"] for d in dists}  # type: ignore[union-attr]


@pytest.mark.network
@pytest.mark.registry
@pytest.mark.runtime
def test_exported_files_build_with_buildah_and_match_lamina(tmp_path, registry, containers):
    """Docker Hub is not reachable here, so the Debian `python` base comes from lamina (pushed to a loopback
    registry); base-runtime and svc-forms are then built from the exported files by the exported scripts."""
    root = copy_example(tmp_path / "tax-agent")
    toml = root / "lamina.toml"
    # The Dockerfile route runs `python3 -m venv` and RUN steps: Debian's python3-venv, and a /bin/sh (dash)
    # that lamina's shell-less base lacks. debian:bookworm-slim has dash; the export adds python3-venv itself.
    toml.write_text(toml.read_text().replace('packages = ["python3", ', 'packages = ["python3", "python3-venv", "dash", ', 1))
    owner = unique_repo("export")
    lamina(root, "build", "python", "--push", "--registry", registry.host, "--owner", owner)  # re-locks the python base
    lamina(root, "build", "--locked", "svc-forms")  # lamina's own image, for the comparison
    lamina(root, "export", "dockerfiles", "--registry", registry.host, "--owner", owner)
    out = root / OUT
    assert "python3-venv=" in (out / "python.Dockerfile").read_text()
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "NO_PROXY": "127.0.0.1,localhost",
           "DOCKER": " ".join(containers["buildah"]), "BUILD_FLAGS": " ".join(containers["build_flags"]),
           "PUSH_FLAGS": "--tls-verify=false"}
    started = time.monotonic()
    for script, images in (("build-base-images.sh", "base-runtime"), ("build-and-push-images.sh", "svc-forms")):
        run = subprocess.run([str(out / script)], env={**env, "IMAGES": images}, capture_output=True, text=True,
                             timeout=900)
        assert run.returncode == 0, f"{script}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    print(f"buildah built base-runtime and svc-forms from the export in {time.monotonic() - started:.1f}s")
    built = f"{registry.host}/{owner}/svc-forms:1.0.0"
    ours = f"oci:{root / 'build' / 'oci'}:svc-forms:1.0.0"
    podman = containers["podman"]

    # the same Python distributions at the same versions, and a consistent environment
    pip_list = ("/opt/venv/bin/python", "-m", "pip", "list", "--format", "json")
    from_export, from_lamina = canonical(podman_json(podman, built, *pip_list)), canonical(podman_json(podman, ours, *pip_list))
    assert from_export == from_lamina and {"fastapi", "jinja2", "markupsafe", "pip", "uvicorn"} <= set(from_export)
    check = subprocess.run(podman + ["run", "--rm", *PODMAN_RUN_FLAGS,
                                     "--entrypoint", "/opt/venv/bin/python", built, "-m", "pip", "check"],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr

    # the same runtime settings as lamina's image
    inspect = json.loads(subprocess.run(containers["buildah"] + ["inspect", "--type", "image", built], capture_output=True,
                                        text=True, check=True).stdout)["Docker"]["config"]  # built --format docker
    lamina_run = config_of(root / "build" / "oci", "svc-forms:1.0.0")["config"]
    for key in ("User", "WorkingDir", "Cmd", "ExposedPorts"):
        assert inspect[key] == lamina_run[key], key
    assert inspect["Healthcheck"]["Test"] == lamina_run["Healthcheck"]["Test"]
    for var in ("VIRTUAL_ENV=/opt/venv", "PYTHONPATH=/app", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert var in inspect["Env"] and var in lamina_run["Env"]
    assert inspect["Labels"]["org.opencontainers.image.version"] == "1.0.0"

    # and it serves: GET /healthz → 200, as the non-root user (its own CMD, on port 8000 inside its own network
    # namespace: another test may hold the host's port 8000)
    name = f"x-{owner}"
    port = free_port()
    run = subprocess.run(podman + ["run", "-d", "--name", name, *PODMAN_RUN_FLAGS, "--network", "slirp4netns",
                                   "-p", f"127.0.0.1:{port}:8000", built],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    try:
        status, body = wait_for(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["service"] == "svc-forms" and health["uid"] == 1000
    finally:
        logs = subprocess.run(podman + ["logs", name], capture_output=True, text=True).stderr
        subprocess.run(podman + ["rm", "-f", name], capture_output=True, timeout=120)
        print(logs[-2000:])


def test_the_examples_committed_export_is_fresh():
    """examples/tax-agent/infra/docker is committed: `lamina export all --check` is what CI runs on it."""
    example = Path(__file__).resolve().parents[1] / "examples" / "tax-agent"
    result = run_lamina("export", "all", "--check", cwd=example, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
