"""`lamina build --push` against a real registry: only missing blobs go up, bases are mounted, not copied."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import require_tool
from helpers import blob, run_lamina
from projects import make_hello_project
from registry_servers import unique_repo

pytestmark = pytest.mark.registry


def push(root: Path, registry, owner: str, *names: str, extra_env: dict | None = None, args: tuple = (),
         store: Path | None = None) -> dict:
    env = {"LAMINA_STORE": str(store or root.parent / "store"), **(extra_env or {})}
    out = run_lamina("build", *names, "--push", "--registry", registry.host, "--owner", owner, "--json", *args,
                     cwd=root, env=env)
    return json.loads(out.stdout)


def pushed(summary: dict, name: str) -> dict:
    """The push report of image ``name`` in a --json summary."""
    return next(p for p in summary["pushed"] if p["target"].rsplit("/", 1)[1].split(":")[0] == name)


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    make_hello_project(root)
    return root


def test_push_then_push_again_uploads_nothing(project, registry):
    owner = unique_repo("own")
    first = push(project, registry, owner, "busybox")
    assert first["pushed"][0]["bytes_uploaded"] > 900_000  # the busybox layer
    push(project, registry, owner, "hello")  # hello's base is the local busybox layout image
    mark = registry.mark()
    again = push(project, registry, owner, "busybox", "hello")
    requests = registry.requests(mark)
    assert not [r for r in requests if "/blobs/uploads" in r.path], requests
    assert {o for p in again["pushed"] for o in p["blobs"].values()} == {"exists"}
    assert all(p["bytes_uploaded"] == 0 for p in again["pushed"])


def test_skopeo_sees_what_we_pushed_and_copies_it_with_the_same_digest(project, registry, tmp_path):
    require_tool("skopeo")
    owner = unique_repo("own")
    pushed = push(project, registry, owner, "busybox", args=("--output", "oci:build/oci"))["pushed"][0]
    ref = f"docker://{registry.host}/{owner}/busybox:1.0"
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", ref], capture_output=True, text=True,
                                     check=True).stdout)
    assert info["Digest"] == pushed["digest"]
    dest = tmp_path / "copied"
    subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", ref, f"oci:{dest}:x"],
                   check=True, capture_output=True)
    assert json.loads((dest / "index.json").read_text())["manifests"][0]["digest"] == pushed["digest"]
    # and the other way: skopeo pushes our layout, digest preserved
    subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                    f"oci:{project}/build/oci:busybox:1.0", f"docker://{registry.host}/{owner}/viaskopeo:1"],
                   check=True, capture_output=True)
    again = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                                       f"docker://{registry.host}/{owner}/viaskopeo:1"],
                                      capture_output=True, text=True, check=True).stdout)
    assert again["Digest"] == pushed["digest"]


def test_base_from_the_same_registry_is_mounted_never_downloaded(project, registry, tmp_path):
    owner = unique_repo("own")
    base = push(project, registry, owner, "busybox", args=("--output", "oci:build/oci"))["pushed"][0]
    base_manifest = json.loads(blob(project / "build" / "oci", base["digest"]))
    base_layer = base_manifest["layers"][0]["digest"]
    # a second project, with its own empty store, builds on the pushed base and pushes to another repo
    other = tmp_path / "other"
    other.mkdir()
    make_hello_project(other, base=f"{registry.host}/{owner}/busybox:1.0")
    mark = registry.mark()
    summary = push(other, registry, owner, "hello", store=tmp_path / "other-store")
    assert pushed(summary, "hello")["blobs"][base_layer] == "mounted"
    requests = registry.requests(mark)
    mounts = [r for r in requests if r.method == "POST" and "mount=" in r.query]
    assert len(mounts) == 1 and mounts[0].status == 201
    assert not [r for r in requests if r.method in ("PATCH", "PUT") and base_layer.split(":")[1] in r.query]
    blob_gets = [r.path.rsplit("/", 1)[1] for r in requests
                 if r.method == "GET" and "/blobs/" in r.path and "/lamina-cache/" not in r.path]  # not the cache index
    assert blob_gets == [base_manifest["config"]["digest"]]  # the base's config only, never its layer
    assert not (other / "build").exists()  # --push alone writes no local output


def test_changed_app_file_pushes_one_blob_plus_documents(project, registry):
    owner = unique_repo("own")
    push(project, registry, owner, "busybox", "hello")
    (project / "app" / "message.txt").write_text("version 2\n")
    report = pushed(push(project, registry, owner, "hello"), "hello")
    assert sorted(report["blobs"].values()).count("uploaded") == 2  # the app layer and the new config
    assert sorted(report["blobs"].values()).count("exists") == 1  # the busybox layer


def test_chunked_upload_of_a_large_layer(project, registry):
    (project / "app" / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    owner = unique_repo("own")
    push(project, registry, owner, "busybox")
    mark = registry.mark()
    report = pushed(push(project, registry, owner, "hello", args=("--chunk-size", str(4 * 1024 * 1024))), "hello")
    assert report["bytes_uploaded"] > 12 * 1024 * 1024
    assert registry.count(mark, "PATCH", r"/blobs/uploads/") >= 3


def test_basic_auth_from_env_and_a_refused_password(project, basic_registry):
    owner = unique_repo("own")
    env = {"LAMINA_REGISTRY_USERNAME": basic_registry.username, "LAMINA_REGISTRY_PASSWORD": basic_registry.password}
    report = push(project, basic_registry, owner, "busybox", extra_env=env)["pushed"][0]
    assert report["bytes_uploaded"] > 0
    wrong = "definitely-wrong-password"
    out = run_lamina("build", "busybox", "--push", "--registry", basic_registry.host, "--owner", owner,
                     "--username", basic_registry.username, "--password-stdin", cwd=project, stdin=wrong + "\n",
                     env={"LAMINA_STORE": str(project.parent / "store")}, check=False)
    assert out.returncode == 4  # AuthError
    assert basic_registry.host in out.stderr and "--username" in out.stderr
    assert wrong not in out.stderr + out.stdout


def test_base_not_found_names_the_reference_and_the_answer(project, registry):
    (project / "lamina.toml").write_text((project / "lamina.toml").read_text().replace(
        'from = "busybox"', f'from = "{registry.host}/nobody/nothing:9"'))
    out = run_lamina("build", "hello", cwd=project, env={"LAMINA_STORE": str(project.parent / "store")}, check=False)
    assert out.returncode == 4  # NotFoundError
    assert f"{registry.host}/nobody/nothing:9" in out.stderr


def test_unreachable_registry_is_reported(project):
    out = run_lamina("build", "busybox", "--push", "--registry", "127.0.0.1:9", "--owner", "x", cwd=project,
                     env={"LAMINA_STORE": str(project.parent / "store")}, check=False)
    assert out.returncode == 4 and "127.0.0.1:9" in out.stderr


def test_base_from_a_multi_platform_index_picks_the_platform(project, registry, tmp_path):
    """A base reference naming an index resolves to the manifest of the image's platform."""
    from lamina.oci import mediatypes as mt
    from lamina.oci.model import Descriptor, Platform, build_index
    from lamina.oci.registry.client import RegistryClient

    owner = unique_repo("own")
    digests = {}
    busybox = project / "rootfs" / "bin" / "busybox"
    for arch in ("amd64", "arm64"):
        if arch == "arm64":  # an x86-64 busybox would be refused in an arm64 image: a stand-in file
            busybox.unlink()
            busybox.write_text("arm64 stand-in\n")
        text = (project / "lamina.toml").read_text()
        (project / "lamina.toml").write_text(text.replace('[images.busybox]\nfrom = "scratch"',
                                                          f'[images.busybox]\nfrom = "scratch"\nplatform = "linux/{arch}"'))
        summary = push(project, registry, owner, "busybox", args=("--tag", arch))
        digests[arch] = pushed(summary, "busybox")["digest"]
        (project / "lamina.toml").write_text(text)
    with RegistryClient(registry.host) as client:
        manifests = [Descriptor(mt.OCI_MANIFEST, digests[a], len(client.get_manifest(f"{owner}/busybox", digests[a]).data),
                                platform=Platform("linux", a)) for a in ("amd64", "arm64")]
        index = build_index(manifests)
        client.put_manifest(f"{owner}/busybox", "multi", index.data, index.media_type)
    other = tmp_path / "other"
    other.mkdir()
    make_hello_project(other, base=f"{registry.host}/{owner}/busybox:multi")
    text = (other / "lamina.toml").read_text().replace("[images.hello]\n", '[images.hello]\nplatform = "linux/arm64"\n')
    (other / "lamina.toml").write_text(text)
    summary = push(other, registry, owner, "hello", store=tmp_path / "other-store",
                   args=("--output", "oci:build/oci"))
    manifest_digest = pushed(summary, "hello")["digest"]
    manifest = json.loads(blob(other / "build" / "oci", manifest_digest))
    assert manifest["annotations"]["org.opencontainers.image.base.digest"] == digests["arm64"]


