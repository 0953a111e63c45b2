"""The registry as the family's layer cache (docs/cache.md): two stores, one loopback registry.

Store A builds and pushes; store B, empty, builds after a change and reuses from the registry every
layer whose inputs did not change, without building or downloading it; the digests are the ones store
A computes for the same change. Poisoned or untrusted entries are not used.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from helpers import LOOPBACK, blob, run_lamina
from projects import make_hello_project
from registry_servers import unique_repo

pytestmark = pytest.mark.registry


def build(root: Path, store: Path, *args: str, check: bool = True):
    return run_lamina("build", "--json", *args, cwd=root, check=check,
                      env={"LAMINA_STORE": str(store), "NO_PROXY": LOOPBACK})


def summary_of(result) -> dict:
    return json.loads(result.stdout)


def push_args(registry, owner: str) -> tuple[str, ...]:
    return ("--push", "--registry", registry.host, "--owner", owner)


def built_layers(summary: dict) -> int:
    return sum(i["built_layers"] for i in summary["images"])


def digests(summary: dict) -> dict[str, str]:
    return {i["name"]: i["digest"] for i in summary["images"]}


def registry_layers(registry, summary: dict) -> set[str]:
    """The layer digests of every image a summary says was pushed, as the registry has them."""
    from lamina.oci.registry.client import RegistryClient

    layers = set()
    with RegistryClient(registry.host) as client:
        for p in summary["pushed"]:
            repo = p["target"].split("/", 1)[1].rsplit(":", 1)[0]
            manifest = json.loads(client.get_manifest(repo, p["digest"]).data)
            layers |= {layer["digest"] for layer in manifest["layers"]}
    return layers


def change_app(root: Path) -> None:
    (root / "app" / "message.txt").write_text("version 2\n")


@pytest.fixture
def pushed(tmp_path, registry):
    """Store A has built and pushed the hello family; returns (project, owner, its summary)."""
    root = tmp_path / "a" / "project"
    root.mkdir(parents=True)
    make_hello_project(root)
    owner = unique_repo("cache")
    summary = summary_of(build(root, tmp_path / "store-a", *push_args(registry, owner)))
    return root, owner, summary


def fresh_copy(tmp_path: Path, name: str) -> Path:
    """The same project checked out elsewhere (other paths, times and inodes), with the app changed."""
    root = tmp_path / name / "project"
    root.mkdir(parents=True)
    make_hello_project(root)
    change_app(root)
    return root


def expected_after_change(tmp_path: Path, pushed_root: Path, registry, owner: str) -> dict[str, str]:
    """The digests store A computes for the same change (built there, not pushed: no cache is read)."""
    change_app(pushed_root)
    summary = summary_of(build(pushed_root, tmp_path / "store-a", "--registry", registry.host, "--owner", owner,
                               "--output", "oci:build/after"))
    assert summary["cache"] is None
    return digests(summary)


def test_an_empty_store_builds_only_the_changed_layer_and_downloads_none(tmp_path, registry, pushed):
    root_a, owner, first = pushed
    assert built_layers(first) == 2  # the busybox root and the app
    root_b = fresh_copy(tmp_path, "b")
    mark = registry.mark()
    result = build(root_b, tmp_path / "store-b", *push_args(registry, owner))
    summary = summary_of(result)
    assert built_layers(summary) == 1, summary
    assert summary["cache"]["hits"] == 1 and summary["cache"]["rejected"] == []
    requests = registry.requests(mark)
    blob_gets = {r.path.rsplit("/", 1)[1] for r in requests if r.method == "GET" and "/blobs/" in r.path}
    assert blob_gets, "the cache index and the configs that vouch for its entries are read"
    assert not blob_gets & registry_layers(registry, first)  # no layer of store A's images was downloaded
    assert digests(summary) == expected_after_change(tmp_path, root_a, registry, owner)
    assert "warning" not in result.stderr


def test_a_poisoned_entry_is_detected_and_the_layer_built_here(tmp_path, registry, pushed):
    from lamina.oci.cache import CacheIndex, read_index, write_index
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries

    root_a, owner, first = pushed
    root_b = fresh_copy(tmp_path, "b")
    root_c = fresh_copy(tmp_path, "c")
    build(root_b, tmp_path / "store-b", *push_args(registry, owner))  # the cache now knows the changed app layer
    ref = Reference.parse(f"{registry.host}/{owner}/lamina-cache:layers")
    registries = Registries()
    try:
        entries = read_index(ref, registries, print).layers
        busybox = next(e for e in entries.values() if e.repository.endswith("/busybox"))
        app = next(e for e in entries.values() if e.repository.endswith("/hello") and e.digest != busybox.digest)
        # the app's key now points at the busybox blob: other content, under the app layer's diff_id
        poisoned = dataclasses.replace(app, digest=busybox.digest, size=busybox.size)
        write_index(ref, [poisoned], registries, print, previous=CacheIndex(entries))
    finally:
        registries.close()
    result = build(root_c, tmp_path / "store-c", *push_args(registry, owner))
    summary = summary_of(result)
    assert "warning:" in result.stderr and "ignored, the layer is built here" in result.stderr
    assert summary["cache"]["rejected"] == [busybox.digest]
    assert built_layers(summary) == 1  # the app layer, built locally; busybox still from the cache
    assert digests(summary) == expected_after_change(tmp_path, root_a, registry, owner)


def test_a_layout_output_downloads_the_cached_layers_verified(tmp_path, registry, pushed):
    root_a, owner, _ = pushed
    root_b = fresh_copy(tmp_path, "b")
    cache = f'cache = "{registry.host}/{owner}/lamina-cache:layers"'
    toml = root_b / "lamina.toml"
    toml.write_text(toml.read_text().replace("[project]\n", f"[project]\nregistry = \"{registry.host}\"\n"
                                                           f"owner = \"{owner}\"\n{cache}\n"))
    summary = summary_of(build(root_b, tmp_path / "store-b", "--output", "oci:build/oci"))
    assert built_layers(summary) == 1 and summary["cache"]["hits"] == 1
    layout = root_b / "build" / "oci"
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        manifest = json.loads(blob(layout, entry["digest"]))
        for layer in manifest["layers"]:
            assert (layout / "blobs" / "sha256" / layer["digest"].split(":")[1]).is_file()
    assert digests(summary) == expected_after_change(tmp_path, root_a, registry, owner)


def test_no_remote_cache_builds_everything(tmp_path, registry, pushed):
    _, owner, _ = pushed
    root_b = fresh_copy(tmp_path, "b")
    mark = registry.mark()
    summary = summary_of(build(root_b, tmp_path / "store-b", *push_args(registry, owner), "--no-remote-cache"))
    assert built_layers(summary) == 2 and summary["cache"] is None
    assert not [r for r in registry.requests(mark) if "/lamina-cache/" in r.path]


def test_entries_pointing_outside_the_project_are_not_trusted(tmp_path, registry, pushed):
    from lamina.oci.cache import CacheIndex, read_index, write_index
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries

    _, owner, _ = pushed
    ref = Reference.parse(f"{registry.host}/{owner}/lamina-cache:layers")
    registries = Registries()
    try:
        entries = read_index(ref, registries, print).layers
        moved = [dataclasses.replace(e, repository=f"{registry.host}/someone-else/busybox") for e in entries.values()]
        write_index(ref, moved, registries, print, previous=CacheIndex())
    finally:
        registries.close()
    root_b = fresh_copy(tmp_path, "b")
    summary = summary_of(build(root_b, tmp_path / "store-b", *push_args(registry, owner)))
    assert summary["cache"]["hits"] == 0 and built_layers(summary) == 2


# -- the seed's family: store A pushes it, store B (empty) rebuilds it after one app change ----------------


@pytest.mark.slow
@pytest.mark.network
def test_fresh_store_rebuilds_the_family_after_one_app_change_building_one_layer(tmp_path, registry):
    from conftest import archives_unreachable
    from helpers import copy_example

    if (problem := archives_unreachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI cannot be reached ({problem})")
    owner = unique_repo("harkon")
    root_a = copy_example(tmp_path / "a" / "tax-agent")
    first = summary_of(build(root_a, tmp_path / "store-a", "--locked", *push_args(registry, owner)))
    assert first["cache"]["hits"] == 0

    def change(root: Path) -> None:
        main = root / "apps" / "svc_forms" / "main.py"
        main.write_text(main.read_text().replace("Form {{ number }}", "Tax form {{ number }}"))

    root_b = copy_example(tmp_path / "b" / "tax-agent")
    change(root_b)
    mark = registry.mark()
    result = build(root_b, tmp_path / "store-b", "--locked", *push_args(registry, owner))
    summary = summary_of(result)
    assert built_layers(summary) == 1, [(i["name"], i["built_layers"]) for i in summary["images"]]
    assert next(i for i in summary["images"] if i["name"] == "svc-forms")["built_layers"] == 1
    assert sum(i["downloaded_bytes"] for i in summary["images"]) == 0  # no .deb, no wheel
    requests = registry.requests(mark)
    blob_gets = {r.path.rsplit("/", 1)[1] for r in requests if r.method == "GET" and "/blobs/" in r.path}
    assert not blob_gets & registry_layers(registry, first)  # not one layer of the family was downloaded
    uploads = [r.path for r in requests if r.method == "POST" and r.path.endswith("/blobs/uploads/") and not r.query]
    # svc-forms' new layer and config, and its two SBOMs; the layer cache's new index
    assert sorted(p.split("/")[3] for p in uploads) == ["lamina-cache"] + ["svc-forms"] * 4, uploads
    assert "warning" not in result.stderr, result.stderr

    change(root_a)
    expected = summary_of(build(root_a, tmp_path / "store-a", "--locked", "--registry", registry.host,
                                "--owner", owner, "--output", "oci:build/after"))
    assert digests(summary) == digests(expected)
    assert {p["digest"] for p in summary["pushed"]} == set(digests(expected).values())

    # the seed's Step 2: an ML service built on the published base-ml, on a third machine
    root_c = copy_example(tmp_path / "c" / "tax-agent")
    main = root_c / "apps" / "svc_classifier" / "main.py"
    main.write_text(main.read_text() + "\n# changed\n")
    mark = registry.mark()
    step2 = summary_of(build(root_c, tmp_path / "store-c", "svc-classifier", "--published-bases", "--locked",
                             *push_args(registry, owner)))
    assert {i["name"]: i["built_layers"] for i in step2["images"]} == {
        "python": 0, "base-runtime": 0, "base-ml": 0, "svc-classifier": 1}
    assert sum(i["downloaded_bytes"] for i in step2["images"]) == 0
    assert [p["target"].rsplit("/", 1)[1] for p in step2["pushed"]] == ["svc-classifier:1.0.0"]
    blob_gets = {r.path.rsplit("/", 1)[1] for r in registry.requests(mark) if r.method == "GET" and "/blobs/" in r.path}
    assert not blob_gets & registry_layers(registry, first)


# -- services on published bases (the seed's Step 2) --------------------------------------------------------


def test_an_image_on_a_published_base_builds_only_its_own_layers(tmp_path, registry):
    owner = unique_repo("step2")
    root_a = tmp_path / "a" / "project"
    root_a.mkdir(parents=True)
    make_hello_project(root_a)
    base = summary_of(build(root_a, tmp_path / "store-a", "busybox", *push_args(registry, owner)))
    root_b = fresh_copy(tmp_path, "b")
    mark = registry.mark()
    summary = summary_of(build(root_b, tmp_path / "store-b", "hello", "--published-bases", *push_args(registry, owner)))
    assert {i["name"]: i["built_layers"] for i in summary["images"]} == {"busybox": 0, "hello": 1}
    assert [p["target"].rsplit("/", 1)[1] for p in summary["pushed"]] == ["hello:1.0"]  # the base is not pushed again
    busybox = next(i for i in summary["images"] if i["name"] == "busybox")
    assert busybox["digest"] == base["pushed"][0]["digest"]
    requests = registry.requests(mark)
    blob_gets = {r.path.rsplit("/", 1)[1] for r in requests if r.method == "GET" and "/blobs/" in r.path}
    assert not blob_gets & registry_layers(registry, base)
    assert [r for r in requests if r.method == "POST" and "mount=" in r.query]  # its layer mounted into hello


def test_a_base_that_is_not_published_is_named_with_the_command_that_publishes_it(tmp_path, registry):
    root = fresh_copy(tmp_path, "b")
    owner = unique_repo("nobase")
    result = build(root, tmp_path / "store", "hello", "--published-bases", *push_args(registry, owner), check=False)
    assert result.returncode == 4
    assert f"base image {registry.host}/{owner}/busybox:1.0 not found" in result.stderr
    assert "lamina build busybox --push" in result.stderr
    assert not (tmp_path / "store" / "keys" / "layer").exists() or not any((tmp_path / "store" / "keys" / "layer").iterdir())


def test_a_base_changed_since_it_was_published_is_refused(tmp_path, registry, pushed):
    _, owner, _ = pushed
    root = fresh_copy(tmp_path, "b")
    (root / "rootfs" / "etc").mkdir()
    (root / "rootfs" / "etc" / "motd").write_text("changed\n")
    result = build(root, tmp_path / "store", "hello", "--published-bases", *push_args(registry, owner), check=False)
    assert result.returncode == 4
    assert "'busybox' as lamina.toml and lamina.lock describe it is not what" in result.stderr


def test_from_naming_an_unpublished_project_image_says_how_to_publish_it(tmp_path, registry):
    owner = unique_repo("from")
    root = tmp_path / "project"
    root.mkdir()
    make_hello_project(root, base=f"{registry.host}/{owner}/busybox:1.0",
                       extra=f'registry = "{registry.host}"\nowner = "{owner}"')
    result = build(root, tmp_path / "store", "hello", check=False)
    assert result.returncode == 4
    assert f"base image {registry.host}/{owner}/busybox:1.0 of 'hello' not found" in result.stderr
    assert "the project's 'busybox': publish it first with `lamina build busybox --push`" in result.stderr


def test_a_blob_that_does_not_hold_the_promised_content_is_caught_when_downloaded(tmp_path, registry, pushed):
    """An entry whose pairing is vouched for by a forged image (someone with push access) passes the
    registry-side check; a build that downloads the blob decompresses it and refuses it."""
    import io

    from lamina.oci import mediatypes as mt
    from lamina.oci.cache import CacheIndex, read_index, write_index
    from lamina.oci.model import Descriptor, Document, build_manifest
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries

    root_a, owner, _ = pushed
    root_b = fresh_copy(tmp_path, "b")
    build(root_b, tmp_path / "store-b", *push_args(registry, owner))  # the cache knows the changed app layer
    ref = Reference.parse(f"{registry.host}/{owner}/lamina-cache:layers")
    registries = Registries()
    try:
        entries = read_index(ref, registries, print).layers
        busybox = next(e for e in entries.values() if e.repository.endswith("/busybox"))
        app = next(e for e in entries.values() if e.repository.endswith("/hello") and e.digest != busybox.digest)
        client = registries.client(registry.host)
        config = Document.of({"architecture": "amd64", "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": [app.diff_id]}}, mt.OCI_CONFIG)
        client.push_blobs(f"{owner}/busybox", [(config.digest, config.size, lambda: io.BytesIO(config.data))])
        forged = build_manifest(config, [Descriptor(busybox.media_type, busybox.digest, busybox.size)])
        client.put_manifest(f"{owner}/busybox", forged.digest, forged.data, forged.media_type)
        poisoned = dataclasses.replace(app, digest=busybox.digest, size=busybox.size,
                                       repository=busybox.repository, image=forged.digest)
        write_index(ref, [poisoned], registries, print, previous=CacheIndex(entries))
    finally:
        registries.close()
    root_c = fresh_copy(tmp_path, "c")
    toml = root_c / "lamina.toml"
    toml.write_text(toml.read_text().replace("[project]\n", f"[project]\nregistry = \"{registry.host}\"\n"
                                                           f"owner = \"{owner}\"\ncache = \"{ref}\"\n"))
    result = build(root_c, tmp_path / "store-c", "--output", "oci:build/oci")
    summary = summary_of(result)
    assert "decompresses to" in result.stderr and "not the promised" in result.stderr
    assert summary["cache"]["rejected"] == [busybox.digest]
    assert built_layers(summary) == 1
    assert digests(summary) == expected_after_change(tmp_path, root_a, registry, owner)


def test_pushing_nothing_new_leaves_the_cache_index_alone(tmp_path, registry, pushed):
    root_a, owner, _ = pushed
    mark = registry.mark()
    summary = summary_of(build(root_a, tmp_path / "store-a", *push_args(registry, owner)))
    assert built_layers(summary) == 0
    cache_requests = [r for r in registry.requests(mark) if "/lamina-cache/" in r.path]
    assert cache_requests and all(r.method in ("GET", "HEAD") for r in cache_requests)


def test_a_push_reads_its_cache_index_once_ahead_of_the_build(tmp_path, registry, pushed):
    """A push reads its own cache's index in the background while the family plans (it reads it anyway,
    to update it): one GET of the index and one of its blob, and what was read is what the push merges."""
    from lamina.oci.cache import RemoteLayers, read_index
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries

    root_a, owner, first = pushed
    ref = Reference.parse(f"{registry.host}/{owner}/lamina-cache:layers")
    registries = Registries()
    try:
        before = read_index(ref, registries, print)
        remote = RemoteLayers([ref], registries, store=None, trusted=[f"{registry.host}/{owner}/hello"])  # type: ignore[arg-type]
        mark = registry.mark()
        remote.read_ahead().join(timeout=30)
        assert remote.indexes[str(ref)].digest == before.digest and remote.entries()
        assert len(registry.requests(mark)) == 3  # HEAD and GET of the index's manifest, GET of its blob
        mark = registry.mark()
        remote.entries()
        assert registry.requests(mark) == []  # read once
    finally:
        registries.close()

    mark = registry.mark()
    summary = summary_of(build(fresh_copy(tmp_path, "b"), tmp_path / "store-b", *push_args(registry, owner)))
    assert built_layers(summary) == 1 and summary["cache"]["hits"] == 1
    index_reads = [r for r in registry.requests(mark)
                   if r.method == "GET" and "/lamina-cache/" in r.path]
    assert len(index_reads) == 2, index_reads  # its manifest and its blob, once each
    fresh = Registries()
    try:
        after = read_index(ref, fresh, print)
    finally:
        fresh.close()
    assert set(before.layers) < set(after.layers)  # the push merged its new layer into what it read


def test_a_read_ahead_that_fails_is_read_again_where_it_is_needed(tmp_path, registry, pushed):
    """A read ahead that fails (here: its client closed under it) leaves nothing half-read: the first
    layer that needs the index reads it then."""
    from lamina.oci.cache import RemoteLayers
    from lamina.oci.reference import Reference
    from lamina.oci.remote import Registries

    root_a, owner, first = pushed
    ref = Reference.parse(f"{registry.host}/{owner}/lamina-cache:layers")
    closed = Registries()
    closed.client(registry.host).close()
    remote = RemoteLayers([ref], closed, store=None, trusted=[f"{registry.host}/{owner}/hello"])  # type: ignore[arg-type]
    remote.read_ahead().join(timeout=30)
    assert remote._entries is None  # nothing kept
    remote.registries = Registries()
    try:
        assert remote.entries()  # read now, whole
    finally:
        remote.registries.close()


def test_the_cache_index_goes_up_beside_the_images_and_is_tagged_after_them(tmp_path, registry, pushed):
    """The new index's blob is uploaded while the images are pushed; the cache's tag moves to it only
    after every image's manifest is in (a push that fails leaves the cache as it was)."""
    root_a, owner, first = pushed
    mark = registry.mark()
    summary = summary_of(build(fresh_copy(tmp_path, "b"), tmp_path / "store-b", *push_args(registry, owner)))
    assert built_layers(summary) == 1
    puts = [r for r in registry.requests(mark) if r.method == "PUT"]
    manifests = [i for i, r in enumerate(puts) if "/manifests/" in r.path]
    cache_tag = [i for i in manifests if "/lamina-cache/manifests/" in puts[i].path]
    images = [i for i in manifests if "/lamina-cache/" not in puts[i].path
              and not puts[i].path.rsplit("/", 1)[1].startswith("sha256")]  # not the SBOMs attached after
    assert len(cache_tag) == 1 and images and cache_tag[0] > max(images), [r.path for r in puts]
    assert any("/lamina-cache/blobs/uploads/" in r.path for r in puts[:cache_tag[0]])
