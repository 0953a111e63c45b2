"""OCI 1.1 artifacts that refer to an image (SBOMs, attestations): in a registry and in an OCI layout.

An artifact is an image manifest with an ``artifactType``, the empty config
(``application/vnd.oci.empty.v1+json``, the two bytes ``{}``), its content as layers, and a ``subject``
naming the image it is about. Registries with the referrers API (``GET /v2/<repo>/referrers/<digest>``)
index it themselves; for the others (distribution 2.8 has none) the spec's tag schema applies: the tag
``sha256-<hex>`` of the subject holds an index of its referrers, which the pusher updates
read-modify-write. There is no lock on a registry tag: two pushers attaching to the same subject at the
same moment can lose one entry (the spec accepts this; attaching again repairs it).

In an OCI layout the artifact's blobs go into ``blobs/``, and ``index.json`` gets an entry for the
artifact manifest (no ref name, its ``artifactType``); readers find referrers by their ``subject``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lamina.errors import LaminaError, NotFoundError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import hex_of, sha256_digest, verify
from lamina.oci.model import ANNOTATION_REF_NAME, Document
from lamina.oci.registry.client import RegistryClient
from lamina.oci.store import atomic_write

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


@dataclass(frozen=True)
class Blob:
    """One blob of an artifact: its exact bytes, media type and annotations."""

    data: bytes
    media_type: str
    annotations: Mapping[str, str] | None = None

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out


EMPTY_BLOB = Blob(EMPTY, EMPTY_MEDIA_TYPE)


@dataclass(frozen=True)
class Artifact:
    """An artifact manifest and every blob it names (config first)."""

    manifest: Document
    blobs: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def artifact_type(self) -> str:
        return str(self.manifest.json()["artifactType"])

    @property
    def subject(self) -> str:
        return str(self.manifest.json()["subject"]["digest"])

    def descriptor(self) -> dict[str, Any]:
        """The entry for a referrers index or a layout's index.json."""
        obj = self.manifest.json()
        out: dict[str, Any] = {
            "mediaType": mt.OCI_MANIFEST,
            "digest": self.digest,
            "size": self.manifest.size,
            "artifactType": obj["artifactType"],
        }
        if obj.get("annotations"):
            out["annotations"] = obj["annotations"]
        return out

    def layer(self, media_type: str) -> bytes:
        """The content of the first layer of ``media_type``."""
        for blob in self.blobs[1:]:
            if blob.media_type == media_type:
                return blob.data
        raise LaminaError(f"artifact {self.digest} has no {media_type} layer")


def make_artifact(
    subject: Mapping[str, Any],
    artifact_type: str,
    layers: Sequence[Blob],
    *,
    annotations: Mapping[str, str] | None = None,
) -> Artifact:
    """An artifact about ``subject`` (a descriptor: mediaType, digest, size) holding ``layers``.

    The bytes depend only on the arguments: the same content about the same image is the same digest.
    """
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_BLOB.descriptor(),
        "layers": [b.descriptor() for b in layers],
        "subject": {"mediaType": subject["mediaType"], "digest": subject["digest"], "size": int(subject["size"])},
    }
    if annotations:
        obj["annotations"] = dict(sorted(annotations.items()))
    return Artifact(Document.of(obj, mt.OCI_MANIFEST), (EMPTY_BLOB, *layers))


def referrers_tag(digest: str) -> str:
    """The tag schema's tag for the referrers of ``digest``: ``sha256-<hex>``."""
    return f"sha256-{hex_of(digest)}"


def _index(entries: Sequence[Mapping[str, Any]]) -> Document:
    return Document.of({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)}, mt.OCI_INDEX)


# --- registries ------------------------------------------------------------------------------------


def push_artifact(client: RegistryClient, repo: str, artifact: Artifact, *, replace_type: bool = False) -> str:
    """Push one artifact (see :func:`push_artifacts`); returns its manifest digest."""
    push_artifacts(client, repo, [artifact], replace_type=replace_type)
    return artifact.digest


