"""Shared fixtures: real registries (registry_servers), OCI schema validation, tool checks."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test this checkout's code, whichever copy of lamina pip last installed (subprocesses too).
SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)

pytest_plugins = ["registry_servers"]

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "oci-image-spec-schemas"
SCHEMA_ALIASES = {
    "config-schema.json": ["https://opencontainers.org/schema/image/config"],
    "content-descriptor.json": [
        "https://opencontainers.org/schema/descriptor",
        "https://opencontainers.org/schema/image/content-descriptor.json",
    ],
    "defs-descriptor.json": [
        "https://opencontainers.org/schema/image/descriptor/mediaType",
        "https://opencontainers.org/schema/defs-descriptor.json",
        "https://opencontainers.org/schema/image/defs-descriptor.json",
    ],
    "defs.json": [
        "https://opencontainers.org/schema/defs.json",
        "https://opencontainers.org/schema/image/defs.json",
        "https://opencontainers.org/schema/image/descriptor/defs.json",
    ],
    "image-index-schema.json": ["https://opencontainers.org/schema/image/index"],
    "image-layout-schema.json": ["https://opencontainers.org/schema/image/layout"],
    "image-manifest-schema.json": ["https://opencontainers.org/schema/image/manifest"],
}


class OciSchemas:
    """Validates documents against the official OCI image-spec v1.1.1 schemas."""

    def __init__(self, folder: Path) -> None:
        from jsonschema import Draft4Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        registry = Registry()
        self._schemas = {}
        for name, aliases in SCHEMA_ALIASES.items():
            schema = json.loads((folder / name).read_text())
            self._schemas[name] = schema
            resource = Resource(contents=schema, specification=DRAFT4)
            for uri in [name, *aliases]:
                registry = registry.with_resource(uri, resource)
        self._validator = lambda name: Draft4Validator(self._schemas[name], registry=registry)

    def validate(self, kind: str, document: bytes | dict) -> None:
        """kind: config, manifest, index or layout."""
        file = {
            "config": "config-schema.json",
            "manifest": "image-manifest-schema.json",
            "index": "image-index-schema.json",
            "layout": "image-layout-schema.json",
        }[kind]
        obj = json.loads(document) if isinstance(document, bytes) else document
        errors = sorted(self._validator(file).iter_errors(obj), key=str)
        assert not errors, f"{kind} is not valid OCI: " + "; ".join(e.message for e in errors)


@pytest.fixture(scope="session")
def oci_schemas() -> OciSchemas:
    if not SCHEMAS.is_dir():
        pytest.skip(f"OCI schemas not found at {SCHEMAS} (../shared is absent in this clone)")
    return OciSchemas(SCHEMAS)


@functools.cache
def archives_unreachable() -> str | None:
    """Why the Debian archive or PyPI cannot be reached (None when both answer): the network tests' gate."""
    import httpx

    for url in ("https://deb.debian.org/debian/dists/bookworm/InRelease", "https://pypi.org/simple/fastapi/"):
        try:
            httpx.head(url, timeout=15, follow_redirects=True).raise_for_status()
        except httpx.HTTPError as e:
            return f"{url}: {e}"
    return None


def wait_for(url: str, seconds: float = 60) -> tuple[int, bytes]:
    """GET ``url`` until it answers (a service starting in a container): its status and body."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status, response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def require_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: apt-get install {package or name}")
    return path


#: ``podman run`` flags that work on these machines (the default limits are refused here).
PODMAN_RUN_FLAGS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


@contextlib.contextmanager
def container_storage(prefix: str = "lc-") -> Iterator[dict[str, list[str]]]:
    """podman and buildah commands sharing one short-lived storage (the flags that work here), removed after."""
    require_tool("podman")
    require_tool("runc")
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # podman refuses a runroot path over 50 characters
    storage = ["--root", str(base / "root"), "--runroot", str(base / "run"), "--storage-driver", "overlay"]
    # its own --tmpdir too: libpod keeps state there (default /run/libpod), which another storage's
    # `system reset` would otherwise remove from under this one
    tools = {"podman": ["podman", *storage, "--tmpdir", str(base / "tmp"), "--runtime", "runc",
                        "--cgroup-manager", "cgroupfs"],
             "buildah": ["buildah", *storage]}
    try:
        yield tools
    finally:
        subprocess.run(tools["podman"] + ["rm", "-a", "-f"], capture_output=True, timeout=120)
        subprocess.run(tools["podman"] + ["system", "reset", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def store(tmp_path):
    from lamina.oci.store import BlobStore

    return BlobStore(tmp_path / "store")


# -- slow end-to-end tests: run in CI (CI=true) or with --slow; skipped, saying so, otherwise -----------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests (CI always does)")


def run_slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--slow")) or os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if run_slow(config):
        return
    skip = pytest.mark.skip(reason="slow end-to-end test: run with --slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
