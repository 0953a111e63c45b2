"""SBOMs and provenance attached as OCI referrers, then `verify`: accepts the image as built, rejects any change.

Uses a tiny real image in the loopback registry (distribution 2.8: no referrers API, so the tag schema
fallback) with an inventory recorded by hand, as the build records one.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from conftest import require_tool
from lamina.inventory import Component, Inventory, Placed, save_inventory
from lamina.oci.layout import write_layout
from lamina.oci.referrers import (
    Blob,
    layout_referrers,
    list_referrers,
    make_artifact,
    push_artifact,
    read_layout_artifact,
    referrers_tag,
)
from lamina.oci.registry.client import RegistryClient
from lamina.oci.store import BlobStore
from lamina.supply import dsse
from lamina.supply.attach import (
    ATTESTATION_TYPE,
    CYCLONEDX_TYPE,
    SPDX_TYPE,
    attach_to_oci_layout,
    attach_to_registry,
    recorded_documents,
)
from lamina.supply.keys import PrivateKey, PublicKey, keygen
from lamina.supply.provenance import BuildFacts
from lamina.supply.sign import sign_image
from lamina.supply.verify import EXIT_FAILED, EXIT_OK, verify_image
from registry_servers import unique_repo
from supply_images import push_tiny, tiny_image

PASSWORD = b"pw"
FACTS = BuildFacts(config=("lamina.toml", "1" * 64), lock=("lamina.lock", "2" * 64),
                   source="https://git.example/acme/mono.git", revision="3" * 40)


def record_inventory(store: BlobStore, digest: str) -> Inventory:
    deb = Component("deb", "libc6", "2.36-9+deb12u9", "amd64", "c" * 64, 2_800_000, "pool/main/g/glibc/libc6.deb",
                    "https://deb.debian.org/debian/pool/main/g/glibc/libc6.deb", "glibc")
    wheel = Component("python", "idna", "3.10", "", "d" * 64, 70_000, "idna-3.10-py3-none-any.whl",
                      "https://files.pythonhosted.org/packages/idna-3.10-py3-none-any.whl")
    layer = "sha256:" + "9" * 64
    inventory = Inventory("hello", "linux/amd64", (Placed(deb, layer, layer, "hello"), Placed(wheel, layer, layer, "hello")),
                          digest=digest, extra={"distro": "bookworm"})
    save_inventory(store, inventory)
    return inventory


@pytest.fixture
def key(tmp_path):
    private, public = keygen(tmp_path / "k", PASSWORD)
    return PrivateKey.load(private, PASSWORD), PublicKey.load(public)


@pytest.fixture
def signed(registry, tmp_path, key):
    """A pushed image with SBOMs and signed provenance attached, and signed: (client, ref, digest, store)."""
    store = BlobStore(tmp_path / "store")
    ref, image = push_tiny(store, registry.host, unique_repo("verify"))
    record_inventory(store, image.digest)
    client = RegistryClient(registry.host, insecure=True)
    docs = recorded_documents(store, image.digest, FACTS, key[0], reference=f"{ref.registry}/{ref.repository}")
    attach_to_registry(client, ref.repository, docs)
    sign_image(client, ref, image.digest, key[0])
    yield client, ref, image.digest, store, docs
    client.close()


pytestmark = pytest.mark.registry


def test_verify_accepts_the_image_as_built(signed, key):
    client, ref, digest, _, _ = signed
    report = verify_image(client, ref, key[1])
    assert report.exit_code == EXIT_OK, [c.line() for c in report.checks]
    assert [c.what for c in report.checks] == ["signature", "provenance", "SPDX SBOM", "CycloneDX SBOM"]
    # the loopback registry has no referrers API: the referrers are in the tag schema's index
    index = json.loads(client.get_manifest(ref.repository, referrers_tag(digest)).data)
    assert sorted(e["artifactType"] for e in index["manifests"]) == sorted([SPDX_TYPE, CYCLONEDX_TYPE, ATTESTATION_TYPE])


def test_same_image_same_documents(signed, key):
    _, ref, digest, store, docs = signed
    again = recorded_documents(store, digest, FACTS, key[0], reference=f"{ref.registry}/{ref.repository}")
    assert (again.spdx, again.cyclonedx, again.statement, again.envelope) == \
        (docs.spdx, docs.cyclonedx, docs.statement, docs.envelope)


def test_a_changed_sbom_fails_verify(signed, key):
    client, ref, digest, _, docs = signed
    spdx = json.loads(docs.spdx)
    next(p for p in spdx["packages"] if p["name"] == "idna")["versionInfo"] = "3.7"
    subject = {"mediaType": docs.source.manifest_media_type, "digest": digest, "size": docs.source.manifest_size}
    forged = json.dumps(spdx).encode()
    push_artifact(client, ref.repository, make_artifact(subject, SPDX_TYPE, [Blob(forged, SPDX_TYPE)]),
                  replace_type=True)
    report = verify_image(client, ref, key[1])
    assert report.exit_code == EXIT_FAILED
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.what == "SPDX SBOM" and "not the one the signed provenance lists" in failed.message


def test_a_changed_attestation_fails_verify(signed, key):
    client, ref, digest, _, docs = signed
    envelope = json.loads(docs.envelope)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["resolvedDependencies"].pop()
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    subject = {"mediaType": docs.source.manifest_media_type, "digest": digest, "size": docs.source.manifest_size}
    layer = Blob(json.dumps(envelope).encode(), dsse.MEDIA_TYPE)
    push_artifact(client, ref.repository, make_artifact(subject, ATTESTATION_TYPE, [layer]), replace_type=True)
    report = verify_image(client, ref, key[1])
    assert report.exit_code == EXIT_FAILED
    failed = {c.what: c.message for c in report.checks if not c.ok}
    assert "does not verify" in failed["provenance"]


def test_another_key_fails_every_check(signed, tmp_path):
    client, ref, _, _, _ = signed
    other = PublicKey.load(keygen(tmp_path / "other", PASSWORD)[1])
    report = verify_image(client, ref, other)
    assert report.exit_code == EXIT_FAILED
    assert not any(c.ok for c in report.checks)


def test_an_image_without_attachments_fails(registry, tmp_path, key):
    store = BlobStore(tmp_path / "store")
    ref, image = push_tiny(store, registry.host, unique_repo("bare"), text="bare")
    with RegistryClient(registry.host, insecure=True) as client:
        sign_image(client, ref, image.digest, key[0])
        report = verify_image(client, ref, key[1])
        assert report.exit_code == EXIT_FAILED
        assert {c.what: c.ok for c in report.checks} == {"signature": True, "provenance": False,
                                                         "SPDX SBOM": False, "CycloneDX SBOM": False}
        assert list_referrers(client, ref.repository, image.digest) == []


def test_documents_go_into_the_oci_layout_as_referrers(tmp_path, key, oci_schemas):
    store = BlobStore(tmp_path / "store")
    image = tiny_image(store)
    record_inventory(store, image.digest)
    layout = tmp_path / "oci"
    write_layout(layout, [("hello:1", image)], store)
    docs = recorded_documents(store, image.digest, FACTS, key[0])
    attach_to_oci_layout(layout, [docs])
    attach_to_oci_layout(layout, [docs])  # again: nothing doubled
    found = layout_referrers(layout, image.digest)
    assert sorted(e["artifactType"] for e in found) == sorted([SPDX_TYPE, CYCLONEDX_TYPE, ATTESTATION_TYPE])
    index = json.loads((layout / "index.json").read_bytes())
    oci_schemas.validate("index", index)
    for entry in found:
        artifact = read_layout_artifact(layout, entry["digest"])
        oci_schemas.validate("manifest", artifact.manifest.data)
    spdx = read_layout_artifact(layout, next(e for e in found if e["artifactType"] == SPDX_TYPE)["digest"])
    assert spdx.layer(SPDX_TYPE) == docs.spdx
    # a rebuilt image under the same name: its old referrers leave with it
    rebuilt = tiny_image(store, "changed")
    record_inventory(store, rebuilt.digest)
    write_layout(layout, [("hello:1", rebuilt)], store)
    attach_to_oci_layout(layout, [recorded_documents(store, rebuilt.digest, FACTS)])
    assert layout_referrers(layout, image.digest) == []
    assert len(layout_referrers(layout, rebuilt.digest)) == 2  # unsigned: SBOMs only
    require_tool("skopeo")
    out = subprocess.run(["skopeo", "inspect", f"oci:{layout}:hello:1"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["Digest"] == rebuilt.digest, out.stderr


def test_an_index_is_verified_with_each_of_its_platform_images(registry, tmp_path, key):
    from lamina.oci import mediatypes as mt
    from lamina.oci.model import Platform, build_index
    from lamina.oci.reference import Reference

    store = BlobStore(tmp_path / "store")
    repo = unique_repo("index")
    _, amd = push_tiny(store, registry.host, repo, tag="amd64", text="amd64")
    _, arm = push_tiny(store, registry.host, repo, tag="arm64", text="arm64")
    index = build_index([amd.manifest.descriptor(platform=Platform("linux", "amd64")),
                         arm.manifest.descriptor(platform=Platform("linux", "arm64"))])
    with RegistryClient(registry.host, insecure=True) as client:
        client.put_manifest(repo, "1", index.data, mt.OCI_INDEX)
        ref = Reference.parse(f"{registry.host}/{repo}:1")
        for image in (amd, arm):
            record_inventory(store, image.digest)
            attach_to_registry(client, repo, recorded_documents(store, image.digest, FACTS, key[0]))
        sign_image(client, ref, index.digest, key[0])
        report = verify_image(client, ref, key[1])
    assert report.exit_code == EXIT_OK, [c.line() for c in report.checks]
    assert [(c.what, c.digest) for c in report.checks] == [("signature", index.digest)] + [
        (what, d) for d in (amd.digest, arm.digest) for what in ("signature", "provenance", "SPDX SBOM", "CycloneDX SBOM")]


def test_attaching_again_sends_nothing_but_a_look(signed, registry):
    client, ref, _, _, docs = signed
    mark = registry.mark()
    assert attach_to_registry(client, ref.repository, docs) == []
    assert [(r.method, r.status) for r in registry.requests(mark)] == [("GET", 404), ("GET", 200)]  # API, tag index
