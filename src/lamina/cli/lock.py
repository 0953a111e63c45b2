"""``lamina lock``: resolve the images' packages again and write lamina.lock."""

from __future__ import annotations

import argparse

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_registry, examples, open_session
from lamina.lockdiff import diff_section


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lock",
        help="resolve the images' Debian and Python packages again and write lamina.lock",
        description="Resolve the Debian packages (against the signed archive) and the Python requirements (with "
        "uv, for each image's platform and Python, its base's pins as constraints) of the images named (default: "
        "all), and of the images built on them, and record the result in lamina.lock next to lamina.toml (NAME.lock "
        "for another NAME.toml). Reads lamina.toml, the Debian archive's signed indexes and PyPI's metadata; writes "
        "only the lock, and prints what changed per image. `lamina build` resolves only what the lock lacks or what "
        "changed; this command is how a lock is updated on purpose. Nothing is downloaded or built.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina lock", "re-resolve every image (new Debian point release, newer wheels)"),
            ("lamina lock base-ml", "only base-ml and the services built on it"),
            ("lamina lock && git diff lamina.lock", "see what moved, then commit it"),
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to re-resolve (default: all)")
    add_config(p)
    add_registry(p, credentials=False, target=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        wanted = session.images(args.images)
        everything = list(session.config.images)
        old = {(n, str(p)): (session.lock.section(n, str(p), "debian"), session.lock.section(n, str(p), "python"))
               for n in everything for p in session.config.image(n).platforms}
        with session.store.shared_lock():
            family = session.family(update=wanted)
            built = output.run_family(family, everything, lock_only=True)  # images on the named ones follow
    table = output.table("image", "Debian packages", "Python packages", "changes")
    for b in built:
        where = str(b.platform)
        debian, python = family.lock.section(b.name, where, "debian"), family.lock.section(b.name, where, "python")
        if debian is None and python is None:
            continue
        before = old.get((b.name, where), (None, None))
        changes = [diff_section(before[0], debian, "packages").describe() if debian else "",
                   diff_section(before[1], python, "dists").describe() if python else ""]
        several = len(session.config.image(b.name).platforms) > 1
        table.add_row(f"{b.name} ({where})" if several else b.name, str(len(debian["packages"])) if debian else "–",
                      str(len(python["dists"])) if python else "–", "; ".join(c for c in changes if c))
    if not table.row_count:
        output.console.print("no image installs Debian or Python packages: nothing to lock")
        return 0
    output.console.print(table)
    output.console.print(f"wrote {family.lock.path}")
    return 0