def _stored_layer(store, data: bytes):
    import hashlib

    from lamina.oci.layer import BuiltLayer
    from lamina.oci.records import StoredLayer

    digest = store.put_bytes(data)
    return BuiltLayer(StoredLayer("sha256:" + hashlib.sha256(b"tar:" + data).hexdigest(), digest, len(data),
                                  "application/vnd.oci.image.layer.v1.tar+gzip"), "a layer", reused=False)


def test_layers_uploaded_while_building_are_not_sent_again_and_are_reported_uploaded(registry, tmp_path):
    from lamina.oci.model import Descriptor, Image, Platform, build_config, build_manifest
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries
    from lamina.oci.store import BlobStore
    from lamina.publish.named import Named
    from lamina.publish.registry import EarlyUploads, push

    store = BlobStore(tmp_path / "store")
    layer = _stored_layer(store, os.urandom(300_000))
    owner = unique_repo("early")
    base_target = Reference.parse(f"{registry.host}/{owner}/base:1")
    app_target = Reference.parse(f"{registry.host}/{owner}/app:1")
    registries = Registries()
    mark = registry.mark()
    early = EarlyUploads({"base": base_target, "app": app_target}, store, registries)
    early.layer_built("base", layer)
    early.layer_built("app", layer)  # the same blob again: one upload
    early.layer_built("not-pushed", _stored_layer(store, b"elsewhere"))

    config = build_config(platform=Platform(), run={}, diff_ids=[layer.layer.diff_id], history=[],
                          created="1970-01-01T00:00:01Z")
    store.put_bytes(config.data)
    desc = Descriptor(layer.layer.media_type, layer.layer.digest, layer.layer.size)
    image = Image(build_manifest(config, [desc]), config)
    reports = push([(Named("base", "1", image), base_target), (Named("app", "1", image), app_target)],
                   store, registries, early=early)
    requests = registry.requests(mark)
    layer_uploads = [r for r in requests if r.method == "PUT" and layer.layer.digest[7:] in r.query]
    assert len(layer_uploads) == 1, requests  # once, early; the push after the build did not send it again
    assert reports[0].outcomes[layer.layer.digest] == "uploaded"
    assert reports[0].bytes_uploaded >= 300_000
    assert reports[1].outcomes[layer.layer.digest] == "mounted"  # the second image mounts it
    assert registry.requests(mark)[-1].method == "PUT"  # the manifests go last
    registries.close()


