"""``lamina outdated``: what in lamina.lock has a newer version (Python, Debian, pulled bases)."""

from __future__ import annotations

import argparse

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_json, add_registry, examples, open_session
from lamina.updates.outdated import find_outdated

KINDS = ("python", "debian", "base")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "outdated",
        help="list what in lamina.lock has a newer version: Python distributions, Debian packages, pulled bases",
        description="For each image and platform of lamina.lock: every Python distribution with a newer version "
        "(the newest its requirement's specifier allows, and the newest overall, counting only wheels for the "
        "image's Python and platform) from [python]'s index and find-links; every Debian package with a newer "
        "version in its release, RELEASE-updates or RELEASE-security (security updates marked; a suite lamina.toml "
        "does not use is named), with the point release the archive is at; every pulled base whose tag now names "
        "another digest. A Python update that fixes a known vulnerability (PyPI's advisories, when the index is "
        "PyPI) is marked as a security update too. Reads the lock, the indexes and the signed Debian archive; "
        "writes nothing.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina outdated", "everything, as a table"),
            ("lamina outdated base-ml --kind python", "only base-ml's Python distributions"),
            ("lamina outdated --json", "for scripts and CI"),
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to look at (default: all)")
    p.add_argument("--kind", action="append", choices=KINDS, help="only these kinds (repeatable; default: all)")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when something is outdated")
    add_json(p, "the report")
    add_config(p)
    add_registry(p, credentials=False, target=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        names = session.images(args.images)
        with session.store.shared_lock(), output.status("checking what is newer…"):
            report = find_outdated(session.config, session.lock, session.store, session.registries, names=names,
                                   kinds=args.kind or KINDS)
    if args.json:
        output.print_json(report.to_json())
    else:
        for warning in report.warnings:
            output.console.print(f"[yellow]warning:[/] {output.escape(warning)}")
        for release, point in sorted(report.releases.items()):
            output.console.print(f"Debian {release} is at {point}")
        if report.items:
            t = output.table("image", "kind", "name", "locked", "wanted", "latest", "note")
            for i in report.items:
                wanted = i.wanted or "–"
                if i.security:
                    wanted += " [bold red](security)[/]"
                note = " ".join(x for x in (i.suite, i.note) if x)
                image = i.image if i.platform == "linux/amd64" else f"{i.image} ({i.platform})"
                t.add_row(image, i.kind, i.name, i.current[:19], wanted, i.latest[:19], output.escape(note))
            output.console.print(t)
        checked = ", ".join(f"{n} {k}" for k, n in report.checked.items() if n)
        output.console.print(f"{len(report.items)} outdated of {checked or 'nothing locked'}"
                             + ("; run `lamina update` to move them" if report.items else ""))
    return 1 if args.exit_code and report.items else 0
