"""Building images from lamina.toml into an OCI layout: valid, verified, reproducible."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import pytest
import zstandard

from lamina.oci import mediatypes as mt
from helpers import blob, layout_index, manifest_of, run_lamina
from projects import make_hello_project


def check_blobs_match_descriptors(layout: Path, manifest: dict) -> dict:
    """Every descriptor's digest and size match the blob; every diff_id matches the uncompressed layer."""
    for desc in [manifest["config"], *manifest["layers"]]:
        data = blob(layout, desc["digest"])
        assert len(data) == desc["size"]
        assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"]
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"])
    for desc, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
        data = blob(layout, desc["digest"])
        raw = gzip.decompress(data) if desc["mediaType"].endswith("gzip") else zstandard.ZstdDecompressor().decompressobj().decompress(data)
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id
    return config


@pytest.fixture
def hello(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    make_hello_project(root)
    return root


def build(root: Path, *args: str, store: Path | None = None):
    env = {"LAMINA_STORE": str(store or root.parent / "store")}
    run_lamina("build", "busybox", *args, cwd=root, env=env)
    return run_lamina("build", "hello", *args, cwd=root, env=env)


def test_layout_is_valid_oci_and_blobs_match(hello, oci_schemas):
    build(hello)
    layout = hello / "build" / "oci"
    oci_schemas.validate("layout", json.loads((layout / "oci-layout").read_bytes()))
    oci_schemas.validate("index", layout_index(layout))
    for ref in ("busybox:1.0", "hello:1.0"):
        _, manifest = manifest_of(layout, ref)
        oci_schemas.validate("manifest", manifest)
        config = check_blobs_match_descriptors(layout, manifest)
        oci_schemas.validate("config", config)


def test_config_and_annotations_carry_what_lamina_toml_says(hello):
    build(hello)
    layout = hello / "build" / "oci"
    base_digest, _ = manifest_of(layout, "busybox:1.0")
    _, manifest = manifest_of(layout, "hello:1.0")
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    run = config["config"]
    assert run["Env"] == ["GREETING=lamina"] and run["Cmd"] == ["/app/hello.sh"]
    assert run["WorkingDir"] == "/app" and run["User"] == "1000:1000"
    assert run["ExposedPorts"] == {"8000/tcp": {}}
    assert run["Labels"] == {"org.example.team": "platform"}
    assert run["Healthcheck"] == {
        "Test": ["CMD", "/bin/sh", "-c", "true"], "Interval": 5_000_000_000, "Timeout": 30_000_000_000,
        "StartPeriod": 0, "Retries": 2,
    }
    assert len(config["history"]) == 2
    annotations = manifest["annotations"]
    assert annotations["org.opencontainers.image.base.digest"] == base_digest
    assert annotations["org.opencontainers.image.base.name"] == "busybox:1.0"
    assert annotations["org.opencontainers.image.created"] == "1970-01-01T00:00:01Z"
    assert annotations["org.opencontainers.image.version"] == "1.0"


def test_child_reuses_the_base_layers_as_they_are(hello):
    build(hello)
    layout = hello / "build" / "oci"
    _, base = manifest_of(layout, "busybox:1.0")
    _, child = manifest_of(layout, "hello:1.0")
    assert child["layers"][: len(base["layers"])] == base["layers"]
    assert len(child["layers"]) == len(base["layers"]) + 1


def test_same_image_from_two_checkouts_with_other_mtimes_and_umask(tmp_path):
    digests = []
    for name, umask, mtime in (("a", 0o022, 1_500_000_000), ("b/nested/deeper", 0o077, 1_750_000_000)):
        root = tmp_path / name
        root.mkdir(parents=True)
        old = os.umask(umask)
        try:
            make_hello_project(root)
        finally:
            os.umask(old)
        for path in root.rglob("*"):
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        build(root, store=tmp_path / f"store-{umask}")
        digests.append({ref: manifest_of(root / "build" / "oci", ref)[0] for ref in ("busybox:1.0", "hello:1.0")})
    assert digests[0] == digests[1]


def test_no_op_rebuild_reuses_every_layer_and_gives_the_same_digest(hello):
    build(hello)
    first, _ = manifest_of(hello / "build" / "oci", "hello:1.0")
    blob_count = len(list((hello.parent / "store" / "blobs" / "sha256").iterdir()))
    summary = json.loads(build(hello, "--json").stdout)
    assert manifest_of(hello / "build" / "oci", "hello:1.0")[0] == first
    assert len(list((hello.parent / "store" / "blobs" / "sha256").iterdir())) == blob_count
    hello_summary = next(i for i in summary["images"] if i["name"] == "hello")
    assert hello_summary["digest"] == first
    assert (hello_summary["built_layers"], hello_summary["reused_layers"]) == (0, 1)


def test_changing_one_app_file_changes_only_the_app_layer(hello):
    build(hello)
    _, before = manifest_of(hello / "build" / "oci", "hello:1.0")
    (hello / "app" / "message.txt").write_text("version 2\n")
    build(hello)
    _, after = manifest_of(hello / "build" / "oci", "hello:1.0")
    assert after["layers"][0] == before["layers"][0]
    assert after["layers"][1] != before["layers"][1]


def test_docker_format_uses_only_docker_media_types(hello):
    build(hello, "--format", "docker")
    _, manifest = manifest_of(hello / "build" / "oci", "hello:1.0")
    assert manifest["mediaType"] == mt.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == mt.DOCKER_CONFIG
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.DOCKER_LAYER_GZIP}
    assert "annotations" not in manifest