def test_a_failed_early_upload_is_sent_again_by_the_push(registry, tmp_path):
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries
    from lamina.oci.store import BlobStore
    from lamina.publish.registry import EarlyUploads

    store = BlobStore(tmp_path / "store")
    layer = _stored_layer(store, b"x" * 1000)
    nowhere = Reference.parse("127.0.0.1:9/nobody/base:1")  # nothing listens on the discard port
    early = EarlyUploads({"base": nowhere}, store, Registries())
    early.layer_built("base", layer)
    assert early.finish() == {}  # logged, not raised: the push reports the unreachable registry itself


def test_layers_found_in_the_store_are_left_to_the_push(registry, tmp_path):
    """A no-op build sends no request per layer: a reused layer was most likely pushed before."""
    from dataclasses import replace

    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries
    from lamina.oci.store import BlobStore
    from lamina.publish.registry import EarlyUploads

    store = BlobStore(tmp_path / "store")
    layer = replace(_stored_layer(store, b"y" * 1000), reused=True)
    mark = registry.mark()
    early = EarlyUploads({"base": Reference.parse(f"{registry.host}/{unique_repo('early')}/base:1")}, store, Registries())
    early.layer_built("base", layer)
    assert early.finish() == {}
    assert registry.requests(mark) == []
