"""``lamina keygen``: a cosign-compatible signing key pair."""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, examples
from lamina.supply.keys import PASSWORD_VARIABLES, keygen, read_password


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keygen",
        help="write a signing key pair (cosign's format) for `lamina sign` and `build --sign`",
        description="Write PREFIX.key, an ECDSA P-256 private key encrypted with a password (cosign's "
        "'ENCRYPTED SIGSTORE PRIVATE KEY' format, mode 0600), and PREFIX.pub, its public key. The same files work "
        "with cosign and with `skopeo copy --sign-by-sigstore-private-key`. The password comes from "
        f"{' or '.join(PASSWORD_VARIABLES)}, else from standard input (asked twice on a terminal); it is never "
        "printed or stored.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina keygen", "cosign.key and cosign.pub here (asks for a password)"),
            ('LAMINA_KEY_PASSWORD="$PW" lamina keygen --output-prefix ci/release', "ci/release.key, ci/release.pub"),
        ),
    )
    p.add_argument("--output-prefix", default="cosign", metavar="PREFIX",
                   help="write PREFIX.key and PREFIX.pub (default: cosign)")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    password = read_password(confirm=True)
    private, public = keygen(Path(args.output_prefix), password, force=args.force)
    output.console.print(f"wrote {private} (private, encrypted) and {public} (public)")
    return 0
