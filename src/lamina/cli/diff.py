"""``lamina diff A B``: what changed between two images or two states of a family, and what it costs."""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, STORE_HELP, examples
from lamina.oci.model import Platform
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore, atomic_write
from lamina.report import analyze, diff_families
from lamina.report.htmlout import render_html
from lamina.report.jsonout import diff_json
from lamina.report.locate import locate
from lamina.report.text import print_diff


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff",
        help="compare two images or two states of the family: packages, layers, bytes to push and pull",
        description="Compare BEFORE and AFTER, each an OCI layout (a whole family: images are paired by name), one "
        "image of a layout (DIR:NAME), or a registry reference. Prints the packages added, removed and changed "
        "(with both versions), the layers each image lost and gained, the bytes a registry holding BEFORE receives "
        "when AFTER is pushed (layers, configs and manifests it lacks) and the bytes a host running BEFORE pulls. "
        "Two lock states of a project compare as the two layouts built from them.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina diff old/oci build/oci", "the family before and after a change"),
            ("lamina diff build/oci:base-ml old/oci:base-ml --json", "one image, as JSON (schema lamina.diff/1)"),
            ("lamina diff reg.example/acme/api:1.1 reg.example/acme/api:1.2", "two tags in a registry"),
            ("lamina diff old/oci build/oci --html diff.html", "the report of AFTER with the changes, as a page"),
        ),
    )
    p.add_argument("before", metavar="BEFORE", help="layout DIR, DIR:NAME, or registry reference")
    p.add_argument("after", metavar="AFTER", help="layout DIR, DIR:NAME, or registry reference")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--platform", help="for multi-platform images: which one (default linux/amd64)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                   help="allow plain http for HOST (loopback is always allowed)")
    p.add_argument("--json", action="store_true", help="print the differences as JSON on stdout (schema lamina.diff/1)")
    p.add_argument("--html", metavar="FILE", help="write AFTER's report with the differences as an HTML page")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    store = BlobStore.open_default(args.store)
    registries = Registries(insecure=frozenset(args.insecure_registry))
    platform = Platform.parse(args.platform) if args.platform else None
    try:
        with output.status("reading layers…"):
            before = analyze(locate(args.before, store, registries, platform), cache=store)
            after = analyze(locate(args.after, store, registries, platform), cache=store)
    finally:
        registries.close()
    diff = diff_families(before, after)
    if args.json:
        output.print_json(diff_json(diff))
    if args.html:
        atomic_write(Path(args.html), render_html(after, title=f"{args.before} → {args.after}", diff=diff).encode())
        output.console.print(f"wrote {args.html}")
    if not args.json:
        print_diff(diff, output.console)
    return 0
