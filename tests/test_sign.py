"""cosign-compatible signatures, checked against the real other side: skopeo 1.9's sigstore support.

skopeo verifies lamina's signatures under a policy that requires them (``sigstoreSigned`` + ``keyPath``,
registries.d ``use-sigstore-attachments``), and signs with lamina's encrypted key so that lamina verifies
skopeo's signatures. Keys, policy and registries.d live in the test's tmp directory.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lamina.oci.reference import Reference
from lamina.oci.registry.client import RegistryClient
from lamina.oci.store import BlobStore
from lamina.supply.errors import KeyFileError, VerificationError
from lamina.supply.keys import PrivateKey, PublicKey, keygen
from lamina.supply.sign import (
    SIGNATURE_ANNOTATION,

    payload,
    sign_image,
    signature_tag,
    verify_signatures,
)
from registry_servers import unique_repo
from sigstore_skopeo import skopeo_command
from supply_images import push_tiny

PASSWORD = b"correct horse"


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    return keygen(tmp_path / "keys" / "cosign", PASSWORD)


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def client_for(registry) -> RegistryClient:
    return RegistryClient(registry.host, insecure=True)


# --- keys ----------------------------------------------------------------------------------------


def test_keygen_writes_cosign_format_encrypted_at_rest(keys):
    private, public = keys
    text = private.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert private.stat().st_mode & 0o777 == 0o600
    assert PASSWORD.decode() not in text and "PRIVATE KEY-----\nMIG" not in text  # no plain PKCS#8 DER inside
    key = PrivateKey.load(private, PASSWORD)
    assert key.public.pem() == PublicKey.load(public).pem()
    with pytest.raises(KeyFileError, match="wrong password"):
        PrivateKey.load(private, b"wrong")


def test_signatures_are_deterministic_and_verify(keys):
    key = PrivateKey.load(keys[0], PASSWORD)
    body = payload("127.0.0.1:5000/x", "sha256:" + "0" * 64)
    assert key.sign(body) == key.sign(body)
    assert key.public.verifies(key.sign(body), body)
    assert not key.public.verifies(key.sign(body), body + b" ")


# --- skopeo checks lamina's signatures -------------------------------------------------------------


def skopeo_config(tmp_path: Path, registry, repo: str, public: Path) -> list[str]:
    """Global skopeo flags: a policy requiring a sigstore signature by ``public`` for ``repo``."""
    policy = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                f"{registry.host}/{repo}": [
                    {"type": "sigstoreSigned", "keyPath": str(public), "signedIdentity": {"type": "matchRepository"}}
                ]
            },
            "oci": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }
    (tmp_path / "policy.json").write_text(json.dumps(policy))
    registries_d = tmp_path / "registries.d"
    registries_d.mkdir(exist_ok=True)
    (registries_d / "lamina-test.yaml").write_text(f"docker:\n  {registry.host}:\n    use-sigstore-attachments: true\n")
    return ["--policy", str(tmp_path / "policy.json"), "--registries.d", str(registries_d)]


@pytest.fixture(scope="session")
def skopeo() -> list[str]:
    return skopeo_command()


def skopeo_copy(skopeo: list[str], flags: list[str], src: str, dest: str, *extra: str) -> subprocess.CompletedProcess:
    """``skopeo copy`` (the policy is checked on the source; an OCI layout cannot hold the signatures)."""
    if dest.startswith("oci:"):
        extra = ("--remove-signatures", *extra)
    return subprocess.run([*skopeo, *flags, "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                           *extra, src, dest], capture_output=True, text=True)


@pytest.mark.registry
def test_skopeo_copies_a_lamina_signed_image_under_a_policy_requiring_the_signature(
        registry, store, keys, tmp_path, skopeo):
    repo = unique_repo("signed")
    ref, image = push_tiny(store, registry.host, repo, text="signed by lamina")
    with client_for(registry) as client:
        signed = sign_image(client, ref, image.digest, PrivateKey.load(keys[0], PASSWORD))
        assert [s.added for s in signed] == [True]
        assert not sign_image(client, ref, image.digest, PrivateKey.load(keys[0], PASSWORD))[0].added  # idempotent
    flags = skopeo_config(tmp_path, registry, repo, keys[1])
    by_tag = skopeo_copy(skopeo, flags, f"docker://{ref}", f"oci:{tmp_path / 'out'}:x")
    assert by_tag.returncode == 0, by_tag.stderr
    by_digest = skopeo_copy(skopeo, flags, f"docker://{registry.host}/{repo}@{image.digest}", f"oci:{tmp_path / 'out2'}:x")
    assert by_digest.returncode == 0, by_digest.stderr

    other = keygen(tmp_path / "other" / "cosign", PASSWORD)
    wrong = skopeo_copy(skopeo, skopeo_config(tmp_path, registry, repo, other[1]), f"docker://{ref}", f"oci:{tmp_path / 'o3'}:x")
    assert wrong.returncode != 0
    assert "signature" in wrong.stderr.lower(), wrong.stderr


@pytest.mark.registry
def test_skopeo_refuses_an_image_lamina_did_not_sign(registry, store, keys, tmp_path, skopeo):
    repo = unique_repo("unsigned")
    ref, _ = push_tiny(store, registry.host, repo, text="nobody signed me")
    result = skopeo_copy(skopeo, skopeo_config(tmp_path, registry, repo, keys[1]), f"docker://{ref}", f"oci:{tmp_path / 'o'}:x")
    assert result.returncode != 0
    assert "signature" in result.stderr.lower(), result.stderr


@pytest.mark.registry
def test_a_second_signature_is_appended_not_replacing_the_first(registry, store, keys, tmp_path):
    repo = unique_repo("twice")
    ref, image = push_tiny(store, registry.host, repo)
    other = keygen(tmp_path / "other" / "cosign", PASSWORD)
    with client_for(registry) as client:
        sign_image(client, ref, image.digest, PrivateKey.load(keys[0], PASSWORD))
        sign_image(client, ref, image.digest, PrivateKey.load(other[0], PASSWORD))
        manifest = json.loads(client.get_manifest(repo, signature_tag(image.digest)).data)
        assert len(manifest["layers"]) == 2
        assert all(SIGNATURE_ANNOTATION in layer["annotations"] for layer in manifest["layers"])
        for public in (keys[1], other[1]):
            assert verify_signatures(client, ref, image.digest, PublicKey.load(public)).valid == 1


# --- lamina checks skopeo's signatures -------------------------------------------------------------


@pytest.mark.registry
def test_lamina_verifies_what_skopeo_signed_with_a_lamina_key_and_rejects_tampering(registry, store, keys, tmp_path, skopeo):
    repo = unique_repo("byskopeo")
    source, _ = push_tiny(store, registry.host, unique_repo("src"), text="signed by skopeo")
    flags = skopeo_config(tmp_path, registry, repo, keys[1])
    (tmp_path / "pass").write_bytes(PASSWORD)
    dest = f"{registry.host}/{repo}:1"
    signed = skopeo_copy(skopeo, ["--registries.d", flags[3]], f"docker://{source}", f"docker://{dest}", "--preserve-digests",
                         "--sign-by-sigstore-private-key", str(keys[0]), "--sign-passphrase-file", str(tmp_path / "pass"))
    assert signed.returncode == 0, signed.stderr
    ref = Reference.parse(dest)
    public = PublicKey.load(keys[1])
    with client_for(registry) as client:
        digest = client.head_manifest(repo, "1")[0]
        assert verify_signatures(client, ref, digest, public).valid == 1
        with pytest.raises(VerificationError, match="does not verify"):
            verify_signatures(client, ref, digest, PublicKey.load(keygen(tmp_path / "k2" / "c", PASSWORD)[1]))
        # tamper: the same signature annotation over a payload naming another digest
        sig_manifest = json.loads(client.get_manifest(repo, signature_tag(digest)).data)
        layer = sig_manifest["layers"][0]
        body = json.loads(client.get_blob(repo, layer["digest"]))
        body["critical"]["image"]["docker-manifest-digest"] = "sha256:" + "1" * 64
        _replace_payload(client, repo, digest, sig_manifest, json.dumps(body).encode())
        with pytest.raises(VerificationError, match="does not verify"):
            verify_signatures(client, ref, digest, public)


def _replace_payload(client: RegistryClient, repo: str, digest: str, manifest: dict, body: bytes) -> None:
    import io

    from lamina.oci.digest import sha256_digest

    client.push_blobs(repo, [(sha256_digest(body), len(body), lambda: io.BytesIO(body))])
    manifest["layers"][0]["digest"], manifest["layers"][0]["size"] = sha256_digest(body), len(body)
    data = json.dumps(manifest).encode()
    client.put_manifest(repo, signature_tag(digest), data, manifest["mediaType"])


def test_lamina_reads_a_key_skopeo_generated(tmp_path, skopeo):
    (tmp_path / "pass").write_bytes(PASSWORD)
    result = subprocess.run([*skopeo, "generate-sigstore-key", "--output-prefix", str(tmp_path / "sk"),
                             "--passphrase-file", str(tmp_path / "pass")], capture_output=True, text=True)
    if result.returncode != 0 and "unknown command" in result.stderr:
        pytest.skip("this skopeo has no generate-sigstore-key (skopeo >= 1.10 has)")
    assert result.returncode == 0, result.stderr
    key = PrivateKey.load(tmp_path / "sk.private", PASSWORD)
    body = payload("127.0.0.1:5000/x", "sha256:" + "0" * 64)
    assert PublicKey.load(tmp_path / "sk.pub").verifies(key.sign(body), body)


@pytest.mark.registry
def test_an_index_and_each_of_its_platform_images_are_signed(registry, store, keys, tmp_path, skopeo):
    from lamina.oci import mediatypes as mt
    from lamina.oci.model import Platform, build_index
    from lamina.supply.verify import verify_image

    repo = unique_repo("multi")
    amd, amd_image = push_tiny(store, registry.host, repo, tag="amd64", text="amd64")
    _, arm_image = push_tiny(store, registry.host, repo, tag="arm64", text="arm64")
    index = build_index([amd_image.manifest.descriptor(platform=Platform("linux", "amd64")),
                         arm_image.manifest.descriptor(platform=Platform("linux", "arm64"))])
    with client_for(registry) as client:
        client.put_manifest(repo, "1", index.data, mt.OCI_INDEX)
        ref = Reference.parse(f"{registry.host}/{repo}:1")
        signed = sign_image(client, ref, index.digest, PrivateKey.load(keys[0], PASSWORD))
        assert [s.digest for s in signed] == [index.digest, amd_image.digest, arm_image.digest]
        report = verify_image(client, ref, PublicKey.load(keys[1]), attestations=False)
        assert [(c.what, c.digest, c.ok) for c in report.checks] == [
            ("signature", index.digest, True), ("signature", amd_image.digest, True),
            ("signature", arm_image.digest, True)]
    copied = skopeo_copy(skopeo, skopeo_config(tmp_path, registry, repo, keys[1]), f"docker://{ref}",
                         f"oci:{tmp_path / 'all'}:x", "--all")
    assert copied.returncode == 0, copied.stderr
