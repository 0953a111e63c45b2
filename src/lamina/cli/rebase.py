"""``lamina rebase``: put a pushed image on a new base without rebuilding it (crane's rebase)."""

from __future__ import annotations

import argparse

from lamina import naming
from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_json, add_registry, examples, open_session
from lamina.errors import UsageError
from lamina.oci.model import Platform
from lamina.oci.reference import Reference
from lamina.session import Session
from lamina.updates.rebase import rebase


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rebase",
        help="swap the base layers of a pushed image for a new base's, when only the base changed",
        description="Read the image's org.opencontainers.image.base.name and .base.digest annotations (lamina "
        "records them), check that its bottom layers are that base's, and replace them with NEW_BASE's: the "
        "image's own layers are kept as they are, its config gets the new base's diff_ids and history, and only "
        "the new config and manifest are uploaded. Refused, with the reason, when NEW_BASE runs another Python "
        "minor or has an older glibc than the old base (the image's wheels were chosen for the old one). IMAGE "
        "and NEW_BASE are references, or names of images of lamina.toml (their push targets). Pushes to IMAGE's "
        "tag, or --tag.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina rebase svc-forms --onto base-runtime", "the project's images, by name"),
            ("lamina rebase reg.example/acme/svc-forms:1.0.0 --onto reg.example/acme/base-runtime:v1.0.2", ""),
            ("lamina rebase svc-forms --onto base-runtime --dry-run", "check and show the new digest; push nothing"),
        ),
    )
    p.add_argument("image", metavar="IMAGE", help="the pushed image (a reference, or an image of lamina.toml)")
    p.add_argument("--onto", required=True, metavar="NEW_BASE", help="the new base (a reference, or an image name)")
    p.add_argument("--tag", help="push the rebased image under this tag (default: IMAGE's)")
    p.add_argument("--platform", default="linux/amd64", metavar="OS/ARCH", help="the platform (default: linux/amd64)")
    p.add_argument("--dry-run", action="store_true", help="check and compute the new image; push nothing")
    add_json(p, "the result")
    add_config(p)
    add_registry(p)
    p.set_defaults(func=run)


def _ref(session: Session, text: str) -> Reference:
    if text in session.config.images:
        spec = session.config.image(text)
        return naming.push_target(session.config, spec, naming.tag_for(session.config, spec, session.tag))
    if "/" not in text:
        raise UsageError(f"{text!r} is neither an image of {session.config.path.name} nor a registry reference",
                         hint="name an image of lamina.toml, or give host/repository:tag")
    return Reference.parse(text)


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        image, onto = _ref(session, args.image), _ref(session, args.onto)
        target = image.with_tag(args.tag) if args.tag else None
        with session.store.shared_lock(), output.status(f"rebasing {image} onto {onto}…"):
            result = rebase(image, onto, session.store, session.registries, platform=Platform.parse(args.platform),
                            target=target, push=not args.dry_run)
    if args.json:
        output.print_json(result.to_json())
        return 0
    output.console.print(f"{image}: {result.kept_layers} own layer(s) moved from {output.escape(result.old_base)} "
                         f"onto {output.escape(result.new_base)} (Python {result.python or 'none'}, "
                         f"glibc {result.glibc or 'none'})")
    if result.report is not None:
        output.print_push(result.report)
    else:
        output.console.print(f"would push {result.image.digest} (dry run)")
    return 0
