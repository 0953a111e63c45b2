"""The ``lamina`` command: flags in, library calls out."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lamina import __version__
from lamina.build import BuildOptions, BuiltImage
from lamina.config import ProjectConfig, find_config, load_config
from lamina.export import KINDS, collect, out_folder, render, stale, write
from lamina import naming
from lamina.family import Family, Product
from lamina.init import init_project
from lamina.python.check import Finding
from lamina.runtime import HealthTest, Podman
from lamina.errors import LockStaleError, LaminaError
from lamina.lock import Lock
from lamina.oci.layer import BuiltLayer
from lamina.oci.registry.credentials import Credential
from lamina.oci.remote import PushReport, Registries
from lamina.oci.store import BlobStore, default_store_root
from lamina.publish import Named, Output, push, write_output

console = Console(stderr=True, highlight=False)

DESCRIPTION = """\
Build the container images of a Python monorepo as one layered family, without a Docker daemon.

lamina reads lamina.toml, writes deterministic OCI images (same inputs, same digests, on any
machine) into a content-addressed store, and publishes them to an OCI layout directory (the
default), a docker-archive tar, or a registry, uploading only the blobs the registry lacks.
"""

EPILOG = """\
examples:
  lamina build                          build every image into build/oci (an OCI layout)
  lamina build hello --output docker-archive:hello.tar
  lamina build --push --registry 127.0.0.1:5000
  lamina init                           write lamina.toml for a repo laid out like libs/ + apps/svc_*/
  lamina check                          what would fail at run time: missing imports, pin conflicts
  lamina lock                           (re)resolve Debian and Python packages into lamina.lock
  lamina build --locked                 build exactly what lamina.lock says (CI)
  lamina test                           start the services with podman, wait for their health checks
  lamina export all                     Dockerfiles, docker-bake.json and scripts for BuildKit users
  lamina store gc                       drop blobs no recorded image uses