def test_zstd_layers_on_request(hello, oci_schemas):
    build(hello, "--compression", "zstd")
    _, manifest = manifest_of(hello / "build" / "oci", "hello:1.0")
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER_ZSTD}
    oci_schemas.validate("manifest", manifest)
    check_blobs_match_descriptors(hello / "build" / "oci", manifest)


def test_zstd_with_docker_format_is_refused(hello):
    result = run_lamina("build", "busybox", "--format", "docker", "--compression", "zstd", cwd=hello,
                        env={"LAMINA_STORE": str(hello.parent / "store")}, check=False)
    assert result.returncode == 1 and "Docker schema2 images cannot hold zstd layers" in result.stderr


def test_source_date_epoch_changes_the_timestamp_and_the_digest(hello):
    build(hello)
    plain, _ = manifest_of(hello / "build" / "oci", "hello:1.0")
    env = {"LAMINA_STORE": str(hello.parent / "store"), "SOURCE_DATE_EPOCH": "1700000000"}
    run_lamina("build", "busybox", cwd=hello, env=env)
    run_lamina("build", "hello", cwd=hello, env=env)
    digest, manifest = manifest_of(hello / "build" / "oci", "hello:1.0")
    assert digest != plain
    assert manifest["annotations"]["org.opencontainers.image.created"] == "2023-11-14T22:13:20Z"


def test_base_from_a_local_layout(hello, tmp_path):
    build(hello)
    other = tmp_path / "other"
    other.mkdir()
    make_hello_project(other, base=f"oci:{hello}/build/oci:busybox:1.0")
    run_lamina("build", "hello", cwd=other, env={"LAMINA_STORE": str(tmp_path / "other-store")})
    base_digest, _ = manifest_of(hello / "build" / "oci", "busybox:1.0")
    _, manifest = manifest_of(other / "build" / "oci", "hello:1.0")
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == base_digest
    check_blobs_match_descriptors(other / "build" / "oci", manifest)


def test_missing_base_in_layout_is_a_clear_error(hello):
    text = (hello / "lamina.toml").read_text().replace('from = "busybox"', 'from = "oci:nowhere:busybox"')
    (hello / "lamina.toml").write_text(text)
    result = run_lamina("build", "hello", cwd=hello, env={"LAMINA_STORE": str(hello.parent / "store")}, check=False)
    assert result.returncode == 1
    assert "not an OCI layout" in result.stderr and "hint:" in result.stderr
