"""cosign-compatible image signatures: simple-signing payloads under the ``sha256-<hex>.sig`` tag.

cosign's key-based scheme, which skopeo/podman (``sigstoreSigned`` policies with
``use-sigstore-attachments``), Kyverno and Harbor check: for a manifest ``sha256:<hex>`` in repository
``R``, the tag ``sha256-<hex>.sig`` of ``R`` holds an OCI image manifest whose layers are signatures.
Each layer is a simple-signing payload (media type ``application/vnd.dev.cosign.simplesigning.v1+json``)
naming the repository and the manifest digest, and its annotation ``dev.cosignproject.cosign/signature``
carries the base64 ECDSA signature of exactly those payload bytes. A new signature is appended to the
layers already there (several keys may sign one image), never replacing them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lamina.errors import LaminaError, NotFoundError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import hex_of
from lamina.oci.model import Document
from lamina.oci.reference import Reference
from lamina.oci.referrers import Blob
from lamina.oci.registry.client import RegistryClient
from lamina.supply.errors import VerificationError
from lamina.supply.keys import PrivateKey, PublicKey

SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PAYLOAD_TYPE = "cosign container image signature"


def signature_tag(digest: str) -> str:
    """cosign's tag for the signatures of ``digest``: ``sha256-<hex>.sig``."""
    return f"sha256-{hex_of(digest)}.sig"


def payload(docker_reference: str, digest: str) -> bytes:
    """The simple-signing payload cosign writes (same keys, same order, ``optional`` null)."""
    obj = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": None,
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def repository_name(ref: Reference) -> str:
    """``registry/repository``: the identity cosign signs (no tag: one signature serves every tag)."""
    return f"{ref.registry}/{ref.repository}"


@dataclass(frozen=True)
class Signed:
    """One manifest signed: its digest and whether a new signature was added (False: already signed)."""

    digest: str
    added: bool


def manifests_to_sign(client: RegistryClient, repo: str, digest: str) -> list[str]:
    """``digest``, and when it is an index every platform manifest in it (each is pulled on its own)."""
    fetched = client.get_manifest(repo, digest)
    if fetched.media_type not in mt.INDEX_TYPES:
        return [digest]
    children = [m["digest"] for m in json.loads(fetched.data).get("manifests", []) if m.get("platform")]
    return [digest, *children]


def sign_image(client: RegistryClient, ref: Reference, digest: str, key: PrivateKey) -> list[Signed]:
    """Sign the manifest ``digest`` in ``ref``'s repository (and, for an index, each platform manifest)."""
    identity = repository_name(ref)
    return [sign_manifest(client, ref.repository, d, identity, key) for d in manifests_to_sign(client, ref.repository, digest)]


def sign_manifest(client: RegistryClient, repo: str, digest: str, identity: str, key: PrivateKey) -> Signed:
    """Append a signature of ``digest`` to its ``.sig`` manifest (created if absent)."""
    body = payload(identity, digest)
    signature = base64.b64encode(key.sign(body)).decode()
    existing = _signature_layers(client, repo, digest)
    public = key.public
    for layer in existing:
        if layer.get("digest") == Blob(body, SIMPLE_SIGNING_TYPE).digest and _layer_verifies(layer, body, public):
            return Signed(digest, False)
    new = Blob(body, SIMPLE_SIGNING_TYPE, {SIGNATURE_ANNOTATION: signature})
    layers = [*existing, new.descriptor()]
    config = _config(layers)
    client.push_blobs(repo, [(b.digest, len(b.data), _opener(b.data)) for b in (config, new)])
    manifest = Document.of(
        {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config.descriptor(), "layers": layers},
        mt.OCI_MANIFEST,
    )
    client.put_manifest(repo, signature_tag(digest), manifest.data, mt.OCI_MANIFEST)
    return Signed(digest, True)


def _config(layers: Sequence[dict[str, Any]]) -> Blob:
    """The image config cosign and containers/image write for a signature manifest."""
    obj = {
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
    }
    return Blob(json.dumps(obj, separators=(",", ":")).encode(), mt.OCI_CONFIG)


def _opener(data: bytes):  # noqa: ANN202
    import io

    return lambda: io.BytesIO(data)


def _signature_layers(client: RegistryClient, repo: str, digest: str) -> list[dict[str, Any]]:
    try:
        fetched = client.get_manifest(repo, signature_tag(digest), accept=f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}")
    except NotFoundError:
        return []
    try:
        return list(json.loads(fetched.data).get("layers", []))
    except (ValueError, AttributeError):
        return []


def _layer_verifies(layer: dict[str, Any], body: bytes, key: PublicKey) -> bool:
    signature = (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, "")
    try:
        return key.verifies(base64.b64decode(signature), body)
    except ValueError:
        return False


# --- verifying ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome for one manifest: the signatures that verified with the key, and why others did not."""

    digest: str
    valid: int
    rejected: tuple[str, ...]


def verify_signatures(client: RegistryClient, ref: Reference, digest: str, key: PublicKey) -> SignatureCheck:
    """Check ``digest``'s cosign signatures with ``key``; raises :class:`VerificationError` unless one holds.

    A signature holds when the payload's signature verifies with the key, the payload names this
    digest, and its identity is this repository (with or without a tag, as cosign and skopeo write it).
    """
    layers = _signature_layers(client, ref.repository, digest)
    where = f"{repository_name(ref)}@{digest}"
    if not layers:
        raise VerificationError(f"{where} is not signed (no {signature_tag(digest)} tag)",
                                hint="sign it with `lamina sign IMAGE --key KEY`")
    valid, rejected = 0, []
    for layer in layers:
        why = _check_layer(client, ref, digest, layer, key)
        if why is None:
            valid += 1
        else:
            rejected.append(why)
    if not valid:
        raise VerificationError(f"no signature of {where} verifies with the key: {'; '.join(rejected)}",
                                hint="check that --key is the public half of the key that signed it")
    return SignatureCheck(digest, valid, tuple(rejected))


def _check_layer(client: RegistryClient, ref: Reference, digest: str, layer: dict[str, Any], key: PublicKey) -> str | None:
    if layer.get("mediaType") != SIMPLE_SIGNING_TYPE:
        return f"layer {layer.get('digest')} is a {layer.get('mediaType')}, not a simple-signing payload"
    body = client.get_blob(ref.repository, layer["digest"])
    if not _layer_verifies(layer, body, key):
        return f"signature over {layer['digest'][:19]} does not verify with this key"
    try:
        critical = json.loads(body)["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        return f"payload {layer['digest'][:19]} is not a simple-signing document"
    if kind != PAYLOAD_TYPE:
        return f"payload {layer['digest'][:19]} has type {kind!r}"
    if signed_digest != digest:
        return f"signature is for {signed_digest}, not this manifest"
    if _repository_of(identity) != repository_name(ref):
        return f"signature names {identity}, not {repository_name(ref)}"
    return None


def _repository_of(docker_reference: str) -> str:
    try:
        ref = Reference.parse(docker_reference)
    except LaminaError:
        return docker_reference
    return repository_name(ref)
