"""Debian images from the real archive (deb.debian.org), run under real runtimes; the trust chain refuses tampering.

The store is shared by the tests of a session and kept under /tmp/lamina-test-debian-cache, so reruns are
warm; `test_a_cold_build_gives_the_same_digest` builds into an empty store to cover the cold path.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import require_tool
from helpers import blob, config_of, lamina, ref_digests

pytestmark = pytest.mark.network

CACHE = Path("/tmp/lamina-test-debian-cache")
ARCHIVE = "https://deb.debian.org/debian"

PROJECT = """\
[project]
version = "1.0"
{project}

[images.pybase]
from = "debian:bookworm"
packages = ["python3", "ca-certificates"]
user = "app"
cmd = ["python3"]

[images.ocr]
from = "pybase"
packages = ["tesseract-ocr", "poppler-utils"]
"""


@functools.cache
def archive_reachable() -> str | None:
    try:
        httpx.head(f"{ARCHIVE}/dists/bookworm/InRelease", timeout=10, follow_redirects=True).raise_for_status()
    except httpx.HTTPError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def shared_store() -> Path:
    if (problem := archive_reachable()) is not None:
        pytest.skip(f"deb.debian.org cannot be reached ({problem}): Debian archive tests skipped")
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE / "store"


def make_project(root: Path, *, project: str = "", body: str = PROJECT) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "lamina.toml").write_text(body.format(project=project))
    return root


def digests(root: Path) -> dict[str, str]:
    return ref_digests(root / "build" / "oci")


@pytest.fixture(scope="session")
def built(shared_store, tmp_path_factory) -> Path:
    root = make_project(tmp_path_factory.mktemp("debian") / "project")
    result = lamina(root, shared_store, "build", "--json")
    (root / "summary.json").write_text(result.stdout)
    return root


def run_in(root: Path, image: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """umoci unpack + runc run, as tests/test_runtime.py does (the image's user, env and workdir)."""
    require_tool("umoci")
    require_tool("runc")
    import os

    if os.geteuid() != 0:
        pytest.skip("runc run of an unpacked bundle needs root here")
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:6]}"
    subprocess.run(["umoci", "unpack", "--image", f"{root}/build/oci:{image}", str(bundle)], check=True,
                   capture_output=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = args
    (bundle / "config.json").write_text(json.dumps(config))
    name = f"lamina-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(["runc", "run", name], cwd=bundle, capture_output=True, text=True, timeout=120)
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True)
        shutil.rmtree(bundle, ignore_errors=True)


PYTHON_CHECK = """
import os, pwd, ssl, sys
ctx = ssl.create_default_context()
print(sys.version.split()[0], os.getuid(), pwd.getpwuid(os.getuid()).pw_name, len(ctx.get_ca_certs()) or ctx.cert_store_stats()['x509_ca'])
print(os.path.getsize('/etc/ssl/certs/ca-certificates.crt'), oct(os.stat('/tmp').st_mode & 0o7777))
"""


@pytest.mark.runtime
def test_the_python_base_runs_python_as_the_app_user(built, tmp_path):
    result = run_in(built, "pybase:1.0", ["python3", "-c", PYTHON_CHECK], tmp_path)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    version, uid, user, cas = first.split()
    assert version.startswith("3.11.") and (uid, user) == ("1000", "app") and int(cas) > 100
    size, tmp_mode = second.split()
    assert int(size) > 100_000 and tmp_mode == "0o1777"


@pytest.mark.runtime
def test_tesseract_and_pdftotext_run_in_the_image_built_on_the_base(built, tmp_path):
    tesseract = run_in(built, "ocr:1.0", ["tesseract", "--version"], tmp_path)
    assert tesseract.returncode == 0, tesseract.stderr
    assert tesseract.stdout.startswith("tesseract 5.")
    pdftotext = run_in(built, "ocr:1.0", ["pdftotext", "-v"], tmp_path)
    assert pdftotext.returncode == 0, pdftotext.stderr
    assert "pdftotext version" in pdftotext.stdout + pdftotext.stderr


def test_image_config_and_lock(built):
    config = config_of(built / "build" / "oci", "pybase:1.0")
    env = dict(e.split("=", 1) for e in config["config"]["Env"])
    assert env["LANG"] == "C.UTF-8" and env["PATH"].startswith("/usr/local/sbin")
    assert re.fullmatch(r"3\.11\.\d+", env["PYTHON_VERSION"])
    assert config["config"]["User"] == "app"
    lock = (built / "lamina.lock").read_text()
    assert '[images.pybase."linux/amd64".debian]' in lock and '[images.ocr."linux/amd64".debian]' in lock
    import tomllib

    data = tomllib.loads(lock)["images"]
    base = {p["name"] for p in data["pybase"]["linux/amd64"]["debian"]["packages"]}
    ocr = {p["name"] for p in data["ocr"]["linux/amd64"]["debian"]["packages"]}
    assert {"python3", "python3.11", "libc6", "ca-certificates", "base-files"} <= base
    assert {"tesseract-ocr", "poppler-utils"} <= ocr and not base & ocr  # the base's packages are not added again
    assert all(p["arch"] in ("amd64", "all") and len(p["sha256"]) == 64 for p in data["ocr"]["linux/amd64"]["debian"]["packages"])


