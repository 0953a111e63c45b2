"""``lamina test``: start the services with podman and wait for their health checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, add_output, examples, open_session
from lamina.errors import UsageError
from lamina.publish import Output, write_output
from lamina.config.services import HEALTH_LABEL
from lamina.runtime import HealthTest, Podman


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="start images with podman and wait until their health checks pass",
        description="Build the images (default: every service), write them to the OCI layout, start each with "
        "podman and run its health check until it passes. Reads what `lamina build` reads; writes the OCI layout "
        "(default: [project] output) and podman's containers (removed afterwards). podman's command and run flags "
        "come from LAMINA_PODMAN and LAMINA_PODMAN_RUN_FLAGS, else [test] podman / run_flags in lamina.toml. "
        "Exits 1 when an image is unhealthy, 0 (with a note) when podman is not installed.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina test", "every service"),
            ("lamina test svc-forms -o oci:/tmp/layout", "one service, from another layout"),
            ("LAMINA_PODMAN='podman --cgroup-manager cgroupfs' LAMINA_PODMAN_RUN_FLAGS='--network host' lamina test",
             "on a machine without systemd"),
        ),
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="images to test (default: the services)")
    add_config(p)
    add_output(p, "the OCI layout (oci:DIR) to write and run from (default: [project] output)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = output.console
    with open_session(args) as session:
        config = session.config
        podman = Podman.configured(config.podman, config.podman_run_flags)
        if podman is None:
            console.print("[yellow]skipped:[/] podman is not installed, so no image can be started "
                          "(apt-get install podman, or set LAMINA_PODMAN to its command)")
            return 0
        names = args.images or [n for n, spec in config.images.items() if spec.service]
        if not names:
            raise UsageError(f"{config.path} has no services to test", hint="name the images to test")
        out = Output.parse(args.output or config.output, Path.cwd() if args.output else config.root)
        if out.kind != "oci":
            raise UsageError("lamina test runs images from an OCI layout", hint="use --output oci:DIR")
        with session.store.shared_lock():
            family = session.family()
            built = output.run_family(family, session.images(names))
            named = session.named(family.products(built))
            write_output(out, named, session.store, session.registries)
    failed = 0
    for n in (n for n in named if n.name in names):
        image_config = n.images[0].config.json().get("config", {})
        healthcheck = image_config.get("Healthcheck") or {}
        describe = (image_config.get("Labels") or {}).get(HEALTH_LABEL, "")
        with output.status(f"testing [bold]{n.ref_name}[/]: waiting for its health check…"):
            result = HealthTest(podman, f"oci:{out.path}:{n.ref_name}", healthcheck, describe=describe).run()
        if result.healthy:
            console.print(f"[green]healthy[/] {n.ref_name} in {result.seconds:.1f}s ({result.checks} checks"
                          + (f", {output.escape(describe)})" if describe else ")"))
        else:
            failed += 1
            console.print(f"[bold red]unhealthy[/] {n.ref_name}: {result.detail}")
            if result.logs:
                console.print(output.escape(result.logs.rstrip()))
    return 1 if failed else 0


