"""``lamina check``: what would fail at run time, found without building."""

from __future__ import annotations

import argparse

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_json, examples, open_session
from lamina.errors import EXIT_CODES, ServiceCheckFailed

#: The exit code when errors are found: the one a build failing on the same findings returns.
EXIT_FINDINGS = next(code for cls, code, _ in EXIT_CODES if cls is ServiceCheckFailed)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="find what would fail at run time: missing imports, duplicated or conflicting requirements",
        description="Check each service against the layers of its image, without building them: "
        "(a) a module its code imports that no layer provides (error), (b) a requirement its base already has "
        "(warning), (c) a pin that contradicts its base's (error), (d) a declared requirement the code never "
        "imports (note). Reads lamina.toml, lamina.lock (resolving and recording what it lacks) and the services' "
        f"code; writes nothing else. Exits {EXIT_FINDINGS} when there are errors. `lamina build` runs the same "
        "checks and fails on errors.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina check", "every service"),
            ("lamina check svc-forms", "one service"),
            ("lamina check --json | jq '.[] | select(.level == \"error\")'", "the findings for a script"),
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to check (default: all)")
    add_config(p)
    add_json(p, "the findings")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        names = session.images(args.images)
        with session.store.shared_lock():
            family = session.family()
            built = output.run_family(family, names, lock_only=True)
            findings = family.check(built)
    if args.json:
        output.print_json([f.to_json() for f in findings])
    else:
        output.print_findings(findings)
        if not findings:
            services = sum(1 for b in built if session.config.image(b.name).service)
            output.console.print(f"checked {services} services: nothing to report")
    return EXIT_FINDINGS if output.error_count(findings) else 0
