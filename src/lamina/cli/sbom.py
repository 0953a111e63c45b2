"""``lamina sbom``: print the SBOM of a built image (SPDX 2.3 or CycloneDX 1.6 JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lamina.cli.options import HelpFormatter, add_config, examples, open_session
from lamina.cli.refs import add_registry_access, registries, resolve
from lamina.errors import LaminaError, UsageError
from lamina.oci import mediatypes as mt
from lamina.oci.model import Platform
from lamina.oci.referrers import fetch_artifact, layout_referrers, list_referrers, read_layout_artifact
from lamina.oci.store import BlobStore
from lamina.supply.attach import FORMATS, recorded_documents
from lamina.supply.project import image_documents
from lamina.supply.provenance import BuildFacts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sbom",
        help="print the SBOM of a built image (SPDX 2.3 or CycloneDX 1.6 JSON), pushed or not",
        description="Print the SBOM of IMAGE on stdout: every Debian package (version, architecture, source "
        "package, .deb SHA256, purl), every Python distribution (version, wheel SHA256, purl), the first-party "
        "code with its layer, and the base image by digest. IMAGE is an image of the project (as last built into "
        "its output, else into the store), oci:DIR:NAME (a layout), or a registry reference. The SBOM comes from "
        "what lamina recorded while building, so the image must have been built with this store, or the SBOM "
        "attached to it (registry, layout) is printed. The same image always gives the same bytes.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina sbom svc-forms", "SPDX JSON of the project's svc-forms image"),
            ("lamina sbom svc-forms --format cyclonedx -o svc-forms.cdx.json", ""),
            ("lamina sbom oci:build/oci:svc-forms:1.0.0", "from a layout"),
            ("lamina sbom registry.example.com/acme/svc-forms:1.0.0", "the SBOM attached in the registry"),
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="a project image, oci:DIR:NAME, or registry/repository:tag")
    p.add_argument("--format", choices=sorted(FORMATS), default="spdx", help="SBOM format (default: spdx)")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--platform", help="for an index: which platform image (default: the first)")
    add_config(p)
    add_registry_access(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.image.startswith("oci:"):
        document = _from_layout(args)
    elif "/" in args.image:
        document = _from_registry(args)
    else:
        document = _from_project(args)
    if args.output:
        args.output.write_bytes(document)
    else:
        sys.stdout.buffer.write(document)
        sys.stdout.flush()
    return 0


def _from_project(args: argparse.Namespace) -> bytes:
    with open_session(args) as session:
        config, store = session.config, session.store
        spec = config.image(args.image)
        digest = _digest_in_output(config, f"{spec.name}:{config.tag_of(spec) if not spec.service else session.tag}",
                                   args.platform) or _recorded_digest(store, spec.name)
        if digest is None:
            raise LaminaError(f"image {spec.name!r} has not been built with the store at {store.root}",
                              hint=f"run `lamina build {spec.name}` first")
        from lamina.oci.model import Document, Image

        manifest = store.read_bytes(digest)
        image = Image(Document(manifest, json.loads(manifest).get("mediaType", mt.OCI_MANIFEST)),
                      Document(store.read_bytes(json.loads(manifest)["config"]["digest"]), mt.OCI_CONFIG))
        return image_documents(config, store, spec.name, image).sbom(args.format)


def _digest_in_output(config, ref_name: str, platform: str | None) -> str | None:
    """The digest the project's OCI layout output holds under ``ref_name`` (a platform image's)."""
    kind, _, path = (config.output or "oci:build/oci").partition(":")
    index_path = config.root / path / "index.json"
    if kind != "oci" or not index_path.is_file():
        return None
    root = index_path.parent
    for entry in json.loads(index_path.read_bytes()).get("manifests", []):
        if (entry.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref_name:
            return _platform_digest(root, entry, platform)
    return None


def _platform_digest(root: Path, entry: dict, platform: str | None) -> str:
    if entry.get("mediaType") not in mt.INDEX_TYPES:
        return entry["digest"]
    index = json.loads((root / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes())
    return _pick(index, entry["digest"], platform)


def _pick(index: dict, digest: str, platform: str | None) -> str:
    wanted = Platform.parse(platform) if platform else None
    for m in index.get("manifests", []):
        if m.get("platform") and (wanted is None or wanted.matches(m["platform"])):
            return m["digest"]
    raise UsageError(f"index {digest} has no image for {platform or 'any platform'}")


def _recorded_digest(store: BlobStore, name: str) -> str | None:
    for record in store.images():
        if record["name"] == f"built {name}" or record["name"].startswith(f"built {name} "):
            return record["digest"]
    return None


def _from_layout(args: argparse.Namespace) -> bytes:
    _, _, rest = args.image.partition(":")
    directory, _, name = rest.partition(":")
    root = Path(directory)
    index = json.loads((root / "index.json").read_bytes())
    entry = next((e for e in index.get("manifests", [])
                  if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") == name), None)
    if entry is None:
        raise UsageError(f"{root} has no image named {name!r}")
    digest = _platform_digest(root, entry, args.platform)
    found = layout_referrers(root, digest, artifact_type=FORMATS[args.format])
    if found:
        return read_layout_artifact(root, found[-1]["digest"]).layer(FORMATS[args.format])
    return _from_store(args, digest)


def _from_registry(args: argparse.Namespace) -> bytes:
    with registries(args) as regs:
        ref, digest = resolve(regs, args.image)
        client = regs.client(ref.registry)
        fetched = client.get_manifest(ref.repository, digest)
        if fetched.media_type in mt.INDEX_TYPES:
            digest = _pick(json.loads(fetched.data), digest, args.platform)
        found = list_referrers(client, ref.repository, digest, artifact_type=FORMATS[args.format])
        if found:
            return fetch_artifact(client, ref.repository, found[-1]["digest"]).layer(FORMATS[args.format])
    return _from_store(args, digest)


def _from_store(args: argparse.Namespace, digest: str) -> bytes:
    """No SBOM attached: make it from the inventory this store recorded, if it built the image."""
    store = BlobStore.open_default(args.store)
    try:
        return recorded_documents(store, digest, BuildFacts()).sbom(args.format)
    except LaminaError:
        raise LaminaError(f"{args.image} has no {args.format} SBOM attached, and this store did not build it",
                          hint="build and push it with lamina (SBOMs are attached), or pass --store") from None