def test_a_warm_rebuild_downloads_nothing_and_gives_the_same_digests(built, shared_store, tmp_path):
    again = make_project(tmp_path / "again")
    shutil.copy(built / "lamina.lock", again / "lamina.lock")
    dead_proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    result = lamina(again, shared_store, "build", "--locked", "--json", env=dead_proxy)  # no network at all
    assert digests(again) == digests(built)
    images = json.loads(result.stdout)["images"]
    assert len(images) == 2  # pybase and ocr: the next line is not vacuous
    assert all(image["downloaded_bytes"] == 0 for image in images)
    assert (again / "lamina.lock").read_text() == (built / "lamina.lock").read_text()


def test_a_cold_build_gives_the_same_digest(built, tmp_path):
    cold = make_project(tmp_path / "cold")
    shutil.copy(built / "lamina.lock", cold / "lamina.lock")
    result = lamina(cold, tmp_path / "empty-store", "build", "pybase", "--locked", "--json")
    summary = json.loads(result.stdout)["images"][0]
    assert summary["downloaded_bytes"] > 5_000_000 and summary["reused_layers"] == 0
    assert digests(cold)["pybase:1.0"] == digests(built)["pybase:1.0"]


def test_locked_refuses_a_stale_lock(built, shared_store, tmp_path):
    stale = make_project(tmp_path / "stale", body=PROJECT.replace('"poppler-utils"', '"poppler-utils", "curl"'))
    shutil.copy(built / "lamina.lock", stale / "lamina.lock")
    result = lamina(stale, shared_store, "build", "--locked", check=False)
    assert result.returncode == 5  # LockStaleError
    assert "lamina.lock is stale (requested changed) for image 'ocr'" in result.stderr
    assert "lamina lock ocr" in result.stderr


def test_unknown_package_is_a_clear_error(shared_store, tmp_path):
    root = make_project(tmp_path / "typo", body=PROJECT.replace('"python3", "ca-certificates"', '"pyhton3"'))
    result = lamina(root, shared_store, "build", "pybase", check=False)
    assert result.returncode == 1
    assert "unknown package 'pyhton3': it is not in bookworm (amd64)" in result.stderr
    assert "did you mean python3" in result.stderr


def test_an_architecture_the_release_lacks_is_a_clear_error(shared_store, tmp_path):
    root = make_project(tmp_path / "arch", project='platform = "linux/riscv64"')
    result = lamina(root, shared_store, "lock", "pybase", check=False)
    assert result.returncode == 1
    assert "bookworm has no packages for the architecture riscv64" in result.stderr


def test_arm64_resolves_to_arm64_and_all_packages(shared_store, tmp_path):
    root = make_project(tmp_path / "arm", project='platform = "linux/arm64"')
    lamina(root, shared_store, "lock", "pybase")
    import tomllib

    packages = tomllib.loads((root / "lamina.lock").read_text())["images"]["pybase"]["linux/arm64"]["debian"]["packages"]
    arches = {p["arch"] for p in packages}
    assert arches == {"arm64", "all"}
    assert any(p["name"] == "libc6" and p["filename"].endswith("_arm64.deb") for p in packages)


def test_packages_added_on_a_debian_image_read_from_a_layout_skip_what_it_has(built, shared_store, tmp_path):
    body = f"""
[images.extra]
from = "oci:{built}/build/oci:pybase:1.0"
packages = ["python3-six", "libexpat1"]
"""
    root = make_project(tmp_path / "layout-base", body=body)
    lamina(root, shared_store, "lock")
    import tomllib

    section = tomllib.loads((root / "lamina.lock").read_text())["images"]["extra"]["linux/amd64"]["debian"]
    assert [p["name"] for p in section["packages"]] == ["python3-six"]  # python3 and libexpat1 are in the base
    assert section["base_packages"].startswith("sha256:")


@pytest.mark.registry
def test_packages_on_a_project_image_over_a_pulled_debian_base(built, shared_store, registry, tmp_path):
    """The dpkg database of an image planned on a pulled base is read from the base's layers (in the
    registry), not from the documents of the image in between, which exist only as a plan."""
    root = make_project(tmp_path / "pushed", body=PROJECT)
    lamina(root, shared_store, "build", "pybase", "--push", "--registry", registry.host, "--owner", "deb")
    body = f"""
[images.mid]
from = "{registry.host}/deb/pybase:1.0"
workdir = "/srv"

[images.top]
from = "mid"
packages = ["python3-six", "libexpat1"]
"""
    other = make_project(tmp_path / "on-pulled", body=body)
    lamina(other, tmp_path / "fresh-store", "lock")
    import tomllib

    section = tomllib.loads((other / "lamina.lock").read_text())["images"]["top"]["linux/amd64"]["debian"]
    assert [p["name"] for p in section["packages"]] == ["python3-six"]