environment:
  LAMINA_STORE       store directory (default ~/.cache/lamina)
  LAMINA_REGISTRY, LAMINA_OWNER, LAMINA_VERSION, LAMINA_BASE_VERSION   override [project] values
  LAMINA_REGISTRY_USERNAME, LAMINA_REGISTRY_PASSWORD   registry credentials
  SOURCE_DATE_EPOCH  timestamp written into images (default 1970-01-01T00:00:01Z)
  LAMINA_JOBS        threads for compression (default: the number of cores)
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):  # they log full URLs; lamina.registry logs requests without secrets
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except LaminaError as e:
        console.print(f"[bold red]error:[/] {e.message}")
        if e.hint:
            console.print(f"  [yellow]hint:[/] {e.hint}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lamina", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"lamina {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log registry requests (never secrets)")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    build = sub.add_parser(
        "build",
        help="build images into the store and write them to an output",
        description="Build the images of lamina.toml (all, or those named) and write them out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Outputs: oci:DIR (default: [project] output, else oci:build/oci), docker-archive:FILE.\n"
        "With --push the images go to the registry (registry/owner/name:version) and no local output\n"
        "is written unless --output is given: a base image's layers are then mounted or skipped,\n"
        "never downloaded.",
    )
    build.add_argument("images", nargs="*", metavar="IMAGE", help="images to build (default: all)")
    _config_args(build)
    build.add_argument("-o", "--output", help="oci:DIR or docker-archive:FILE")
    build.add_argument("--push", action="store_true", help="push to the registry after building")
    build.add_argument("--registry", help="registry host[:port] to push to (overrides config and LAMINA_REGISTRY)")
    build.add_argument("--owner", help="repository owner/namespace (overrides config and LAMINA_OWNER)")
    build.add_argument("--tag", help="tag for the pushed and written images (default: version, else latest)")
    build.add_argument("--format", choices=["oci", "docker"], help="manifest format (default: oci)")
    build.add_argument("--compression", choices=["gzip", "zstd"], help="layer compression (default: gzip)")
    build.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                       help="allow plain http for HOST (loopback is always allowed)")
    build.add_argument("--username", help="registry user (with --password-stdin)")
    build.add_argument("--password-stdin", action="store_true", help="read the registry password from stdin")
    build.add_argument("--no-check", action="store_true", help="do not run `lamina check` on the services")
    build.add_argument("--json", action="store_true", help="print a JSON summary on stdout (digests, layers, pushes)")
    build.add_argument("--chunk-size", type=int, metavar="BYTES", help="upload blobs in chunks of this size")
    build.add_argument("--locked", action="store_true",
                       help="fail if lamina.lock is missing or stale instead of resolving (and never write it)")
    build.set_defaults(run=cmd_build)

    lock = sub.add_parser(
        "lock",
        help="resolve the images' Debian and Python packages again and write lamina.lock",
        description="Resolve the Debian packages (against the signed archive) and the Python requirements (with "
        "uv, for each image's platform and Python, its base's pins as constraints) of the images named (default: "
        "all), and of the images built on them, and record the result in lamina.lock next to lamina.toml (NAME.lock "
        "for another NAME.toml). `lamina build` resolves only what the lock lacks or what changed; this command "
        "is how a lock is updated on purpose. Nothing is downloaded or built.",
    )
    lock.add_argument("images", nargs="*", metavar="IMAGE", help="images to re-resolve (default: all)")
    _config_args(lock)
    lock.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                      help="allow plain http for HOST when reading a base image")
    lock.set_defaults(run=cmd_lock, registry=None, owner=None)

    check = sub.add_parser(
        "check",
        help="find what would fail at run time: missing imports, duplicated or conflicting requirements",
        description="Check each service against the layers of its image, without building them: "
        "(a) a module its code imports that no layer provides (error), (b) a requirement its base already has "
        "(warning), (c) a pin that contradicts its base's (error), (d) a declared requirement the code never "
        "imports (note). `lamina build` runs the same checks and fails on errors.",
    )
    check.add_argument("images", nargs="*", metavar="IMAGE", help="images to check (default: all)")
    _config_args(check)
    check.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    check.set_defaults(run=cmd_check, registry=None, owner=None)

    init = sub.add_parser(
        "init",
        help="write lamina.toml for a repository laid out like the seed (libs/, apps/svc_*/)",
        description="Find libs/requirements-base.txt, libs/requirements-ml.txt and the service folders, put each "
        "service on base-ml when its requirements or imports need an ML-only distribution (else base-runtime), "
        "find each service's ASGI app, and write lamina.toml. The seed's build args are flags here.",
    )
    init.add_argument("directory", nargs="?", default=".", help="the repository (default: .)")
    init.add_argument("--registry", help="REGISTRY: where --push will send images")
    init.add_argument("--owner", help="OWNER: the namespace in the registry")
    init.add_argument("--version", default="0.1.0", help="the services' version (default: 0.1.0)")
    init.add_argument("--base-version", help="BASE_VERSION: the bases' tag (default: the version)")
    init.add_argument("--store", help="store directory (default: $LAMINA_STORE or ~/.cache/lamina)")
    init.set_defaults(run=cmd_init)

    test = sub.add_parser(
        "test",
        help="start images with podman and wait until their health checks pass",
        description="Build the images (default: every service), write them to the OCI layout, start each with "
        "podman and run its health check until it passes. podman's command and run flags come from "
        "LAMINA_PODMAN and LAMINA_PODMAN_RUN_FLAGS, else [test] podman / run_flags in lamina.toml.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example, on a machine without systemd:\n"
        "  LAMINA_PODMAN='podman --cgroup-manager cgroupfs' LAMINA_PODMAN_RUN_FLAGS='--network host' lamina test",
    )
    test.add_argument("images", nargs="*", metavar="IMAGE", help="images to test (default: the services)")
    _config_args(test)
    test.add_argument("-o", "--output", help="the OCI layout to run from (default: [project] output)")
    test.set_defaults(run=cmd_test, registry=None, owner=None)

    export = sub.add_parser(
        "export",
        help="write the seed's Dockerfiles, docker-bake.json and build scripts for BuildKit/buildah users",
        description="Generate, from lamina.toml and lamina.lock, one Dockerfile per image (pinned to the lock: "
        "apt name=version, pip --require-hashes), the seed's build scripts (dockerfiles), docker-bake.json (bake), "
        "or both (all), with a .dockerignore and a README, into infra/docker/ (or --out). Same config and lock, "
        "same bytes: --check exits 1 naming the files that differ (for CI).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lamina export all                        write infra/docker/\n"
        "  lamina export dockerfiles --check        exit 1 when the committed files are stale\n"
        "  lamina export bake --lock                resolve what lamina.lock lacks first",
    )
    export.add_argument("kind", choices=KINDS, help="dockerfiles (and build scripts), bake (docker-bake.json), or all")
    _config_args(export)
    export.add_argument("--out", metavar="DIR", help="output folder inside the project (default: infra/docker)")
    export.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the files that differ from what would be written")
    export.add_argument("--lock", action="store_true",
                        help="resolve what lamina.lock lacks (or what changed) first, and write it")
    export.add_argument("--registry", help="REGISTRY default in the files (overrides config and LAMINA_REGISTRY)")
    export.add_argument("--owner", help="OWNER default in the files (overrides config and LAMINA_OWNER)")
    export.set_defaults(run=cmd_export)

    store = sub.add_parser("store", help="inspect and clean the blob store")
    store_sub = store.add_subparsers(title="store commands", metavar="ACTION")
    for name, func, text in (
        ("path", cmd_store_path, "print the store's location"),
        ("verify", cmd_store_verify, "re-hash every blob and report corrupt ones"),
        ("gc", cmd_store_gc, "remove blobs that no recorded image uses"),
    ):
        p = store_sub.add_parser(name, help=text, description=text)
        p.add_argument("--store", help="store directory (default: $LAMINA_STORE or ~/.cache/lamina)")
        p.set_defaults(run=func)
        if name == "verify":
            p.add_argument("--delete", action="store_true", help="also delete the corrupt blobs")
        if name == "gc":
            p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    return parser


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="path to lamina.toml (default: found upwards from .)")
    parser.add_argument("--store", help="store directory (default: $LAMINA_STORE or ~/.cache/lamina)")


