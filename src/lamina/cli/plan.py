"""``lamina plan`` (and ``lamina build --dry-run``): the rebuild graph, before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

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
from lamina.publish import Output
from lamina.updates.plan import (
    FamilyPlan,
    options_for,
    plan_family,
    plan_push,
    published_in_layout,
    published_in_registry,
)

DESCRIPTION = (
    "Say what `lamina build` would do, before doing any of it: for each image, whether it changes and why (its base "
    "changes; which layers must be built, and which package moved or which files changed, against the image "
    "published now in the output, or in the registry with --push), and each image's digest when every layer it "
    "needs is already in the store. With --push, what the push would send: blobs the registry lacks (uploaded), "
    "blobs it can mount, and the bytes; exact once the layers are built (say `lamina build` first, then "
    "`lamina plan --push`). Reads lamina.toml, lamina.lock (resolving what it lacks in memory only), the store and "
    "the registry (HEAD and GET only); downloads, builds and writes nothing."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="the rebuild graph: which images and layers a build would change, why, and the bytes a push sends",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
        epilog=examples(
            ("lamina plan", "what `lamina build` would change in build/oci"),
            ("lamina plan --push --json", "what `lamina build --push` would send, as JSON"),
            ("lamina plan --markdown > graph.md", "for a pull request's body"),
        ),
    )
    add_plan_flags(p)
    add_build_flags(p, images="images to plan (default: all)",
                    output="the OCI layout the build writes to (default: [project] output)",
                    push="plan a push: compare with the registry, count what it lacks",
                    tag="the services' tag (default: version, else latest)",
                    platform=argparse.SUPPRESS,
                    locked="fail if lamina.lock is missing or stale",
                    json="the plan")
    add_config(p)
    add_registry(p)
    p.set_defaults(func=run)


def add_plan_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="print the plan as a Markdown table on stdout")


def run(args: argparse.Namespace) -> int:
    with open_session(args) as session:
        config = session.config
        names = session.images(args.images)
        tag = args.tag or session.tag
        options = options_for(config, format=getattr(args, "format", None),
                              compression=getattr(args, "compression", None))
        with session.store.shared_lock(), output.status("planning…"):
            if args.push:
                published = published_in_registry(config, session.registries, tag, list(config.images))
                previous = published
            else:
                out = Output.parse(args.output or config.output, Path.cwd() if args.output else config.root)
                layout = out.path if out.kind == "oci" else None
                published = published_in_layout(layout, config, tag) if layout else {}
                previous = published_in_layout(layout, config, tag, any_tag=True) if layout else {}
            plan = plan_family(config, session.store, session.registries, options, names, tag=tag,
                               pushing=args.push, locked=args.locked, published=published, previous=previous)
            if args.push:
                plan.push = plan_push(plan, config, session.registries, tag)
    if args.json:
        output.print_json(plan.to_json())
    elif args.markdown:
        print(markdown(plan), end="")
    else:
        print_plan(plan)
    return 0


def print_plan(plan: FamilyPlan) -> None:
    console = output.console
    t = output.table("image", "changes", "digest", "why")
    for image in plan.images:
        t.add_row(output.escape(image.ref), "yes" if image.changes else "no",
                  (image.digest or "(after building)")[:19], output.escape("; ".join(image.why)))
    console.print(t)
    for image in plan.images:
        for layer in image.to_build:
            console.print(f"  build [bold]{output.escape(layer.description[:70])}[/] for {image.name}: "
                          f"{output.escape(', '.join(layer.why))}")
    console.print(f"{len(plan.layers_to_build)} layer(s) to build; "
                  f"{sum(1 for i in plan.images if i.changes)} of {len(plan.images)} image(s) change")
    if plan.push is not None:
        push = plan.push
        uploads = sum(1 for t in push.targets for o in t["blobs"].values() if o == "uploaded")
        mounts = sum(1 for t in push.targets for o in t["blobs"].values() if o == "mounted")
        exact = "" if push.exact else " so far (the layers still to build are counted once built)"
        console.print(f"push: {uploads} blob(s) to upload ({output.size(push.upload_bytes)}), {mounts} to mount, "
                      f"{output.size(push.manifest_bytes)} of manifests{exact}")


def markdown(plan: FamilyPlan) -> str:
    """The plan as Markdown (a pull request's body)."""
    lines = ["| image | changes | why | layers to build |", "|---|---|---|---|"]
    for image in plan.images:
        layers = "<br>".join(f"{layer.description}: {', '.join(layer.why)}" for layer in image.to_build)
        lines.append(f"| `{image.ref}` | {'yes' if image.changes else 'no'} | {'; '.join(image.why)} | {layers} |")
    lines.append("")
    lines.append(f"{len(plan.layers_to_build)} layer(s) to build.")
    if plan.push is not None:
        lines.append(f"Push: {plan.push.upload_bytes} bytes to upload, {plan.push.manifest_bytes} bytes of manifests"
                     + ("" if plan.push.exact else " (so far: some layers are built first)") + ".")
    return "\n".join(lines) + "\n"


def from_build(args: argparse.Namespace) -> int:
    """``lamina build --dry-run``: the plan of that build."""
    args.markdown = False
    if getattr(args, "platform", None):
        platforms_arg(args.platform)  # checked; the plan covers every platform the config lists
    return run(args)
