"""``lamina verify``: is an image signed with this key, and do its provenance and SBOMs check out?"""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_json, examples
from lamina.cli.refs import add_registry_access, registries, resolve
from lamina.errors import VerificationError
from lamina.supply.keys import PublicKey
from lamina.supply.verify import verify_image


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check an image's signature, signed provenance and SBOMs with a public key (exit 7 if not trusted)",
        description="Check the image IMAGE names in its registry: (1) a cosign signature of its digest verifies "
        "with the key; (2) an attached SLSA provenance is signed with the key and names this digest; (3) every "
        "attached SPDX and CycloneDX SBOM describes this digest, is listed by digest in the signed provenance, "
        "and lists exactly the .deb and wheel dependencies it lists. For an index, every platform image is "
        "checked. Prints one line per check on stdout; exits 0 when all pass, 7 when one fails, 4 when the "
        "registry cannot be reached or lacks the image. Signatures made by cosign or skopeo with the same key "
        "are accepted (--signature-only when the image has no lamina attestations).",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina verify registry.example.com/acme/svc-forms:1.0.0 --key cosign.pub", "a CI gate"),
            ("lamina verify 127.0.0.1:5000/me/hello:1 --key cosign.pub --signature-only", "signature only"),
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="registry/repository:tag or registry/repository@sha256:...")
    p.add_argument("--key", required=True, type=Path, help="the public key (cosign.pub)")
    p.add_argument("--signature-only", action="store_true",
                   help="check the signature only (an image signed by cosign or skopeo, without attestations)")
    add_json(p, "the checks")
    add_registry_access(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = PublicKey.load(args.key)
    with registries(args) as regs:
        ref, digest = resolve(regs, args.image)
        report = verify_image(regs.client(ref.registry), ref.with_digest(digest), key,
                              attestations=not args.signature_only)
    if args.json:
        output.print_json({"reference": args.image, "digest": report.digest, "verified": report.ok,
                           "checks": [c.__dict__ for c in report.checks]})
    else:
        for check in report.checks:
            print(check.line())
    if not report.ok:
        failed = [c for c in report.checks if not c.ok]
        raise VerificationError(f"{args.image} is not trusted: {len(failed)} of {len(report.checks)} checks failed",
                                hint=failed[0].message)
    output.console.print(f"verified {args.image} ({digest[:19]}): {len(report.checks)} checks passed")
    return 0