def _load(args: argparse.Namespace) -> ProjectConfig:
    path = args.config if args.config else find_config(Path.cwd())
    return load_config(path).with_overrides(registry=args.registry, owner=args.owner)


def _registries(args: argparse.Namespace, config: ProjectConfig) -> Registries:
    credential = None
    if args.username:
        if not args.password_stdin:
            raise LaminaError("--username needs --password-stdin", hint="echo \"$TOKEN\" | lamina build --push --username me --password-stdin")
        credential = Credential(args.username, sys.stdin.readline().rstrip("\n"), "--username/--password-stdin")
    return Registries(
        insecure=frozenset(config.insecure_registries) | frozenset(args.insecure_registry),
        credential=credential,
        credential_host=config.registry if credential else None,
        chunk_size=args.chunk_size,
    )


def cmd_build(args: argparse.Namespace) -> int:
    config = _load(args)
    if not config.images:
        raise LaminaError(f"{config.path} declares no images", hint="add an [images.NAME] table")
    names = args.images or list(config.images)
    store = BlobStore.open_default(args.store)
    tag = args.tag or config.version or "latest"
    output = None
    if args.output or not args.push:  # a push alone needs no local copy (nor the base's layers)
        output = Output.parse(args.output or config.output, Path.cwd() if args.output else config.root)
    registries = _registries(args, config)
    try:
        with store.shared_lock():
            family = _family(config, store, registries, args, tag=tag, pushing=args.push, locked=args.locked)
            built = _run_family(family, names)
            named = _named(config, family.products(built), tag)
            _print_built(built)
            findings = family.conflicts if args.no_check else family.check(built)
            _print_findings(findings)
            if _errors(findings):
                raise LaminaError(f"lamina check found {_errors(findings)} error(s): the images would fail at run time",
                                  hint="fix them (each names the file and line)"
                                  + ("" if args.no_check else ", or build with --no-check"))
            if family.resolved:
                resolved = sorted(set(family.resolved))
                console.print(f"resolved packages of {', '.join(resolved)} into {family.lock.path.name}")
            if output is not None:
                started = time.monotonic()
                fetched = write_output(output, named, store, registries)
                extra = f", fetched {_size(fetched)} of base layers" if fetched else ""
                console.print(f"wrote {output} in {time.monotonic() - started:.2f}s{extra}")
            reports = _push(config, named, store, registries) if args.push else []
    finally:
        registries.close()
    if args.json:
        print(json.dumps(_summary(built, output, reports), indent=2))
    return 0


