"""``lamina update``: re-lock what is asked, show what moved, move the changed bases' versions."""

from __future__ import annotations

import argparse
from dataclasses import replace

from lamina import naming
from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_json, add_registry, examples, open_session
from lamina.updates.plan import options_for
from lamina.updates.update import update
from lamina.updates.versions import SCHEMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "update",
        help="re-resolve packages, show what moved, and give each changed base its next base_version",
        description="Resolve again the images named (or those locking a PACKAGE named: then only it moves, the "
        "image's other distributions are held; or with --security-only those with a security update: a Debian "
        "package newer in RELEASE-security, a Python distribution whose newer version fixes a PyPI advisory; "
        "default: all), respecting the requirements' specifiers and the bases' pins; "
        "the images built on them follow. Prints every package that moved. A base whose content changed gets the "
        "next version (v1.0.1 → v1.0.2; [project] base_version_scheme = patch, minor, major or date): the project's "
        "base_version when every base changed, else the base's own base_version in its [images.NAME] table. Images "
        "on a moved base move with it at the next build; nothing else moves. Writes lamina.lock and (a line of) "
        "lamina.toml; builds nothing: `lamina plan` shows what a build will then do.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina update", "everything"),
            ("lamina update base-ml", "base-ml (and the services on it)"),
            ("lamina update joblib", "the images that lock joblib"),
            ("lamina update --security-only", "only what fixes a known vulnerability"),
        ),
    )
    p.add_argument("names", nargs="*", metavar="PACKAGE|IMAGE",
                   help="images, or packages (the images that lock them), to update (default: all)")
    p.add_argument("--security-only", action="store_true", help="only security updates (Debian security suite, PyPI advisories)")
    p.add_argument("--no-bump", action="store_true", help="re-lock only; leave base versions as they are")
    p.add_argument("--scheme", choices=SCHEMES, help="how base versions move (default: [project] base_version_scheme)")
    add_json(p, "what moved")
    add_config(p)
    add_registry(p, credentials=False, target=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = output.console
    with open_session(args) as session:
        config = session.config
        if args.scheme:
            config = replace(config, base_version_scheme=args.scheme)
        images = [n for n in args.names if n in config.images]
        packages = [n for n in args.names if n not in config.images]
        with session.store.shared_lock():
            with output.status("updating…") as show:
                result = update(config, session.store, session.registries, images=images, packages=packages,
                                security_only=args.security_only, move_versions=not args.no_bump,
                                options=options_for(config), on_status=lambda image, text: show(f"{image}: {text}"))
    if args.json:
        output.print_json(result.to_json())
        return 0
    if not result.asked:
        console.print("nothing to update" + (" (no security update)" if args.security_only else ""))
        return 0
    if result.moved:
        t = output.table("image", "kind", "package", "from", "to")
        for m in result.moved:
            image = m.image if m.platform == "linux/amd64" else f"{m.image} ({m.platform})"
            t.add_row(image, m.kind, m.name, m.old or "–", m.new or "(removed)")
        console.print(t)
    else:
        console.print(f"re-resolved {', '.join(result.asked)}: nothing moved")
    for move in result.versions:
        old = move.old or naming.own_tag(config, config.image(move.images[0]))
        where = output.escape(f"{move.key} in [{move.table}] of {output.short_path(str(config.path))}")
        console.print(f"{', '.join(move.images)}: {old} → [bold]{move.new}[/] ({where})")
    if result.changed:
        console.print(f"images that change: {', '.join(result.changed)}; next: `lamina plan`, then `lamina build`")
    return 0