# -- tampering: a local mirror serves real signed files with one byte changed -------------------------


class Mirror:
    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/debian"

    def put(self, path: str, data: bytes) -> None:
        target = self.root / "debian" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def close(self) -> None:
        self.server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path):
    m = Mirror(tmp_path / "mirror")
    yield m
    m.close()


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def real_archive_files(built: Path, store: Path) -> tuple[bytes, bytes, dict]:
    """The real signed InRelease, the real Packages.xz and the lock entry of pybase, from the warm store."""
    import tomllib

    section = tomllib.loads((built / "lamina.lock").read_text())["images"]["pybase"]["linux/amd64"]["debian"]
    inrelease = blob(store, section["sources"][0]["inrelease"])
    sha = re.search(rb"^ ([0-9a-f]{64}) +\d+ main/binary-amd64/Packages\.xz$", inrelease, re.M).group(1).decode()
    return inrelease, blob(store, "sha256:" + sha), section


TINY = """\
[project]
debian_mirror = "{url}"

[images.tiny]
from = "debian:bookworm"
"""


def blobs_in(store: Path) -> set[str]:
    return {p.name for p in (store / "blobs" / "sha256").iterdir()} if (store / "blobs").exists() else set()


def test_a_tampered_packages_index_is_refused_and_nothing_is_stored(built, shared_store, mirror, tmp_path):
    inrelease, packages, _ = real_archive_files(built, shared_store)
    mirror.put("dists/bookworm/InRelease", inrelease)
    tampered = flip(packages, len(packages) // 2)
    mirror.put("dists/bookworm/main/binary-amd64/Packages.xz", tampered)
    root = make_project(tmp_path / "p", body=TINY.format(url=mirror.url))
    store = tmp_path / "store"
    result = lamina(root, store, "build", check=False)
    assert result.returncode == 1
    assert "the bookworm index main/binary-amd64/Packages.xz downloaded from" in result.stderr
    assert "does not match the SHA256 the signed InRelease lists" in result.stderr
    import hashlib

    assert hashlib.sha256(tampered).hexdigest() not in blobs_in(store)
    assert not list((store / "tmp").iterdir())


def test_a_tampered_inrelease_is_refused(built, shared_store, mirror, tmp_path):
    inrelease, _, _ = real_archive_files(built, shared_store)
    mirror.put("dists/bookworm/InRelease", inrelease.replace(b"\nDate: ", b"\nDate:  ", 1))
    root = make_project(tmp_path / "p", body=TINY.format(url=mirror.url))
    result = lamina(root, tmp_path / "store", "build", check=False)
    assert result.returncode == 1
    assert "InRelease signature check failed" in result.stderr
    assert not (root / "lamina.lock").exists()


def test_a_tampered_deb_from_the_mirror_is_refused(built, shared_store, mirror, tmp_path):
    inrelease, packages, section = real_archive_files(built, shared_store)
    mirror.put("dists/bookworm/InRelease", inrelease)
    mirror.put("dists/bookworm/main/binary-amd64/Packages.xz", packages)
    store = tmp_path / "store"
    for p in section["packages"]:
        data = blob(shared_store, "sha256:" + p["sha256"])
        mirror.put(p["filename"], flip(data, len(data) - 10) if p["name"] == "netbase" else data)
    root = make_project(tmp_path / "p", body=TINY.format(url=mirror.url))
    result = lamina(root, store, "build", check=False)
    assert result.returncode == 1, result.stderr
    assert re.search(r"netbase_[^ ]+_all\.deb downloaded from .* does not match the SHA256 of its Packages entry",
                     result.stderr.replace("\n", ""))
    netbase = next(p for p in section["packages"] if p["name"] == "netbase")
    assert netbase["sha256"] not in blobs_in(store) and not list((store / "tmp").iterdir())


def test_a_tampered_cached_deb_is_refused(built, shared_store, tmp_path):
    """A .deb modified in the store after it was verified is refused when a layer needs it."""
    root = make_project(tmp_path / "p", body=TINY.format(url=ARCHIVE))
    store = tmp_path / "store"
    lamina(root, store, "lock")  # resolves (index from the network, cached in this store)
    import tomllib

    section = tomllib.loads((root / "lamina.lock").read_text())["images"]["tiny"]["linux/amd64"]["debian"]
    for p in section["packages"]:  # warm this store with the verified .debs of the shared one
        target = store / "blobs" / "sha256" / p["sha256"]
        target.write_bytes(blob(shared_store, "sha256:" + p["sha256"]))
    netbase = next(p for p in section["packages"] if p["name"] == "netbase")
    path = store / "blobs" / "sha256" / netbase["sha256"]
    path.write_bytes(flip(path.read_bytes(), 100))
    result = lamina(root, store, "build", "--locked", check=False)
    assert result.returncode == 1
    assert f"the cached netbase_{netbase['version']}_all.deb in the store does not match its SHA256" in \
        result.stderr.replace("\n", "")
    assert "lamina store verify --delete" in result.stderr
