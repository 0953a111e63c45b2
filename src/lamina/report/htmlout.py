"""The report as one self-contained HTML page: inline CSS, a few lines of inline JS (table sorting),
SVG treemaps computed here. No CDN, no fonts, no network: it works offline and as a CI artifact.

Every number is text in a real element with a stable id or class (``#images``, ``#sharing-matrix``,
``#blast-radius``, ``tr.blast-row``, ``#diff`` …) so it can be searched, scraped and tested.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from lamina import __version__
from lamina.report.diff import FamilyDiff
from lamina.report.family import LAMINA_LAYER_BUDGET, RUNTIME_LAYER_LIMIT, FamilyReport, ImageReport, LayerReport
from lamina.report.thresholds import Breach
from lamina.report.treemap import Rect, squarify
from lamina.report.units import human

KIND_COLORS = {"deb": ("#c2410c", "#fdba74"), "python": ("#1d4ed8", "#93c5fd"), "files": ("#15803d", "#86efac")}
TREEMAP_W, TREEMAP_H = 1000, 420
ROWS = 200

CSS = """
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--accent:#4338ca}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#111827;color:#f9fafb;padding:18px 32px}header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:4px 0 0;color:#9ca3af;font-size:13px}
main{max-width:1280px;margin:0 auto;padding:20px 32px 48px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:0 0 20px}
h2{font-size:16px;margin:0 0 4px}.note{color:var(--muted);margin:0 0 12px;font-size:13px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:0 0 20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.card .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}.card .k{color:var(--muted);font-size:12px}
.card.good .v{color:#15803d}.card.warn .v{color:#b45309}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;color:#374151;background:#f3f4f6;white-space:nowrap}
td.n,th.n{text-align:right;white-space:nowrap}
th[data-sort]{cursor:pointer;user-select:none}th[data-sort]:after{content:" \\2195";color:#9ca3af}
code,.digest{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.digest{color:var(--muted)}
table.matrix td,table.matrix thead th{text-align:center;white-space:nowrap}table.matrix td.self{background:#eef2ff;font-weight:600}
table.matrix td .b,table.matrix th .b{display:block;color:var(--muted);font-size:11px;font-weight:400}
table.matrix th,table.matrix td{padding:5px 6px}table.matrix tbody th{white-space:nowrap}
.bar{height:6px;background:#e0e7ff;border-radius:3px;margin-top:3px}.bar i{display:block;height:6px;background:var(--accent);border-radius:3px}
.legend span{display:inline-block;margin-right:14px;font-size:12px;color:var(--muted)}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
figure.treemap{margin:14px 0 6px}figure.treemap figcaption{font-weight:600;margin-bottom:4px}
figure.treemap svg{width:100%;height:auto;display:block;border:1px solid var(--line);border-radius:6px;background:#fff}
svg text{font:11px system-ui,"DejaVu Sans",sans-serif;fill:#111827;stroke:none;pointer-events:none}
svg .tm-layer>rect.frame{fill:none;stroke:#111827;stroke-width:1.5}
svg .tm-part{stroke:#fff;stroke-width:.6}svg .tm-layer.base .tm-part rect{opacity:.42}
.pill{display:inline-block;padding:0 6px;border-radius:9px;font-size:11px;background:#f3f4f6;color:#374151}
.pill.deb{background:#ffedd5;color:#9a3412}.pill.python{background:#dbeafe;color:#1e40af}.pill.files{background:#dcfce7;color:#166534}
.bad{color:#b91c1c;font-weight:600}.ok{color:#15803d}
details summary{cursor:pointer;color:var(--accent);margin:6px 0}
#diff .scroll+.scroll{margin-top:16px}#diff tr[data-changed="false"] td{color:var(--muted)}
#diff tr[data-changed="true"] td:first-child{font-weight:600}
"""

JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th[data-sort]').forEach(function(th,i){
    th.addEventListener('click',function(){
      var col=Array.prototype.indexOf.call(th.parentNode.children,th),num=th.dataset.sort==='num';
      var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=a.cells[col],y=b.cells[col];
        var p=x.dataset.v!==undefined?x.dataset.v:x.textContent,q=y.dataset.v!==undefined?y.dataset.v:y.textContent;
        if(num){return dir*(parseFloat(p)-parseFloat(q));}return dir*p.localeCompare(q);});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def render_html(report: FamilyReport, *, title: str = "lamina report", diff: FamilyDiff | None = None,
                breaches: Sequence[Breach] = ()) -> str:
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header><h1 id="title">{e(title)}</h1><p>{len(report.images)} images, {len(report.layers)} distinct layers'
        f' &middot; lamina {e(__version__)}</p></header><main>',
        _cards(report), _breaches(breaches), _diff(diff) if diff is not None else "", _images(report), _matrix(report),
    ]
    parts += [_treemaps(report), _largest(report), _duplicates(report), _hidden(report), _blast(report),
              f"</main><script>{JS}</script></body></html>"]
    return "\n".join(p for p in parts if p)


def _cards(report: FamilyReport) -> str:
    saved = report.images_bytes - report.registry_bytes
    wasted = sum(i.wasted for i in {i.digest: i for i in report.images}.values())
    cards = [
        ("registry", human(report.registry_bytes), "stored by a registry for the family", "good"),
        ("images-sum", human(report.images_bytes), f"the images added up ({human(saved)} saved by sharing)", ""),
        ("monolithic", human(report.monolithic_bytes), "the seed's monolithic method (estimate)", ""),
        ("duplicates", human(report.duplicate_bytes), "removable duplicate copies", "warn" if report.duplicate_bytes else ""),
        ("wasted", human(wasted), "hidden by later layers", "warn" if wasted else "good"),
        ("layers", str(max((len(i.layers) for i in report.images), default=0)),
         f"most layers in one image (limit {RUNTIME_LAYER_LIMIT})", ""),
    ]
    items = "".join(f'<div class="card {cls}" id="card-{key}"><div class="v">{e(v)}</div><div class="k">{e(k)}</div></div>'
                    for key, v, k, cls in cards)
    return f'<div class="cards" id="summary">{items}</div>'


def _breaches(breaches: Sequence[Breach]) -> str:
    if not breaches:
        return ""
    rows = "".join(f'<li class="breach">{e(b.message)}</li>' for b in breaches)
    return f'<section id="thresholds"><h2 class="bad">Thresholds exceeded</h2><ul>{rows}</ul></section>'


def _num(value: int, text: str | None = None) -> str:
    return f'<td class="n" data-v="{value}">{e(text if text is not None else human(value))}</td>'


def _images(report: FamilyReport) -> str:
    biggest = max((i.unpacked for i in report.images), default=1) or 1
    rows = []
    for i in report.images:
        added = i.added
        over = len(i.layers) > LAMINA_LAYER_BUDGET
        rows.append(
            f'<tr class="image-row" id="image-{slug(i.name)}" data-image="{e(i.name)}"><td><b>{e(i.name)}</b>'
            f'<div class="digest">{e(i.digest[:19])}</div></td>'
            f'<td class="n{" bad" if over else ""}" data-v="{len(i.layers)}">{len(i.layers)} / {RUNTIME_LAYER_LIMIT}</td>'
            + _num(i.compressed) + f'<td class="n" data-v="{i.unpacked}">{human(i.unpacked)}'
            f'<div class="bar"><i style="width:{100 * i.unpacked / biggest:.1f}%"></i></div></td>'
            f'<td>{e(i.base or "–")}</td><td class="n" data-v="{sum(x.size for x in added)}">{_layers(len(added))}, '
            f'{human(sum(x.size for x in added))}</td>' + _num(i.wasted)
            + f'<td class="n" data-v="{i.efficiency:.6f}">{100 * i.efficiency:.1f}%</td></tr>')
    head = ('<tr><th data-sort="text">image</th><th class="n" data-sort="num">layers</th>'
            '<th class="n" data-sort="num">compressed</th><th class="n" data-sort="num">unpacked</th><th data-sort="text">base</th>'
            '<th class="n" data-sort="num">adds on its base</th><th class="n" data-sort="num">wasted</th>'
            '<th class="n" data-sort="num">efficiency</th></tr>')
    return (f'<section id="images"><h2>Images</h2><p class="note">Compressed: the layer blobs a registry stores and a '
            f'client pulls. Unpacked: the files of every layer (what a runtime stores). Layers are counted against the '
            f'runtimes\' limit of {RUNTIME_LAYER_LIMIT} (lamina builds at most {LAMINA_LAYER_BUDGET}).</p>'
            f'<div class="scroll"><table class="sortable" id="images-table"><thead>{head}</thead><tbody>'
            + "".join(rows) + "</tbody></table></div></section>")


def _matrix(report: FamilyReport) -> str:
    names = [i.name for i in report.images]
    head = "<tr><th></th>" + "".join(f'<th scope="col">{_two_line(n)}</th>' for n in names) + "</tr>"
    rows = []
    for a, row in zip(names, report.matrix(), strict=True):
        cells = "".join(f'<td class="{"self" if a == b else ""}" data-a="{e(a)}" data-b="{e(b)}" data-layers="{c}" '
                        f'data-bytes="{n}">{c}<span class="b">{human(n)}</span></td>' for b, (c, n) in zip(names, row, strict=True))
        rows.append(f'<tr class="matrix-row" data-image="{e(a)}"><th scope="row">{e(a)}</th>{cells}</tr>')
    saved = report.images_bytes - report.registry_bytes
    return (f'<section id="sharing"><h2>Sharing</h2><p class="note">Layers (and their compressed bytes) each pair of images '
            f'has in common; the diagonal is the image itself. A registry stores <b id="registry-bytes">{human(report.registry_bytes)}</b> '
            f'for the family, against <b id="images-bytes">{human(report.images_bytes)}</b> for the images added up '
            f'({human(saved)} saved) and about <b id="monolithic-bytes">{human(report.monolithic_bytes)}</b> with the '
            f'seed\'s monolithic method (every service built alone on the OS base).</p>'
            f'<div class="scroll"><table class="matrix" id="sharing-matrix"><thead>{head}</thead><tbody>'
            + "".join(rows) + "</tbody></table></div></section>")


def _two_line(name: str) -> str:
    repo, sep, tag = name.rpartition(":")
    return f'{e(repo)}<span class="b">:{e(tag)}</span>' if sep else e(name)


def _treemaps(report: FamilyReport) -> str:
    legend = "".join(f'<span><i style="background:{KIND_COLORS[k][1]}"></i>{label}</span>'
                     for k, label in (("deb", "Debian package"), ("python", "Python distribution"), ("files", "code and files")))
    figures = []
    for i, image in enumerate(report.images):
        figure = _treemap(image)
        if i >= 2:
            figure = f"<details><summary>{e(image.name)}: {len(image.layers)} layers, {human(image.unpacked)}</summary>{figure}</details>"
        figures.append(figure)
    return (f'<section id="treemaps"><h2>What each image holds</h2><p class="note">Each image by layer (framed) and, '
            f'inside each layer, by package or code; areas are unpacked bytes. Hover for names and sizes.</p>'
            f'<div class="legend">{legend}</div>' + "".join(figures) + "</section>")


def _treemap(image: ImageReport) -> str:
    layers = [x for x in image.layers if x.bytes > 0]
    layers.sort(key=lambda x: -x.bytes)
    outer = squarify([x.bytes for x in layers], Rect(0, 0, TREEMAP_W, TREEMAP_H))
    groups = []
    own = {x.digest for x in image.added}
    for n, (layer, box) in enumerate(zip(layers, outer, strict=True)):
        groups.append(_treemap_layer(image, layer, box, n, faded=layer.digest not in own))
    return (f'<figure class="treemap" id="treemap-{slug(image.name)}" data-image="{e(image.name)}">'
            f'<figcaption>{e(image.name)} <span class="note">{len(image.layers)} layers, {human(image.unpacked)} unpacked, '
            f'{human(image.compressed)} compressed' + (f'; pale: the {image.base_layers} layers of {e(image.base)}' if image.base else "")
            + '</span></figcaption>'
            f'<svg viewBox="0 0 {TREEMAP_W} {TREEMAP_H}" role="img" aria-label="treemap of {e(image.name)}">'
            + "".join(groups) + "</svg></figure>")


def _treemap_layer(image: ImageReport, layer: LayerReport, box: Rect, n: int, *, faded: bool) -> str:
    index = next(k for k, x in enumerate(image.layers) if x.digest == layer.digest) + 1
    inner_box = Rect(box.x + 1, box.y + 1, max(box.w - 2, 0), max(box.h - 2, 0))
    comps = [c for c in layer.components if c.bytes > 0]
    rects = squarify([c.bytes for c in comps], inner_box)
    parts = []
    for k, (c, r) in enumerate(zip(comps, rects, strict=True)):
        dark, light = KIND_COLORS.get(c.owner.kind, KIND_COLORS["files"])
        fill = light if k % 2 == 0 else _mix(light, dark, 0.25)
        label = f"{c.owner.label} — {human(c.bytes)}, {c.files} files (layer {index}: {layer.description}, added by {layer.added_by})"
        text = ""
        if r.w > 60 and r.h > 16:
            chars = int(r.w / 6.5)
            name = c.owner.label if len(c.owner.label) <= chars else c.owner.label[: max(chars - 1, 1)] + "…"
            text = f'<text x="{r.x + 4:.1f}" y="{r.y + 13:.1f}">{e(name)}</text>'
            if r.h > 30:
                text += f'<text x="{r.x + 4:.1f}" y="{r.y + 26:.1f}" opacity=".7">{e(human(c.bytes))}</text>'
        parts.append(f'<g class="tm-part" data-kind="{e(c.owner.kind)}"><title>{e(label)}</title>'
                     f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" fill="{fill}"/>{text}</g>')
    cls = "tm-layer base" if faded else "tm-layer own"
    return (f'<g class="{cls}" data-layer="{e(layer.digest)}"><title>layer {index}: {e(layer.description)} — '
            f'{human(layer.bytes)} unpacked, {human(layer.size)} compressed</title>' + "".join(parts)
            + f'<rect class="frame" x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}"/></g>')


def _mix(a: str, b: str, t: float) -> str:
    x = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    y = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(p + (q - p) * t):02x}" for p, q in zip(x, y, strict=True))


def _layers(n: int) -> str:
    return f"{n} layer" if n == 1 else f"{n} layers"


def _pill(kind: str) -> str:
    return f'<span class="pill {e(kind)}">{e(kind)}</span>'


def _largest(report: FamilyReport) -> str:
    rows = "".join(
        f'<tr class="package-row"><td>{e(p.owner.name)}</td><td>{e(p.owner.version)}</td><td>{_pill(p.owner.kind)}</td>'
        + _num(p.bytes) + _num(p.files, str(p.files))
        + f'<td>{e(report.layers[p.layers[0]].description)}</td>'
        + f'<td class="n" data-v="{len(p.images)}" title="{e(", ".join(p.images))}">{len(p.images)}</td></tr>'
        for p in report.largest)
    return _table_section("largest", "Largest packages", "Unpacked bytes of each package across the family, where it sits "
                          "and which images carry it.", "largest-table",
                          [("package", "text"), ("version", "text"), ("kind", "text"), ("unpacked", "num"),
                           ("files", "num"), ("layer", "text"), ("images", "num")], rows)


def _duplicates(report: FamilyReport) -> str:
    rows = "".join(
        f'<tr class="duplicate-row"><td><code>{e(d.paths[0])}</code>'
        + (f' <span class="note">+{len(d.paths) - 1} other paths</span>' if len(d.paths) > 1 else "")
        + "</td>" + _num(d.size) + _num(len(d.layers), str(len(d.layers))) + _num(d.removable)
        + f'<td>{e(", ".join(d.images))}</td></tr>' for d in report.duplicates[:ROWS])
    return _table_section("duplicates", "Files in more than one layer",
                          f"The same content stored in several distinct layers; only the extra copies count "
                          f"(<b id='duplicate-bytes'>{human(report.duplicate_bytes)}</b> removable in "
                          f"{len(report.duplicates)} contents). A layer shared by images is one copy.",
                          "duplicates-table", [("path", "text"), ("size", "num"), ("copies", "num"),
                                               ("removable", "num"), ("images", "text")], rows)


def _hidden(report: FamilyReport) -> str:
    items = sorted(((i.name, h) for i in report.images for h in i.hidden), key=lambda x: -x[1].size)
    rows = "".join(
        f'<tr class="hidden-row" data-image="{e(name)}"><td>{e(name)}</td><td><code>/{e(h.path)}</code></td>' + _num(h.size)
        + _num(h.layer + 1, str(h.layer + 1)) + f'<td>{"a whiteout" if h.by < 0 else f"layer {h.by + 1}"}</td></tr>'
        for name, h in items[:ROWS])
    return _table_section("hidden", "Wasted: files hidden by a later layer",
                          "A file a lower layer holds but the image never shows (replaced or deleted above it): pulled "
                          "and stored for nothing. Efficiency = 1 − wasted / unpacked.", "hidden-table",
                          [("image", "text"), ("path", "text"), ("size", "num"), ("in layer", "num"),
                           ("hidden by", "text")], rows or '<tr><td colspan="5" class="ok">nothing is hidden</td></tr>')


def _blast(report: FamilyReport) -> str:
    rows = "".join(
        f'<tr class="blast-row" data-package="{e(r.owner.name)}"><td>{e(r.owner.name)}'
        + (f'<div class="digest">{e(r.origin)}</div>' if r.origin else "") + f'</td><td>{e(r.owner.version)}</td>'
        f'<td>{_pill(r.owner.kind)}</td><td>{e(r.layer_description)}<div class="digest">{e(r.layer[:19])}</div></td>'
        + _num(r.layer_size) + f'<td>{e(r.added_by)}</td>' + _num(len(r.images), str(len(r.images)))
        + f'<td class="imgs">{e(", ".join(r.images))}</td>' + _num(r.push_bytes) + "</tr>"
        for r in report.blast)
    return _table_section("blast", "Blast radius",
                          "For every system package and Python distribution: the layer a version change rebuilds, the "
                          "images that carry that layer (each gets a new config and manifest) and the bytes a push "
                          "then sends. Click a column to sort.", "blast-radius",
                          [("package", "text"), ("version", "text"), ("kind", "text"), ("layer", "text"),
                           ("layer size", "num"), ("added by", "text"), ("images", "num"), ("rebuilt", "text"),
                           ("push", "num")], rows)


def _diff(diff: FamilyDiff) -> str:
    pkgs = "".join(f'<tr class="diff-package" data-package="{e(p.name)}"><td>{e(p.name)}</td><td>{_pill(p.kind)}</td>'
                   f'<td>{e(p.before or "–")}</td><td>{e(p.after or "–")}</td><td>{e(p.change)}</td></tr>'
                   for p in diff.packages) or '<tr><td colspan="5">no package changed</td></tr>'
    imgs = "".join(
        f'<tr class="diff-image" data-image="{e(i.name)}" data-changed="{str(i.changed).lower()}"><td>{e(i.name)}</td>'
        f'<td>{e("; ".join(x.description for x in i.removed_layers) or "–")}</td>'
        f'<td>{e("; ".join(f"{x.description} ({human(x.size)})" for x in i.added_layers) or "–")}</td>'
        + _num(i.pull_bytes) + "</tr>" for i in diff.images)
    extra = "".join(f"<p>only before: {e(n)}</p>" for n in diff.only_before) + "".join(
        f"<p>only after: {e(n)}</p>" for n in diff.only_after)
    return (f'<section id="diff"><h2>Changes</h2><p class="note">To push: <b id="diff-push-bytes" data-v="{diff.push_bytes}">'
            f'{human(diff.push_bytes)}</b> in {diff.push_blobs} blobs (layers, configs and manifests the earlier state '
            f'lacks). To pull, every changed image: <b id="diff-pull-bytes">{human(diff.pull_bytes)}</b>.</p>{extra}'
            f'<div class="scroll"><table id="diff-packages"><thead><tr><th>package</th><th>kind</th><th>before</th>'
            f'<th>after</th><th>change</th></tr></thead><tbody>{pkgs}</tbody></table></div>'
            f'<div class="scroll"><table id="diff-images"><thead><tr><th>image</th><th>layers removed</th><th>layers added</th>'
            f'<th class="n">pull</th></tr></thead><tbody>{imgs}</tbody></table></div></section>')


def _table_section(sid: str, title: str, note: str, table_id: str, columns: Iterable[tuple[str, str]], rows: str) -> str:
    numeric = ' class="n"'
    head = "".join(f'<th{numeric if kind == "num" else ""} data-sort="{kind}">{e(name)}</th>' for name, kind in columns)
    return (f'<section id="{sid}"><h2>{e(title)}</h2><p class="note">{note}</p><div class="scroll">'
            f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div></section>')