def push_artifacts(client: RegistryClient, repo: str, artifacts: Sequence[Artifact], *,
                   replace_type: bool = False) -> list[str]:
    """Push ``artifacts``' blobs and manifests to ``repo`` and make each findable from its subject.

    What the subject's referrers already list is not sent again (an unchanged image costs one or two
    GETs). With ``replace_type``, earlier referrers of the same ``artifactType`` are dropped from the tag
    schema's index (a rebuilt SBOM replaces the old one); with the referrers API they stay listed, and
    readers take the newest. Returns the digests of the artifacts pushed.
    """
    pushed: list[str] = []
    by_subject: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        by_subject.setdefault(artifact.subject, []).append(artifact)
    for subject, group in by_subject.items():
        api = client.get_referrers(repo, subject)
        listed = json.loads(api.data).get("manifests", []) if api else _tag_index_entries(client, repo, subject)
        present = {e.get("digest") for e in listed}
        new = list({a.digest: a for a in group if a.digest not in present}.values())
        if not new:
            continue
        blobs = {b.digest: (b.digest, len(b.data), _opener(b.data)) for a in new for b in a.blobs}
        client.push_blobs(repo, list(blobs.values()))
        for artifact in new:
            client.put_manifest(repo, artifact.digest, artifact.manifest.data, mt.OCI_MANIFEST)
            pushed.append(artifact.digest)
        if api is None:
            _update_tag_index(client, repo, subject, listed, new, replace_type=replace_type)
    return pushed


def _opener(data: bytes):  # noqa: ANN202 - an Opener
    return lambda: io.BytesIO(data)


def _update_tag_index(client: RegistryClient, repo: str, subject: str, listed: Sequence[Mapping[str, Any]],
                      new: Sequence[Artifact], *, replace_type: bool) -> None:
    """Write the tag schema's index of ``subject``: what it listed, less what ``new`` replaces, plus ``new``."""
    types = {a.artifact_type for a in new} if replace_type else set()
    digests = {a.digest for a in new}
    kept = [e for e in listed if e.get("digest") not in digests and e.get("artifactType") not in types]
    index = _index([*kept, *(a.descriptor() for a in new)])
    client.put_manifest(repo, referrers_tag(subject), index.data, mt.OCI_INDEX)


def _tag_index_entries(client: RegistryClient, repo: str, subject: str) -> list[dict[str, Any]]:
    try:
        fetched = client.get_manifest(repo, referrers_tag(subject), accept=mt.OCI_INDEX)
    except NotFoundError:
        return []
    try:
        return list(json.loads(fetched.data).get("manifests", []))
    except (ValueError, AttributeError):
        return []  # not an index: the tag is overwritten with a proper one


def list_referrers(
    client: RegistryClient, repo: str, subject: str, *, artifact_type: str | None = None
) -> list[dict[str, Any]]:
    """Descriptors of the artifacts that refer to ``subject`` (referrers API, else the tag schema)."""
    fetched = client.get_referrers(repo, subject, artifact_type=artifact_type)
    entries = json.loads(fetched.data).get("manifests", []) if fetched else _tag_index_entries(client, repo, subject)
    return [e for e in entries if artifact_type is None or e.get("artifactType") == artifact_type]


def fetch_artifact(client: RegistryClient, repo: str, digest: str) -> Artifact:
    """An artifact manifest and its blobs from a registry, each verified against its digest."""
    fetched = client.get_manifest(repo, digest, accept=mt.OCI_MANIFEST)
    manifest = Document(fetched.data, mt.OCI_MANIFEST)
    obj = manifest.json()
    blobs = []
    for desc in [obj["config"], *obj.get("layers", [])]:
        data = EMPTY if desc["digest"] == EMPTY_BLOB.digest else client.get_blob(repo, desc["digest"])
        blobs.append(Blob(data, desc["mediaType"], desc.get("annotations")))
    return Artifact(manifest, tuple(blobs))


