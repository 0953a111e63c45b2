"""``lamina store``: where the blob store is, check it, clean it."""

from __future__ import annotations

import argparse

from lamina.cli import output
from lamina.cli.options import HelpFormatter, STORE_HELP, examples
from lamina.errors import UsageError
from lamina.oci.store import BlobStore, default_store_root


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "store",
        help="inspect and clean the blob store (path, verify, gc)",
        description="The store (default: $LAMINA_STORE, else ~/.cache/lamina) holds every layer, config, manifest, "
        "downloaded .deb and wheel by its digest, shared by all projects of the user; builds reuse what it has. "
        "These actions read it and (verify --delete, gc) remove blobs from it; nothing else is touched.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina store path", "print the store's directory (on stdout)"),
            ("lamina store verify --delete", "re-hash every blob, delete the corrupt ones"),
            ("lamina store gc --dry-run", "what gc would remove, and how much it would free"),
        ),
    )
    p.set_defaults(func=run)  # the actions set their own func; this one runs without an action
    actions = p.add_subparsers(title="store actions", metavar="ACTION")
    for name, func, text, example in (
        ("path", run_path, "print the store's location", "lamina store path"),
        ("verify", run_verify, "re-hash every blob and report corrupt ones (exit 1 if any)",
         "lamina store verify --delete"),
        ("gc", run_gc, "remove blobs that no recorded image uses", "lamina store gc --dry-run"),
    ):
        a = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                               formatter_class=HelpFormatter,
                               epilog=examples((example, "")))
        a.add_argument("--store", help=STORE_HELP)
        a.set_defaults(func=func)
        if name == "verify":
            a.add_argument("--delete", action="store_true", help="also delete the corrupt blobs")
        if name == "gc":
            a.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def run(args: argparse.Namespace) -> int:
    """``lamina store`` without an action (each action has its own ``run_*``)."""
    raise UsageError("lamina store needs an action: path, verify or gc",
                     hint="lamina store path | verify [--delete] | gc [--dry-run]; see lamina store --help")


def run_path(args: argparse.Namespace) -> int:
    print(args.store or default_store_root())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    store = BlobStore.open_default(args.store)
    bad = store.verify(delete=args.delete)
    if not bad:
        output.console.print(f"all blobs in {store.root} match their digests")
        return 0
    for digest in bad:
        output.console.print(f"[red]corrupt[/] {digest}" + (" (deleted)" if args.delete else ""))
    if not args.delete:
        output.console.print("run `lamina store verify --delete` to remove them; the next build makes them again")
    return 1


def run_gc(args: argparse.Namespace) -> int:
    store = BlobStore.open_default(args.store)
    removed, freed = store.gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    output.console.print(f"{verb} {removed} blobs ({output.size(freed)}) from {store.root}")
    return 0