def _family(config: ProjectConfig, store: BlobStore, registries: Registries, args: argparse.Namespace, *, tag: str,
            pushing: bool = False, locked: bool = False, update: Sequence[str] = ()) -> Family:
    options = BuildOptions(
        format=getattr(args, "format", None) or config.format,
        compression=getattr(args, "compression", None) or config.compression,
        source=config.source,
        revision=config.revision,
        version=config.version,
    )
    return Family(config, store, registries, options, tag, pushing=pushing, locked=locked, update=update)


def _named(config: ProjectConfig, products: Iterable[Product], tag: str) -> list[Named]:
    """Images with their output names: services get the tag (version or --tag), bases their own."""
    return [Named(p.name, naming.tag_for(config, p.spec, tag), p.artifact) for p in products]


def _run_family(family: Family, names: Sequence[str], *, lock_only: bool = False) -> list[BuiltImage]:
    """Build (or only lock) with a live status line per image."""
    states: dict[str, str] = {}
    with console.status("building…") as status:

        def show(image: str, text: str) -> None:
            states[image] = text
            status.update("  ".join(f"[bold]{k}[/]: {v}" for k, v in list(states.items())[-3:]))

        def layer_done(image: str, layer: BuiltLayer) -> None:
            verb = "reused" if layer.reused else "built"
            show(image, f"{verb} {layer.description[:60]} ({_size(layer.layer.size)})")

        family.on_status = show
        family.on_layer = layer_done
        return family.build(names, lock_only=lock_only)


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args)
    names = args.images or list(config.images)
    store = BlobStore.open_default(args.store)
    registries = Registries(insecure=frozenset(config.insecure_registries))
    try:
        with store.shared_lock():
            family = _family(config, store, registries, args, tag=config.version or "latest")
            built = _run_family(family, names, lock_only=True)
            findings = family.check(built)
    finally:
        registries.close()
    if args.json:
        print(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        _print_findings(findings)
        if not findings:
            console.print(f"checked {sum(1 for b in built if config.image(b.name).service)} services: nothing to report")
    return 1 if _errors(findings) else 0


def cmd_test(args: argparse.Namespace) -> int:
    config = _load(args)
    podman = Podman.configured(config.podman, config.podman_run_flags)
    if podman is None:
        console.print("[yellow]skipped:[/] podman is not installed, so no image can be started "
                      "(apt-get install podman, or set LAMINA_PODMAN to its command)")
        return 0
    names = args.images or [n for n, spec in config.images.items() if spec.service]
    if not names:
        raise LaminaError(f"{config.path} has no services to test", hint="name the images to test")
    store = BlobStore.open_default(args.store)
    tag = config.version or "latest"
    output = Output.parse(args.output or config.output, Path.cwd() if args.output else config.root)
    if output.kind != "oci":
        raise LaminaError("lamina test runs images from an OCI layout", hint="use --output oci:DIR")
    registries = Registries(insecure=frozenset(config.insecure_registries))
    try:
        with store.shared_lock():
            family = _family(config, store, registries, args, tag=tag)
            named = _named(config, family.products(_run_family(family, names)), tag)
            write_output(output, named, store, registries)
    finally:
        registries.close()
    failed = 0
    for n in (n for n in named if n.name in names):
        healthcheck = n.images[0].config.json().get("config", {}).get("Healthcheck") or {}
        with console.status(f"testing [bold]{n.ref_name}[/]: waiting for its health check…"):
            result = HealthTest(podman, f"oci:{output.path}:{n.ref_name}", healthcheck).run()
        if result.healthy:
            console.print(f"[green]healthy[/] {n.ref_name} in {result.seconds:.1f}s ({result.checks} checks)")
        else:
            failed += 1
            console.print(f"[bold red]unhealthy[/] {n.ref_name}: {result.detail}")
            if result.logs:
                console.print(escape(result.logs.rstrip()))
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    config = _load(args)
    if not config.images:
        raise LaminaError(f"{config.path} declares no images", hint="add an [images.NAME] table")
    folder, relative = out_folder(config, args.out)
    store = BlobStore.open_default(args.store)
    registries = Registries(insecure=frozenset(config.insecure_registries))
    try:
        with store.shared_lock():
            family = _family(config, store, registries, args, tag=config.version or "latest", locked=not args.lock)
            try:
                built = _run_family(family, list(config.images), lock_only=True)
            except LaminaError as e:
                if args.lock or not isinstance(e, LockStaleError):
                    raise
                raise LaminaError(e.message, hint=f"run `lamina lock` and commit {family.lock.path.name}, "
                                  f"or `lamina export {args.kind} --lock` to resolve it first") from None
    finally:
        registries.close()
    if family.conflicts:
        _print_findings(family.conflicts)
        raise LaminaError(f"{len(family.conflicts)} pin conflict(s): these images cannot be built, nor exported")
    if family.resolved:
        resolved = sorted(set(family.resolved))
        console.print(f"resolved packages of {', '.join(resolved)} into {family.lock.path.name}")
    files = render(collect(config, built, family.lock, relative), args.kind)
    shown = _short_path(str(folder))
    if args.check:
        problems = stale(folder, files, args.kind)
        for path, why in problems:
            console.print(f"[bold red]stale[/] {escape(shown)}/{escape(path)}: {why}")
        if problems:
            console.print(f"run `lamina export {args.kind}` to regenerate {len(problems)} file(s)"
                          + (f" (--out {escape(args.out)})" if args.out else ""))
            return 1
        console.print(f"{len(files)} files in {escape(shown)} are up to date")
        return 0
    result = write(folder, files, args.kind)
    for path in result.written:
        console.print(f"wrote {escape(shown)}/{escape(path)}")
    for path in result.removed:
        console.print(f"removed {escape(shown)}/{escape(path)} (no longer generated)")
    console.print(f"{len(result.written)} written, {len(result.unchanged)} unchanged, {len(result.removed)} removed "
                  f"in {escape(shown)}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    root = Path(args.directory).absolute()
    store = BlobStore.open_default(args.store)
    with store.shared_lock(), console.status("looking at the repository…"):
        path, layout = init_project(root, store=store, registry=args.registry, owner=args.owner,
                                    version=args.version, base_version=args.base_version)
    console.print(f"wrote {path}")
    console.print(f"  base requirements: {layout.base_requirements.relative_to(root)}"
                  + (f", ML requirements: {layout.ml_requirements.relative_to(root)}" if layout.ml_requirements else ""))
    for service in layout.services:
        base = "base-ml" if service.name in layout.ml_services else "base-runtime"
        app = layout.apps.get(service.name) or "no ASGI app found (set its command)"
        console.print(f"  {service.relative_to(root)} → on {base}, runs {app}")
    console.print("next: lamina check, then lamina build")
    return 0


def _errors(findings: Sequence[Finding]) -> int:
    return sum(1 for f in findings if f.level == "error")


def _print_findings(findings: Sequence[Finding]) -> None:
    colors = {"error": "bold red", "warning": "yellow", "note": "cyan"}
    for f in sorted(findings, key=lambda f: ("error", "warning", "note").index(f.level)):
        where = _short_path(f.where)
        console.print(f"[{colors[f.level]}]{f.level}[/] {escape(f'[{f.code}]')} {escape(where)}: {f.image} {escape(f.message)}")
        if f.hint:
            console.print(f"  hint: {escape(f.hint)}")


def _short_path(where: str) -> str:
    """``/abs/path/file.py:3`` relative to the current directory when it is below it."""
    try:
        return str(Path(where).relative_to(Path.cwd()))
    except ValueError:
        return where


def _summary(built: list[BuiltImage], output: Output | None, reports: list[PushReport]) -> dict:
    return {
        "output": str(output) if output else None,
        "images": [
            {
                "name": b.name,
                "digest": b.image.digest,
                "layers": len(b.image.layers),
                "built_layers": len(b.layers) - b.reused,
                "reused_layers": b.reused,
                "platform": str(b.platform),
                "debian_packages": b.added("debian"),
                "python_distributions": b.added("python"),
                "downloaded_bytes": b.downloaded,
                "seconds": round(b.seconds, 3),
            }
            for b in built
        ],
        "pushed": [
            {"target": r.target, "digest": r.digest, "bytes_uploaded": r.bytes_uploaded, "blobs": r.outcomes}
            for r in reports
        ],
    }


def cmd_lock(args: argparse.Namespace) -> int:
    config = _load(args)
    wanted = args.images or list(config.images)
    store = BlobStore.open_default(args.store)
    lock = Lock.for_config(config.path)
    old = {(n, str(p)): (lock.section(n, str(p), "debian"), lock.section(n, str(p), "python"))
           for n, spec in config.images.items() for p in spec.platforms}
    registries = Registries(insecure=frozenset(config.insecure_registries) | frozenset(args.insecure_registry))
    try:
        with store.shared_lock():
            family = _family(config, store, registries, args, tag=config.version or "latest", update=wanted)
            built = _run_family(family, list(config.images), lock_only=True)  # images on the named ones follow
    finally:
        registries.close()
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("image", "Debian packages", "Python packages", "changes"):
        table.add_column(column)
    for b in built:
        where = str(b.platform)
        debian, python = family.lock.section(b.name, where, "debian"), family.lock.section(b.name, where, "python")
        if debian is None and python is None:
            continue
        before = old.get((b.name, where), (None, None))
        changes = [_lock_changes(before[0], debian, "packages") if debian else "",
                   _lock_changes(before[1], python, "dists") if python else ""]
        table.add_row(b.name if len(config.image(b.name).platforms) == 1 else f"{b.name} ({where})", str(len(debian["packages"])) if debian else "–",
                      str(len(python["dists"])) if python else "–", "; ".join(c for c in changes if c))
    if not table.row_count:
        console.print("no image installs Debian or Python packages: nothing to lock")
        return 0
    console.print(table)
    console.print(f"wrote {family.lock.path}")
    return 0


def _lock_changes(old: dict | None, new: dict, key: str) -> str:
    if old is None:
        return "new"
    before = {p["name"]: p["version"] for p in old.get(key, [])}
    after = {p["name"]: p["version"] for p in new[key]}
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(n for n in after.keys() & before.keys() if after[n] != before[n])
    parts = [f"+{n}" for n in added] + [f"-{n}" for n in removed] + [f"{n} {before[n]} → {after[n]}" for n in changed]
    if not parts:
        return "unchanged"
    return ", ".join(parts[:6]) + (f" (+{len(parts) - 6} more)" if len(parts) > 6 else "")


def _print_built(built: list[BuiltImage]) -> None:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("image", "digest", "layers", "new", "size", "time"):
        table.add_column(column, justify="right" if column in ("layers", "new", "size", "time") else "left")
    for b in built:
        layers = b.image.layers
        table.add_row(
            b.name,
            b.image.digest[:19],
            str(len(layers)),
            str(len(b.layers) - b.reused),
            _size(sum(d.size for d in layers)),
            f"{b.seconds:.2f}s",
        )
    console.print(table)


def _push(config: ProjectConfig, named: list[Named], store: BlobStore,
          registries: Registries) -> list[PushReport]:
    targets = [(n, config.target(config.image(n.name), n.tag)) for n in named]
    with console.status("pushing…") as status:
        reports = push(targets, store, registries, on_blob=lambda d, outcome: status.update(f"pushing: {outcome} {d[:19]}"))
    for report in reports:
        console.print(
            f"pushed [bold]{report.target}[/] {report.digest[:19]}: "
            f"{report.count('uploaded')} uploaded ({_size(report.bytes_uploaded)}), "
            f"{report.count('mounted')} mounted, {report.count('exists')} already there"
        )
    return reports


def _store(args: argparse.Namespace) -> BlobStore:
    return BlobStore.open_default(args.store)


def cmd_store_path(args: argparse.Namespace) -> int:
    print(args.store or default_store_root())
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    bad = store.verify(delete=args.delete)
    if not bad:
        console.print(f"all blobs in {store.root} match their digests")
        return 0
    for digest in bad:
        console.print(f"[red]corrupt[/] {digest}" + (" (deleted)" if args.delete else ""))
    if not args.delete:
        console.print("run `lamina store verify --delete` to remove them; the next build makes them again")
    return 1


def cmd_store_gc(args: argparse.Namespace) -> int:
    store = _store(args)
    removed, freed = store.gc(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    console.print(f"{verb} {removed} blobs ({_size(freed)}) from {store.root}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"
