"""``lamina export``: the seed's Dockerfiles, docker-bake.json and build scripts, pinned to the lock."""

from __future__ import annotations

import argparse

from lamina.cli import output
from lamina.cli.options import HelpFormatter, add_config, examples, open_session
from lamina.errors import LaminaError, LockStaleError
from lamina.export import KINDS, collect, out_folder, render, stale, write
from lamina.oci.store import atomic_write


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write the seed's Dockerfiles, docker-bake.json and build scripts for BuildKit/buildah users",
        description="Generate, from lamina.toml and lamina.lock, one Dockerfile per image (pinned to the lock: "
        "apt name=version, pip --require-hashes), the seed's build scripts (dockerfiles), docker-bake.json (bake), "
        "or both (all), with a .dockerignore and a README, into infra/docker/ (or --out). Reads lamina.toml and "
        "lamina.lock (it never resolves, unless --lock); writes only into that folder, and removes the files it "
        "generated before and no longer does. Same config and lock, same bytes: --check exits 1 naming the files "
        "that differ (for CI).",
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina export all", "write infra/docker/"),
            ("lamina export dockerfiles --check", "exit 1 when the committed files are stale"),
            ("lamina export bake --lock", "resolve what lamina.lock lacks first"),
            ("lamina export all --out deploy/docker --registry ghcr.io --owner acme", "elsewhere, other defaults"),
        ),
    )
    p.add_argument("kind", choices=(*KINDS, "ci"), help="dockerfiles (and build scripts), bake (docker-bake.json), or "
                   "all; ci: the nightly update pipeline (GitHub/Gitea Actions, GitLab CI, renovate.json) at the "
                   "repository's root (or --out)")
    add_config(p)
    p.add_argument("--out", metavar="DIR", help="output folder inside the project (default: infra/docker)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming the files that differ from what would be written")
    p.add_argument("--lock", action="store_true",
                   help="resolve what lamina.lock lacks (or what changed) first, and write it")
    p.add_argument("--install", metavar="COMMAND",
                   help="ci: the command that installs lamina in the pipeline (default: pip install lamina==VERSION)")
    p.add_argument("--registry", help="REGISTRY default in the files (overrides config and LAMINA_REGISTRY)")
    p.add_argument("--owner", help="OWNER default in the files (overrides config and LAMINA_OWNER)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.kind == "ci":
        return run_ci(args)
    console = output.console
    with open_session(args) as session:
        config = session.config
        names = session.images()
        folder, relative = out_folder(config, args.out)
        with session.store.shared_lock():
            family = session.family(locked=not args.lock)
            try:
                built = output.run_family(family, names, lock_only=True)
            except LockStaleError as e:
                raise LockStaleError(e.message, hint=f"run `lamina lock` and commit {family.lock.path.name}, "
                                     f"or `lamina export {args.kind} --lock` to resolve it first") from None
    if family.conflicts:
        output.print_findings(family.conflicts)
        raise LaminaError(f"{len(family.conflicts)} pin conflict(s): these images cannot be built, nor exported")
    if family.resolved:
        resolved = sorted(set(family.resolved))
        console.print(f"resolved packages of {', '.join(resolved)} into {family.lock.path.name}")
    files = render(collect(config, built, family.lock, relative), args.kind)
    shown = output.escape(output.short_path(str(folder)))
    if args.check:
        problems = stale(folder, files, args.kind)
        for path, why in problems:
            console.print(f"[bold red]stale[/] {shown}/{output.escape(path)}: {why}")
        if problems:
            console.print(f"run `lamina export {args.kind}` to regenerate {len(problems)} file(s)"
                          + (f" (--out {output.escape(args.out)})" if args.out else ""))
            return 1
        console.print(f"{len(files)} files in {shown} are up to date")
        return 0
    result = write(folder, files, args.kind)
    for path in result.written:
        console.print(f"wrote {shown}/{output.escape(path)}")
    for path in result.removed:
        console.print(f"removed {shown}/{output.escape(path)} (no longer generated)")
    console.print(f"{len(result.written)} written, {len(result.unchanged)} unchanged, {len(result.removed)} removed "
                  f"in {shown}")
    return 0


def run_ci(args: argparse.Namespace) -> int:
    """``lamina export ci``: the update pipeline's files at the repository's root (or --out)."""
    from pathlib import Path

    from lamina.export.ci import ci_files, repository_root

    console = output.console
    with open_session(args) as session:
        root = Path(args.out).absolute() if args.out else repository_root(session.config)
        files = ci_files(session.config, root, install=args.install)
    shown = output.escape(output.short_path(str(root)) or ".")
    differ = [rel for rel, data in files.items() if not (root / rel).is_file() or (root / rel).read_bytes() != data]
    if args.check:
        for rel in differ:
            console.print(f"[bold red]stale[/] {shown}/{output.escape(rel)}")
        if not differ:
            console.print(f"{len(files)} CI files in {shown} are up to date")
        return 1 if differ else 0
    for rel in differ:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, files[rel])
        console.print(f"wrote {shown}/{output.escape(rel)}")
    console.print(f"{len(differ)} written, {len(files) - len(differ)} unchanged; GitLab: include "
                  "`.gitlab/lamina-update.gitlab-ci.yml` from .gitlab-ci.yml and add a pipeline schedule")
    return 0
