"""``lamina init``: write lamina.toml for a repository laid out like the seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, STORE_HELP, examples
from lamina.init import init_project
from lamina.oci.store import BlobStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write lamina.toml for a repository laid out like the seed (libs/, apps/svc_*/)",
        description="Look at a repository laid out like the seed (libs/requirements-base.txt, "
        "libs/requirements-ml.txt, apps/svc_*/ with a requirements.txt each) and write lamina.toml into it: "
        "one base image per requirements file, one service image per service folder, each service on base-ml when "
        "its requirements or imports need an ML-only distribution (else base-runtime), running the ASGI app found "
        "in its code. Reads the repository (and PyPI metadata through the store); writes only lamina.toml. "
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
    console.print(f"wrote {path}")
    console.print(f"  base requirements: {layout.base_requirements.relative_to(root)}"
                  + (f", ML requirements: {layout.ml_requirements.relative_to(root)}" if layout.ml_requirements else ""))
    for service in layout.services:
        base = "base-ml" if service.name in layout.ml_services else "base-runtime"
        app = layout.apps.get(service.name) or "no ASGI app found (set its command)"
        console.print(f"  {service.relative_to(root)} → on {base}, runs {app}")
    console.print("next: lamina check, then lamina build")
    return 0
