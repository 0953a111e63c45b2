"""``lamina sign``: sign an image in a registry with a cosign-compatible signature."""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, examples
from lamina.cli.refs import add_registry_access, registries, resolve
from lamina.supply.keys import PASSWORD_VARIABLES, PrivateKey, read_password
from lamina.supply.sign import sign_image, signature_tag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sign",
        help="sign an image in a registry (cosign-compatible; an index and each of its platform images)",
        description="Sign the manifest IMAGE names, as `cosign sign --key` does: a simple-signing payload naming "
        "the repository and digest, signed with the key (ECDSA P-256), stored under the tag sha256-<hex>.sig of "
        "the image's repository, appended to the signatures already there. For an index the index and each "
        "platform manifest are signed. The key's password comes from "
        f"{' or '.join(PASSWORD_VARIABLES)}, else standard input. `lamina build --push --sign KEY` does this "
        "(and attaches signed provenance) as it pushes.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina sign registry.example.com/acme/svc-forms:1.0.0 --key cosign.key", ""),
            ('COSIGN_PASSWORD="$PW" lamina sign 127.0.0.1:5000/me/hello@sha256:... --key cosign.key', ""),
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="registry/repository:tag or registry/repository@sha256:...")
    p.add_argument("--key", required=True, type=Path, help="the private key (`lamina keygen`, cosign or skopeo)")
    add_registry_access(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    key = PrivateKey.load(args.key, read_password())
    with registries(args) as regs:
        ref, digest = resolve(regs, args.image)
        for signed in sign_image(regs.client(ref.registry), ref, digest, key):
            state = "signed" if signed.added else "already signed with this key"
            output.console.print(f"{state}: {ref.registry}/{ref.repository}@{signed.digest} "
                                 f"(tag {signature_tag(signed.digest)})")
    return 0