# --- OCI layouts -----------------------------------------------------------------------------------


def attach_to_layout(root: Path, artifacts: Sequence[Artifact], *, replace_type: bool = True) -> None:
    """Write ``artifacts`` into the layout at ``root`` and list them in its ``index.json``.

    Referrers whose subject the layout no longer holds (an image rebuilt under the same name) are
    dropped, and with ``replace_type`` so are earlier referrers of the same subject and type.
    """
    blobs = root / "blobs" / "sha256"
    if not (root / "index.json").is_file():
        raise LaminaError(f"{root} is not an OCI layout (no index.json)", hint="write the image there first")
    for artifact in artifacts:
        for blob in (*artifact.blobs, Blob(artifact.manifest.data, mt.OCI_MANIFEST)):
            dest = blobs / hex_of(blob.digest)
            if not dest.exists():
                atomic_write(dest, blob.data)
    index = json.loads((root / "index.json").read_bytes())
    entries: list[dict[str, Any]] = list(index.get("manifests", []))
    new = {a.digest for a in artifacts}
    replaced = {(a.subject, a.artifact_type) for a in artifacts} if replace_type else set()
    images = [e for e in entries if "artifactType" not in e or _ref_name(e)]
    held = _held_digests(root, images)
    kept = []
    for entry in entries:
        if entry in images:
            kept.append(entry)
            continue
        subject = _subject_of(root, entry["digest"])
        if entry["digest"] in new or subject not in held or (subject, entry.get("artifactType")) in replaced:
            continue
        kept.append(entry)
    index["manifests"] = kept + [a.descriptor() for a in artifacts]
    atomic_write(root / "index.json", json.dumps(index, separators=(",", ":")).encode())


def layout_referrers(root: Path, subject: str, *, artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Descriptors of the artifacts in the layout at ``root`` that refer to ``subject``."""
    index = json.loads((root / "index.json").read_bytes())
    return [
        e for e in index.get("manifests", [])
        if "artifactType" in e and (artifact_type is None or e["artifactType"] == artifact_type)
        and _subject_of(root, e["digest"]) == subject
    ]


def read_layout_artifact(root: Path, digest: str) -> Artifact:
    """An artifact of the layout at ``root``, every blob verified."""
    manifest = Document(_read_blob(root, digest), mt.OCI_MANIFEST)
    obj = manifest.json()
    blobs = [
        Blob(_read_blob(root, d["digest"]), d["mediaType"], d.get("annotations"))
        for d in [obj["config"], *obj.get("layers", [])]
    ]
    return Artifact(manifest, tuple(blobs))


def _read_blob(root: Path, digest: str) -> bytes:
    path = root / "blobs" / "sha256" / hex_of(digest)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LaminaError(f"{root} is missing blob {digest}", hint="the layout is incomplete; write it again") from None
    verify(data, digest, what=f"blob {digest} of {root}")
    return data


def _ref_name(entry: Mapping[str, Any]) -> str | None:
    return (entry.get("annotations") or {}).get(ANNOTATION_REF_NAME)


def _subject_of(root: Path, digest: str) -> str | None:
    try:
        return json.loads(_read_blob(root, digest)).get("subject", {}).get("digest")
    except (LaminaError, ValueError):
        return None


def _held_digests(root: Path, entries: Sequence[Mapping[str, Any]]) -> set[str]:
    """The digests of the layout's images and of the platform manifests of its indexes."""
    held = set()
    for entry in entries:
        held.add(entry["digest"])
        if entry.get("mediaType") in mt.INDEX_TYPES:
            try:
                held.update(m["digest"] for m in json.loads(_read_blob(root, entry["digest"])).get("manifests", []))
            except (LaminaError, ValueError):
                pass
    return held
