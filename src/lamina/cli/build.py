"""``lamina build``: build images into the store and write them to an output or push them."""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from lamina.cli import output
from lamina.cli.options import (
    HelpFormatter,
    add_build_flags,
    add_config,
    add_registry,
    examples,
    open_session,
    platforms_arg,
)
from lamina import naming
from lamina.cache import pushed_images, remote_layers, seed_records, stage_pushed
from lamina.config import find_config
from lamina.errors import LaminaError, ServiceCheckFailed, UsageError
from lamina.oci.compress import Compression
from lamina.publish import Output, push, write_output
from lamina.publish.registry import EarlyUploads
from lamina.summary import build_summary

if TYPE_CHECKING:
    from lamina.family import Family
    from lamina.oci.cache import RemoteLayers
    from lamina.oci.remote import PushReport
    from lamina.session import Session
    from lamina.supply.keys import PrivateKey

# lamina.onhost (--on) and lamina.supply (SBOMs, signatures: cryptography) are imported where they are
# used: a build that needs neither starts ~30 ms sooner (a no-op build is mostly start-up)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="build images into the store and write them to an output (or push them)",
        description="Build the images of lamina.toml (all, or those named, with the bases they need) and write "
        "them out. Reads lamina.toml, lamina.lock (resolving and recording what it lacks, unless --locked), the "
        "Debian archive and PyPI (what the store lacks), and the bases' layers; writes the layers into the store, "
        "then the images to the output: oci:DIR (default: [project] output, else oci:build/oci) or "
        "docker-archive:FILE. With --push the images go to the registry (registry/owner/name:tag) and no local "
        "output is written unless --output is given: a base image's layers are then mounted or skipped, never "
        "downloaded. Runs the checks of `lamina check` and fails on their errors.",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina build", "every image, into build/oci"),
            ("lamina build hello -o docker-archive:hello.tar", "one image (and its bases) as a tar for docker load"),
            ("lamina build --locked --json", "CI: exactly what lamina.lock says; digests as JSON on stdout"),
            ("lamina build --push --registry 127.0.0.1:5000 --owner me", "push, uploading only missing blobs"),
            ('echo "$TOKEN" | lamina build --push --username me --password-stdin', "with a credential"),
            ("lamina build base-ml --push --on ssh://deploy@build-host", "build and push on a machine next to the registry"),
            ("lamina build --push --sign cosign.key", "sign, and attach SBOMs and signed provenance"),
        ),
    )
    add_config(p)
    add_build_flags(p, images="images to build (default: all)",
                    output="oci:DIR or docker-archive:FILE (default: [project] output, else oci:build/oci)",
                    push="push to the registry after building",
                    tag="tag for the pushed and written images (default: version, else latest)",
                    platform="build only this platform of each image (repeat for several; default: every platform "
                             "the config lists). A docker-archive holds one platform per image",
                    locked="fail if lamina.lock is missing or stale instead of resolving (and never write it)",
                    json="a summary (digests, layers, pushes)")
    p.add_argument("--format", choices=["oci", "docker"], help="manifest format (default: oci)")
    p.add_argument("--compression", choices=list(get_args(Compression)),
                   help="layer compression: gzip (ISA-L, the default), gzip-small (zlib-ng level 6: ~10%% smaller, "
                   "4x the CPU, the same bytes on every CPU) or zstd (OCI only)")
    p.add_argument("--no-check", action="store_true", help="do not run `lamina check` on the services")
    p.add_argument("--published-bases", action="store_true",
                   help="take the project images the named ones are built on as published in the registry (the "
                        "seed's Step 2): never built here, nothing of them downloaded, not pushed again; fails "
                        "naming the reference when one is not there")
    p.add_argument("--no-remote-cache", action="store_true",
                   help="do not read or update the layer cache in the registry (docs/cache.md): build every layer "
                        "the store lacks")
    p.add_argument("--dry-run", action="store_true",
                   help="build nothing: print the rebuild graph (as `lamina plan`: layers to build and why, bytes to push)")
    p.add_argument("--report", metavar="FILE",
                   help="also write the layer report of the built images (FILE.html: a page, else JSON; see lamina report)")
    supply = p.add_argument_group("supply chain (docs/supply-chain.md)")
    supply.add_argument("--sign", type=Path, metavar="KEY",
                        help="sign the pushed images with KEY (cosign's format, `lamina keygen`) and attach SLSA "
                        "provenance signed with it; the password comes from LAMINA_KEY_PASSWORD or COSIGN_PASSWORD, "
                        "else stdin")
    supply.add_argument("--no-sbom", action="store_true",
                        help="do not attach SBOMs to the images written to an OCI layout or pushed")
    add_registry(p)
    on = p.add_argument_group("building on another machine (docs/cache.md)")
    on.add_argument("--on", metavar="ssh://[USER@]HOST[:PORT][/DIR]",
                    help="send the project (only files changed since the last send) to HOST with ssh and run this "
                         "build there (lamina must be installed there); its output and exit status are ours. "
                         "Credentials are the remote's own. Default DIR: ~/lamina-builds/<project folder>")
    on.add_argument("--known-hosts", type=Path, metavar="FILE",
                    help="the host keys to trust (default: ssh's known_hosts); an unknown key always fails")
    on.add_argument("--identity", type=Path, metavar="FILE", help="the ssh private key to log in with")
    on.add_argument("--remote-lamina", default="lamina", metavar="COMMAND",
                    help="how to run lamina there (default: lamina on the PATH of a non-interactive ssh session)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.on:
        return run_on(args)
    if args.dry_run:
        from lamina.cli import plan

        return plan.from_build(args)
    key = _signing_key(args)
    with open_session(args) as session:
        config, store = session.config, session.store
        names = session.images(args.images)
        tag = args.tag or session.tag
        out = None
        if args.output or not args.push:  # a push alone needs no local copy (nor the base's layers)
            out = Output.parse(args.output or config.output, Path.cwd() if args.output else config.root)
        remote = None if args.no_remote_cache else remote_layers(
            config, session.registries, store, pushing=args.push or args.published_bases, fetch=out is not None,
            warn=output.warn)
        with store.shared_lock():
            family = session.family(tag=tag, format=args.format, compression=args.compression,
                                    pushing=args.push, locked=args.locked, platforms=platforms_arg(args.platform),
                                    remote=remote, published_bases=args.published_bases)
            early = _early_uploads(session, family, names, tag) if args.push and not args.published_bases else None
            with early or contextlib.nullcontext():  # a build that fails stops its uploads
                built = output.run_family(family, names, on_layer=early.layer_built if early else None)
                named = session.named(family.products(built), tag)
                _check(args, family, built, remote)
                if out is not None:
                    _write(out, named, session, args, key)
                reports = _publish(args, session, named, built, names, early, remote, key) if args.push else []
                if args.report:
                    _write_report(Path(args.report), built, {n.name: n.tag for n in named}, session)
    if args.json:
        output.print_json(build_summary(built, out, reports, remote))
    return 0


def _check(args: argparse.Namespace, family: Family, built: list, remote: RemoteLayers | None) -> None:
    """Print what was built and what the checks found; fail on an error (before anything is published)."""
    if remote is not None and remote.hits and not args.no_check:
        seed_records(remote)  # what the reused layers' wheels provide, for the check
    output.print_built(built)
    findings = family.conflicts if args.no_check else family.check(built)
    output.print_findings(findings)
    if errors := output.error_count(findings):
        raise ServiceCheckFailed(f"lamina check found {errors} error(s): the images would fail at run time",
                                 hint="fix them (each names the file and line)"
                                 + ("" if args.no_check else ", or build with --no-check"))
    if family.resolved:
        resolved = sorted(set(family.resolved))
        output.console.print(f"resolved packages of {', '.join(resolved)} into {family.lock.path.name}")


def _write(out: Output, named: list, session: Session, args: argparse.Namespace, key: PrivateKey | None) -> None:
    """The images into the local output (an OCI layout or an archive), with SBOMs in a layout."""
    started = time.monotonic()
    fetched = write_output(out, named, session.store, session.registries)
    extra = f", fetched {output.size(fetched)} of base layers" if fetched else ""
    output.console.print(f"wrote {out} in {time.monotonic() - started:.2f}s{extra}")
    if out.kind == "oci" and not args.no_sbom:
        _attach_to_layout(session, out.path, named, key)


def _publish(args: argparse.Namespace, session: Session, named: list, built: list, names: Sequence[str],
             early: EarlyUploads | None, remote: RemoteLayers | None, key: PrivateKey | None) -> list[PushReport]:
    """Push the images, record their layers in the registry cache, attach SBOMs and signatures."""
    config, store = session.config, session.store
    targets = session.targets([n for n in named if not args.published_bases or n.name in names])
    with ThreadPoolExecutor(1, thread_name_prefix="lamina-cache-write") as side, output.status("pushing…") as update:
        # the layer cache's new index goes up beside the images; its tag moves only once they are pushed
        staging = None if args.no_remote_cache else side.submit(
            stage_pushed, config, pushed_images(built, targets), store, session.registries, output.warn, remote)
        reports = push(targets, store, session.registries, early=early,
                       on_blob=lambda d, outcome: update(f"pushing: {outcome} {d[:19]}"))
    for report in reports:
        output.print_push(report)
    if staging is not None and (staged := staging.result()) is not None:
        staged.commit()
    if not args.no_sbom or key is not None:
        from lamina.supply.project import attach_and_sign

        with output.status("attaching SBOMs and provenance…"):
            signed = attach_and_sign(config, store, session.registries, targets, key)
        for s in signed:
            output.console.print(f"signed {s.digest[:19]}" + ("" if s.added else " (already signed with this key)"))
    return reports


def _early_uploads(session: Session, family: Family, names: Sequence[str], tag: str | None) -> EarlyUploads:
    """Each new layer goes up as soon as it is built, to the repository of the first image holding it."""
    config = session.config
    repositories = {}
    for name, _ in family.keys(names):
        spec = config.image(name)
        repositories[name] = naming.push_target(config, spec, naming.tag_for(config, spec, tag or session.tag))
    return EarlyUploads(repositories, session.store, session.registries)


def run_on(args: argparse.Namespace) -> int:
    """``--on ssh://...``: the same build, on that host."""
    from lamina.onhost import Host, SendReport, build_there, remote_argv

    host = Host.parse(args.on)
    config = (args.config.absolute() if args.config else find_config(Path.cwd()))
    root = config.parent

    def sent(report: SendReport) -> None:
        what = f"{len(report.sent)} changed file(s)" + (f", {len(report.deleted)} deleted" if report.deleted else "")
        output.console.print(f"sent {what} to {host} ({output.size(report.bytes)})")
        if getattr(args, "verbose", False):
            for path in report.sent:
                output.console.print(f"  {path}")

    if not hasattr(args, "argv"):
        raise UsageError("--on needs the command line as given", hint="run it through lamina.cli.main(argv)")
    argv = remote_argv(args.argv, root, config)
    return build_there(host, root, argv, known_hosts=args.known_hosts, identity=args.identity,
                       lamina=args.remote_lamina, on_sent=sent)


def _write_report(path: Path, built: list, tags: dict[str, str], session) -> None:
    """The report of the platform images just built (``build --report``); see ``lamina report``."""
    from lamina.report.locate import built_images
    from lamina.report.write import analyze_with_store, write_report

    several = len({b.platform for b in built}) > 1
    images = [(f"{b.name}:{tags.get(b.name, session.tag)}" + (f" ({b.platform})" if several else ""), b.image)
              for b in built]
    with output.status("reading layers for the report…"):
        report = analyze_with_store(built_images(images, session.store, session.registries), session.store)
        write_report(path, report, title=session.config.root.name)
    output.console.print(f"wrote the report to {path}")


def _signing_key(args: argparse.Namespace) -> PrivateKey | None:
    """The key of --sign, decrypted before anything is built (a wrong password fails at once)."""
    if args.sign is None:
        return None
    from lamina.supply.keys import PASSWORD_VARIABLES, PrivateKey, read_password

    if args.password_stdin and not any(v in os.environ for v in PASSWORD_VARIABLES):
        raise UsageError("--password-stdin reads the registry password; the key's password must then come from "
                         f"{PASSWORD_VARIABLES[0]} or {PASSWORD_VARIABLES[1]}")
    return PrivateKey.load(args.sign, read_password())


def _attach_to_layout(session, path: Path, named, key: PrivateKey | None) -> None:  # noqa: ANN001
    """SBOMs (and with --sign the signed provenance) beside the images in the layout."""
    from lamina.supply.project import attach_to_layout

    try:
        attach_to_layout(session.config, session.store, path, named, key)
    except LaminaError as e:
        if key is not None:
            raise
        output.console.print(f"[yellow]no SBOMs attached in {path}[/]: {e.message}")
