"""``lamina report``: what is in every image of the family, what they share, what a change costs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, STORE_HELP, examples, open_session
from lamina.errors import ThresholdExceeded, UsageError
from lamina.oci.model import Platform
from lamina.oci.remote import Registries
from lamina.oci.store import BlobStore
from lamina.report import analyze, diff_families, layout_images, store_images
from lamina.report.source import SourceImage, built_names
from lamina.report.jsonout import family_json
from lamina.report.locate import is_layout, locate
from lamina.report.text import print_diff, print_family
from lamina.report.thresholds import EXIT_THRESHOLD, Thresholds, check
from lamina.report.write import analyze_with_store, write_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="analyze the family's layers: sizes, sharing, packages, duplicates, waste, blast radius",
        description="Read the images (default: the project's OCI layout, else the images the store last built; or "
        "--layout DIR; or registry references) and report, per image, its compressed and unpacked size, its layer "
        "count against the runtimes' limit, the packages (Debian and Python) or code in each layer and what it adds "
        "on its base; for the family, the layers each pair of images shares, the bytes a registry stores against "
        "the images added up and the seed's monolithic method, the largest packages, files stored in more than one "
        "layer, files hidden by a later layer (wasted), and for every package what a version change rebuilds and "
        "pushes. Each layer is read once (streamed) and its file list kept in the store. docs/report.md says how "
        f"every number is computed. With a --max-* threshold exceeded, the exit status is {EXIT_THRESHOLD}.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina report", "the project's images, as tables"),
            ("lamina report --html report.html", "one self-contained page (treemaps, sortable tables)"),
            ("lamina report base-ml svc-forms --json", "two images, as JSON (schema lamina.report/1)"),
            ("lamina report --layout build/oci --diff-from old/oci --html r.html", "with what changed since old/oci"),
            ("lamina report ghcr.io/acme/api:1.2", "an image in a registry (layers fetched into the store)"),
            ("lamina report --max-size 1.5GB --max-layers 60 --max-wasted 5%", f"CI: exit {EXIT_THRESHOLD} when over"),
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image names (default: all), or registry references host/owner/name:tag")
    p.add_argument("-c", "--config", type=Path, help="path to lamina.toml (default: found upwards from .)")
    p.add_argument("--store", help=STORE_HELP)
    p.add_argument("--layout", metavar="DIR", help="read the images of this OCI layout (no lamina.toml needed)")
    p.add_argument("--from-store", action="store_true", help="read the images the store last built, not the layout")
    p.add_argument("--platform", help="for multi-platform images: which one (default linux/amd64)")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                   help="allow plain http for HOST (loopback is always allowed)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the report as JSON on stdout (schema lamina.report/1)")
    out.add_argument("--html", metavar="FILE", help="write the report as one self-contained HTML page")
    out.add_argument("--title", help="the HTML page's title (default: the project's folder name)")
    out.add_argument("--diff-from", metavar="LAYOUT", help="also show what changed since this earlier state (an OCI layout)")
    limits = p.add_argument_group("thresholds (CI)")
    limits.add_argument("--max-size", metavar="SIZE", help="fail if an image's unpacked size is over SIZE (1.5GB, 300MB)")
    limits.add_argument("--max-layers", type=int, metavar="N", help="fail if an image has more than N layers")
    limits.add_argument("--max-wasted", metavar="SIZE|PCT",
                        help="fail if an image hides more than SIZE (or PCT%% of its size) under later layers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    limits = Thresholds.parse(args.max_size, args.max_layers, args.max_wasted)
    platform = Platform.parse(args.platform) if args.platform else None
    refs = [n for n in args.images if "/" in n]
    if refs and len(refs) != len(args.images):
        raise UsageError("give either image names of the project or registry references, not both")
    if args.layout or refs:
        store = BlobStore.open_default(args.store)
        registries = Registries(insecure=frozenset(args.insecure_registry))
        title = args.title or (_title_of(Path(args.layout)) if args.layout else "lamina report")
        try:
            if args.layout:
                images = layout_images(Path(args.layout), args.images, platform)
            else:
                images = [i for ref in refs for i in locate(ref, store, registries, platform)]
            return _report(args, images, store, registries, limits, title)
        finally:
            registries.close()
    with open_session(args) as session:
        config = session.config
        layout = config.root / config.output[4:] if config.output.startswith("oci:") else None
        if layout is not None and is_layout(layout) and not args.from_store:
            images = layout_images(layout, args.images, platform)
        else:  # the store is shared by projects: only this one's images
            built = {name for name, _ in built_names(session.store)}
            images = store_images(session.store, args.images or [n for n in config.images if n in built], platform)
        title = args.title or config.root.name
        return _report(args, images, session.store, session.registries, limits, title)


def _title_of(layout: Path) -> str:
    """``…/tax-agent/build/oci`` → ``tax-agent``: the project, not the folder lamina writes into."""
    names = [p.name for p in [layout.resolve(), *layout.resolve().parents] if p.name not in ("oci", "build", "")]
    return names[0] if names else "lamina report"


def _report(args: argparse.Namespace, images: Sequence[SourceImage], store: BlobStore, registries: Registries,
            limits: Thresholds, title: str) -> int:
    if not images:
        raise UsageError("no images to report on", hint="build first (`lamina build`), or give --layout DIR")
    with output.status("reading layers…") as update:
        report = analyze_with_store(images, store, on_layer=lambda d: update(f"reading layer {d[7:19]}…"))
        diff = None
        if args.diff_from:
            earlier = analyze(locate(args.diff_from, store, registries), cache=store)
            diff = diff_families(earlier, report)
    breaches = check(report, limits)
    if args.json:
        output.print_json({**family_json(report, breaches), **({"diff": diff.to_json()} if diff else {})})
    if args.html:
        write_report(Path(args.html), report, title=title, diff=diff, breaches=breaches)
        output.console.print(f"wrote {args.html}")
    if not args.json and not args.html:
        print_family(report, output.console)
        if diff is not None:
            print_diff(diff, output.console)
    for breach in breaches:
        output.console.print(f"[bold red]over threshold:[/] {output.escape(breach.message)}")
    if breaches:
        images = len({b.image for b in breaches})
        raise ThresholdExceeded(f"{images} image(s) over the report's thresholds ({len(breaches)} limit(s) exceeded)",
                                hint="each is named above; shrink the image or raise the limit (docs/report.md)")
    return 0
