"""The report in a terminal: rich tables, the largest things first, each list cut to what fits."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lamina.report.diff import FamilyDiff
from lamina.report.family import LAMINA_LAYER_BUDGET, RUNTIME_LAYER_LIMIT, FamilyReport
from lamina.report.units import human

SHOW = 10


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold")
    for c in columns:
        if c == "layer":  # long group descriptions: one line, cut
            table.add_column(c, no_wrap=True, overflow="ellipsis", max_width=44)
        else:
            table.add_column(c, justify="right" if c in RIGHT else "left", overflow="fold")
    return table


RIGHT = {"layers", "compressed", "unpacked", "adds", "wasted", "efficiency", "bytes", "size", "push", "copies",
         "removable", "pull", "#", "files"}


def print_family(report: FamilyReport, console: Console, *, layers: bool = True) -> None:
    images = _table("image", "layers", "compressed", "unpacked", "base", "adds", "wasted", "efficiency",
                    title=f"images (runtime limit {RUNTIME_LAYER_LIMIT} layers, lamina's budget {LAMINA_LAYER_BUDGET})")
    for i in report.images:
        added = i.added
        images.add_row(i.name, str(len(i.layers)), human(i.compressed), human(i.unpacked), i.base or "–",
                       f"{len(added)} layers, {human(sum(x.size for x in added))}", human(i.wasted),
                       f"{100 * i.efficiency:.1f}%")
    console.print(images)
    if layers:
        for i in report.images:
            if not i.added:
                continue
            t = _table("#", "compressed", "unpacked", "layer", "packages or code", title=f"{i.name}: " + (f"what it adds on {i.base}" if i.base else "its layers"))
            for n, x in enumerate(i.added, start=i.base_layers + 1):
                parts = [f"{c.owner.label} ({human(c.bytes)})" for c in x.components[:4]]
                more = f" +{len(x.components) - 4} more" if len(x.components) > 4 else ""
                t.add_row(str(n), human(x.size), human(x.bytes), escape(x.description[:60]), escape(", ".join(parts) + more))
            console.print(t)
    names = [i.name for i in report.images]
    m = _table("shared layers", *names, title="sharing: layers (compressed bytes) each pair of images has in common")
    for name, row in zip(names, report.matrix(), strict=True):
        m.add_row(name, *(f"{c} ({human(b)})" for c, b in row))
    console.print(m)
    saved = report.images_bytes - report.registry_bytes
    console.print(
        f"registry stores [bold]{human(report.registry_bytes)}[/] for the family; the images add up to "
        f"{human(report.images_bytes)} (sharing saves {human(saved)}); the seed's monolithic method would "
        f"store about {human(report.monolithic_bytes)}\n")
    t = _table("package", "kind", "unpacked", "files", "layer", "images", title="largest packages")
    for p in report.largest[:SHOW]:
        t.add_row(p.owner.label, p.owner.kind, human(p.bytes), str(p.files), report.layers[p.layers[0]].description[:50],
                  str(len(p.images)))
    console.print(t)
    t = _table("content", "size", "copies", "removable", "images", title=f"files in more than one layer "
               f"({human(report.duplicate_bytes)} removable: every copy but one)")
    for d in report.duplicates[:SHOW]:
        t.add_row(escape(d.paths[0] + (f" (+{len(d.paths) - 1} paths)" if len(d.paths) > 1 else "")), human(d.size),
                  str(len(d.layers)), human(d.removable), ", ".join(d.images))
    console.print(t)
    hidden = [(i.name, h) for i in report.images for h in i.hidden]
    if hidden:
        t = _table("image", "path", "size", "in layer", "hidden by", title="files hidden by a later layer (wasted)")
        for name, h in sorted(hidden, key=lambda x: -x[1].size)[:SHOW]:
            t.add_row(name, escape(h.path), human(h.size), str(h.layer + 1), "a whiteout" if h.by < 0 else f"layer {h.by + 1}")
        console.print(t)
    t = _table("package", "kind", "layer", "size", "images rebuilt", "push",
               title="blast radius: what moving one package a version rebuilds and pushes")
    for r in report.blast[:SHOW * 2]:
        t.add_row(r.owner.label, r.owner.kind, escape(r.layer_description[:50]), human(r.layer_size),
                  str(len(r.images)), human(r.push_bytes))
    console.print(t)
    if len(report.blast) > SHOW * 2:
        console.print(f"({len(report.blast) - SHOW * 2} more rows in --json and --html)")


def print_diff(diff: FamilyDiff, console: Console) -> None:
    t = _table("package", "kind", "before", "after", title="packages")
    for p in diff.packages:
        t.add_row(p.name, p.kind, p.before or "–", p.after or "–")
    if diff.packages:
        console.print(t)
    else:
        console.print("no package changed")
    t = _table("image", "layers", "removed", "added", "pull")
    for i in diff.images:
        if not i.changed:
            continue
        t.add_row(i.name, f"{len(i.removed_layers)} → {len(i.added_layers)}",
                  escape("; ".join(x.description[:40] for x in i.removed_layers)),
                  escape("; ".join(f"{x.description[:40]} ({human(x.size)})" for x in i.added_layers)), human(i.pull_bytes))
    console.print(t)
    unchanged = [i.name for i in diff.images if not i.changed]
    if unchanged:
        console.print(f"unchanged: {', '.join(unchanged)}")
    for name in diff.only_before:
        console.print(f"only before: {name}")
    for name in diff.only_after:
        console.print(f"only after: {name}")
    console.print(f"to push: [bold]{human(diff.push_bytes)}[/] in {diff.push_blobs} blobs; "
                  f"to pull (every changed image): {human(diff.pull_bytes)}")
