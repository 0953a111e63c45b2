"""``lamina sbom``: print the SBOM of a built image (SPDX 2.3 or CycloneDX 1.6 JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, examples, open_session, platforms_arg
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
        "code with its layer, and the base image by digest. IMAGE is an image of the project (built from the store "
        "first if needed: nothing is rebuilt when nothing changed), oci:DIR:NAME (a layout), or a registry reference. The SBOM comes from "
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
    p.add_argument("--platform", metavar="OS/ARCH", help="which platform image (default: the first)")
    p.add_argument("--locked", action="store_true", help="a project image: as lamina.lock says, never resolving")
    p.add_argument("--image-format", dest="format_oci", choices=["oci", "docker"],
                   help="a project image: the manifest format it was built with (default: the config's)")
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
    """Build the project's image (from the store: a no-op when nothing changed) and describe it. Building
    is how the right image is found: the store is shared by every project, so a name alone is ambiguous."""
    with open_session(args) as session, session.store.shared_lock():
        spec = session.config.image(args.image)
        family = session.family(locked=args.locked, format=args.format_oci,
                                platforms=platforms_arg([args.platform] if args.platform else None))
        built = [b for b in output.run_family(family, [spec.name]) if b.name == spec.name]
        return image_documents(session.config, session.store, spec.name, built[0].image).sbom(args.format)


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
