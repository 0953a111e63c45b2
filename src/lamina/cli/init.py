"""``lamina init``: write lamina.toml for a repository, whatever its layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape

from lamina.cli import output
from lamina.cli.options import HelpFormatter, STORE_HELP, examples
from lamina.init import init_project
from lamina.oci.store import BlobStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write lamina.toml for a repository (apps/*, services/*, src/*, packages, uv workspace, Poetry)",
        description="Look at a repository (the seed's libs/ + apps/svc_*/, services/*, src/*, top-level "
        "packages, a uv workspace, a Poetry project) and write lamina.toml into it: one service image per service "
        "folder with its dependency source (requirements.txt, pyproject.toml, uv.lock), entry point (ASGI/WSGI app, "
        "gRPC server, __main__), port and health check; shared requirements in base-runtime, ML stacks on base-ml. "
        "What it cannot decide is written as a comment. Reads the repository (and PyPI metadata through the store); writes only lamina.toml. "
        "The seed's build args (REGISTRY, OWNER, VERSION, BASE_VERSION) are flags here.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina init", "write ./lamina.toml"),
            ("lamina init ~/src/monorepo --registry ghcr.io --owner acme", "with the push target set"),
            ("lamina init --version 2.1.0 --base-version 2.0.0", "services tagged 2.1.0 on bases tagged 2.0.0"),
        ),
    )
    p.add_argument("directory", nargs="?", default=".", help="the repository (default: .)")
    p.add_argument("--registry", help="REGISTRY: where --push will send images")
    p.add_argument("--owner", help="OWNER: the namespace in the registry")
    p.add_argument("--version", default="0.1.0", help="the services' version (default: 0.1.0)")
    p.add_argument("--base-version", help="BASE_VERSION: the bases' tag (default: the version)")
    p.add_argument("--store", help=STORE_HELP)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = Path(args.directory).absolute()
    store = BlobStore.open_default(args.store)
    with store.shared_lock(), output.status("looking at the repository…"):
        path, layout = init_project(root, store=store, registry=args.registry, owner=args.owner,
                                    version=args.version, base_version=args.base_version)
    console = output.console
    console.print(f"wrote {path} (layout: {layout.kind})")
    for note in layout.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}")
    for service in layout.services:
        entry = service.entry
        runs = f"{entry.kind}: {' '.join(entry.command)}" if entry else "nothing found to run (set its command)"
        port = f", port {service.port} ({service.port_from})" if service.port else ""
        console.print(f"  {escape(str(service.folder.relative_to(root)) or '.')} → on {service.base}, "
                      f"deps from {service.source or 'none'}{port}, {escape(runs)}")
    console.print("next: lamina check, then lamina build")
    return 0
