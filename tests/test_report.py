"""`lamina report` and `lamina diff` (lamina.report): the numbers checked against an independent reading of
the OCI layout, the HTML page rendered in headless Chromium, and units (treemap, scan, owners, thresholds)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import require_tool
from projects import make_hello_project, run_lamina

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
MOTD_BASE = b"base motd\n" * 500  # 5000 bytes in the busybox image, hidden by hello's own /etc/motd
MOTD_APP = b"app motd\n" * 100
DATA = hashlib.sha256(b"seed").digest() * 625  # 20000 bytes, planted in three layers of three images

FAMILY_EXTRA = """
[[images.hello.copy]]
src = "extra/motd"
dest = "/etc/motd"

[images.hello2]
from = "busybox"
cmd = ["/app/hello.sh"]
[[images.hello2.copy]]
src = "app2"
dest = "/app"
"""


def make_family(root: Path) -> Path:
    """busybox (rootfs with a motd and a data file) → hello (app with the same data file, and a motd over the
    base's) and hello2 (another app with the same data file)."""
    root.mkdir(parents=True, exist_ok=True)
    config = make_hello_project(root)
    config.write_text(config.read_text() + FAMILY_EXTRA)
    (root / "rootfs" / "etc").mkdir(exist_ok=True)
    (root / "rootfs" / "etc" / "motd").write_bytes(MOTD_BASE)
    (root / "rootfs" / "usr" / "share").mkdir(parents=True, exist_ok=True)
    (root / "rootfs" / "usr" / "share" / "data.bin").write_bytes(DATA)
    (root / "app" / "data.bin").write_bytes(DATA)
    (root / "extra").mkdir(exist_ok=True)
    (root / "extra" / "motd").write_bytes(MOTD_APP)
    (root / "app2").mkdir(exist_ok=True)
    (root / "app2" / "data.bin").write_bytes(DATA)
    (root / "app2" / "hello.sh").write_text("#!/bin/sh\necho hello two\n")
    status = root / "rootfs" / "var" / "lib" / "dpkg" / "status.d"  # packages, as lamina's Debian layers record them
    status.mkdir(parents=True, exist_ok=True)
    (status / "busybox-static").write_text("Package: busybox-static\nVersion: 1:1.35.0-4\nArchitecture: amd64\n")
    (status / "busybox-static.md5sums").write_text("0123  bin/busybox\n")
    site = root / "app" / "site-packages"
    (site / "greeting").mkdir(parents=True, exist_ok=True)
    (site / "greeting" / "__init__.py").write_text("WORD = 'hello'\n" * 40)
    (site / "greeting-1.2.dist-info").mkdir(exist_ok=True)
    (site / "greeting-1.2.dist-info" / "RECORD").write_text("greeting/__init__.py,,\ngreeting-1.2.dist-info/RECORD,,\n")
    return config


def lamina(root: Path, *args: str, check: bool = True, store: Path | None = None):
    env = {"LAMINA_STORE": str(store or root.parent / "store"), "NO_PROXY": "127.0.0.1,localhost"}
    return run_lamina(*args, cwd=root, env=env, check=check)


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "project"
    make_family(root)
    lamina(root, "build")
    return root


# -- an independent reading of the layout ----------------------------------------------------------------


def read_layout(layout: Path) -> dict[str, dict]:
    """ref name → {manifest, config digest/size, manifest digest/size, layers [(digest, size)]}."""
    index = json.loads((layout / "index.json").read_text())
    out = {}
    for entry in index["manifests"]:
        if "artifactType" in entry:  # an SBOM attached to an image
            continue
        data = (layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes()
        manifest = json.loads(data)
        out[entry["annotations"]["org.opencontainers.image.ref.name"]] = {
            "manifest": (entry["digest"], len(data)),
            "config": (manifest["config"]["digest"], manifest["config"]["size"]),
            "layers": [(x["digest"], x["size"]) for x in manifest["layers"]],
        }
    return out


def layer_files(layout: Path, digest: str) -> dict[str, tuple[int, str]]:
    """path → (size, sha256) of the regular files of one layer, read with tarfile (whole, it is small)."""
    data = gzip.decompress((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            if m.isreg():
                content = tar.extractfile(m).read()
                files[m.name.lstrip("./").lstrip("/")] = (len(content), hashlib.sha256(content).hexdigest())
    return files


def test_report_numbers_match_an_independent_reading_of_the_layout(family):
    from lamina.report import analyze, layout_images

    layout = family / "build" / "oci"
    truth = read_layout(layout)
    report = analyze(layout_images(layout))
    assert sorted(i.name for i in report.images) == sorted(truth)
    files = {d: layer_files(layout, d) for t in truth.values() for d, _ in t["layers"]}
    for name, t in truth.items():
        image = report.image(name)
        assert image.compressed == sum(s for _, s in t["layers"])
        assert len(image.layers) == len(t["layers"])
        assert image.documents == t["manifest"][1] + t["config"][1]
        assert image.unpacked == sum(size for d, _ in t["layers"] for size, _ in files[d].values())
        for other, u in truth.items():
            common = {d for d, _ in t["layers"]} & {d for d, _ in u["layers"]}
            assert report.shared(image, report.image(other)) == (len(common), sum(s for d, s in u["layers"] if d in common))
        # wasted: a file of a lower layer whose path a higher layer holds again (these images have no whiteouts)
        wasted = 0
        for i, (d, _) in enumerate(t["layers"]):
            above = {p for d2, _ in t["layers"][i + 1:] for p in files[d2]}
            wasted += sum(size for p, (size, _) in files[d].items() if p in above)
        assert image.wasted == wasted
    distinct = {d: s for t in truth.values() for d, s in t["layers"]}
    documents = {t[k][0]: t[k][1] for t in truth.values() for k in ("manifest", "config")}
    assert report.registry_bytes == sum(distinct.values()) + sum(documents.values())
    assert report.images_bytes == sum(sum(s for _, s in t["layers"]) + t["manifest"][1] + t["config"][1]
                                      for t in truth.values())
    # duplicates: a content held by k distinct layers leaves k - 1 removable copies
    holders: dict[str, set[str]] = {}
    sizes: dict[str, int] = {}
    for d, layer in files.items():
        for size, sha in layer.values():
            if size:
                holders.setdefault(sha, set()).add(d)
                sizes[sha] = size
    assert report.duplicate_bytes == sum(sizes[s] * (len(ls) - 1) for s, ls in holders.items())
    # the planted ones
    data = next(d for d in report.duplicates if d.digest == "sha256:" + hashlib.sha256(DATA).hexdigest())
    assert (len(data.layers), data.removable) == (3, 2 * len(DATA))
    assert set(data.images) == {"busybox:1.0", "hello:1.0", "hello2:1.0"}
    hello = report.image("hello:1.0")
    assert [(h.path, h.size) for h in hello.hidden] == [("etc/motd", len(MOTD_BASE))]
    assert hello.wasted == len(MOTD_BASE) and hello.efficiency == pytest.approx(1 - len(MOTD_BASE) / hello.unpacked)
    assert report.image("hello2:1.0").wasted == 0
    assert hello.base == "busybox:1.0" and hello.base_layers == len(truth["busybox:1.0"]["layers"])


def test_report_cli_json_and_thresholds(family):
    from lamina.report.thresholds import EXIT_THRESHOLD

    data = json.loads(lamina(family, "report", "--json").stdout)
    assert data["schema"] == "lamina.report/1"  # the fields docs/report.md documents (added to, never changed)
    assert set(data) == {"schema", "limits", "images", "layers", "family", "largest_packages", "duplicates",
                         "blast_radius", "thresholds"}
    assert set(data["images"][0]) == {
        "name", "digest", "platform", "source", "compressed_bytes", "documents_bytes", "unpacked_bytes", "visible_bytes",
        "layer_count", "runtime_layer_limit", "lamina_layer_budget", "base", "base_layer_count", "added", "wasted_bytes",
        "efficiency", "layers", "hidden_files", "hidden_file_count", "packages"}
    assert set(data["family"]) == {"registry_bytes", "images_bytes", "monolithic_bytes", "duplicate_bytes",
                                   "wasted_bytes", "sharing"}
    images = {i["name"]: i for i in data["images"]}
    assert set(images) == {"busybox:1.0", "hello:1.0", "hello2:1.0"}
    assert images["hello:1.0"]["wasted_bytes"] == len(MOTD_BASE) and images["hello:1.0"]["base"] == "busybox:1.0"
    assert data["family"]["duplicate_bytes"] >= 2 * len(DATA)
    assert {(r["name"], r["version"]) for r in data["blast_radius"]} == {("busybox-static", "1:1.35.0-4"), ("greeting", "1.2")}
    text = lamina(family, "report").stderr
    assert "hello2:1.0" in text and "blast radius" in text
    over = lamina(family, "report", "--max-wasted", "1kB", "--max-layers", "2", check=False)
    assert over.returncode == EXIT_THRESHOLD, over.stderr
    assert "hello:1.0 wastes 5.0 kB in 1 files hidden by later layers, over --max-wasted 1.0 kB (largest: /etc/motd" in over.stderr
    assert "hello:1.0 has 3 layers, over --max-layers 2" in over.stderr
    assert lamina(family, "report", "--max-wasted", "1%", "--max-size", "1GB").returncode == 0


@pytest.mark.registry
def test_report_and_diff_of_registry_images(family, registry):
    from registry_servers import unique_repo

    owner = unique_repo("own")
    lamina(family, "build", "--push", "--registry", registry.host, "--owner", owner)
    ref = f"{registry.host}/{owner}/hello:1.0"
    data = json.loads(lamina(family, "report", ref, "--json").stdout)
    truth = read_layout(family / "build" / "oci")["hello:1.0"]
    assert data["images"][0]["compressed_bytes"] == sum(s for _, s in truth["layers"])
    assert data["images"][0]["wasted_bytes"] == len(MOTD_BASE)
    diff = json.loads(lamina(family, "diff", f"build/oci:hello", ref, "--json").stdout)
    # the same layers and config; only the manifest differs (its base-name annotation now names the registry)
    (image,) = diff["images"]
    assert diff["packages"] == [] and image["layers_added"] == image["layers_removed"] == []
    assert diff["push_blobs"] == 1 and 0 < diff["push_bytes"] < 2000


# -- units, on images made here in memory ----------------------------------------------------------------


def tar_gz(entries: list[tuple[str, bytes | str | None]]) -> bytes:
    """A gzip layer: (path, bytes) a file, (path, None) a directory, (path, "->target") a symlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in entries:
            info = tarfile.TarInfo(path)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content[2:]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


def memory_image(name: str, layers: list[bytes], history: list[str] | None = None):
    from lamina.oci import mediatypes as mt
    from lamina.oci.digest import sha256_digest
    from lamina.oci.model import Descriptor, Document, build_config, build_manifest
    from lamina.report.source import source_image

    blobs = {sha256_digest(b): b for b in layers}
    diff_ids = [sha256_digest(gzip.decompress(b)) for b in layers]
    hist = [{"created_by": h} for h in (history or [f"layer {i}" for i in range(len(layers))])]
    config = build_config(platform=__import__("lamina.oci.model", fromlist=["Platform"]).Platform(), run={},
                          diff_ids=diff_ids, history=hist, created="1970-01-01T00:00:01Z")
    manifest = build_manifest(config, [Descriptor(mt.OCI_LAYER_GZIP, sha256_digest(b), len(b)) for b in layers])
    return source_image(name, Document(manifest.data, manifest.media_type), config, lambda d: io.BytesIO(blobs[d]))


RECORD = "numpy/__init__.py,sha256=x,5\nnumpy/core.so,sha256=y,1000\n../../../bin/f2py,sha256=z,3\nnumpy-2.2.1.dist-info/RECORD,,\n"
SITE = "opt/venv/lib/python3.11/site-packages"
STATUS = "Package: libc6\nStatus: install ok installed\nVersion: 2.36\nArchitecture: amd64\nConffiles:\n /etc/ld.so.conf 1234\n"


def small_images():
    os_layer = tar_gz([("etc", None), ("etc/ld.so.conf", b"c" * 10), ("usr/lib/libc.so.6", b"L" * 3000),
                       ("var/lib/dpkg/status.d/libc6", STATUS.encode()),
                       ("var/lib/dpkg/status.d/libc6.md5sums", b"abc  usr/lib/libc.so.6\n"),
                       ("tmp/cache", b"x" * 700), ("opt/old", None), ("opt/old/a", b"a" * 40)])
    numpy = tar_gz([(f"{SITE}/numpy/__init__.py", b"#" * 5), (f"{SITE}/numpy/core.so", b"n" * 1000),
                    (f"{SITE}/numpy/__pycache__/__init__.cpython-311.pyc", b"p" * 50),
                    ("opt/venv/bin/f2py", b"#!/"), (f"{SITE}/numpy-2.2.1.dist-info/RECORD", RECORD.encode())])
    app = tar_gz([("tmp/.wh.cache", b""), ("opt/old/.wh..wh..opq", b""), ("opt/old/b", b"b"), ("app", None),
                  ("app/main.py", b"print()\n" * 10)])
    base = memory_image("base:1", [os_layer, numpy], ["lamina: debian package libc6 2.36", "lamina: python numpy==2.2.1"])
    svc = memory_image("svc:1", [os_layer, numpy, app], ["lamina: debian package libc6 2.36", "lamina: python numpy==2.2.1",
                                                         "lamina: copy app → /app"])
    return base, svc


def test_attribution_whiteouts_and_blast_radius_on_images_made_here():
    from lamina.report import analyze

    base, svc = small_images()
    report = analyze([svc, base])  # any order: bases are found by their layers
    s = report.image("svc:1")
    assert s.base == "base:1" and s.base_layers == 2 and report.image("base:1").base == ""
    os_layer, numpy, app = s.layers
    comps = {c.owner.label: c.bytes for c in os_layer.components}
    # the md5sums list, the status record and the Conffiles name libc6's files; the rest is the layer's own
    assert comps["libc6 2.36"] == 3000 + 10 + len(STATUS) + len("abc  usr/lib/libc.so.6\n")
    assert comps["other files"] == 700 + 40
    assert {c.owner.label: c.bytes for c in numpy.components} == {"numpy 2.2.1": 5 + 1000 + 50 + 3 + len(RECORD)}
    assert [c.owner.kind for c in app.components] == ["files"]
    # the whiteout removes /tmp/cache, the opaque directory hides /opt/old/a
    assert sorted((h.path, h.size, h.by) for h in s.hidden) == [("opt/old/a", 40, -1), ("tmp/cache", 700, -1)]
    assert s.visible_bytes == s.unpacked - 740
    assert s.packages == {("deb", "libc6"): "2.36", ("python", "numpy"): "2.2.1"}
    # moving numpy: its layer again, and a new config + manifest for both images carrying it
    row = next(r for r in report.blast if r.owner.name == "numpy")
    assert set(row.images) == {"base:1", "svc:1"} and row.added_by == "base:1"
    assert row.push_bytes == numpy.size + base.documents_size + svc.documents_size
    # the seed's way: svc alone on the OS base (base is not a leaf)... here base is svc's parent, the root is base
    assert report.monolithic_bytes == s.compressed + s.documents


def test_diff_names_the_package_with_both_versions_and_the_bytes_to_push():
    from lamina.report import analyze, diff_families

    base, svc = small_images()
    numpy2 = tar_gz([(f"{SITE}/numpy/__init__.py", b"#" * 6),
                     (f"{SITE}/numpy-2.2.2.dist-info/RECORD", RECORD.replace("numpy-2.2.1", "numpy-2.2.2").encode())])
    layers = [svc.open_blob(x.digest).read() for x in svc.layers]
    base2 = memory_image("base:1", [layers[0], numpy2])
    svc2 = memory_image("svc:1", [layers[0], numpy2, layers[2]])
    diff = diff_families(analyze([base, svc]), analyze([base2, svc2]))
    assert [(p.name, p.before, p.after) for p in diff.packages] == [("numpy", "2.2.1", "2.2.2")]
    for image in diff.images:
        assert [x.index for x in image.removed_layers] == [1] and [x.index for x in image.added_layers] == [1]
    assert diff.push_bytes == len(numpy2) + base2.documents_size + svc2.documents_size
    assert diff.push_blobs == 5  # one layer, two configs, two manifests


def test_scan_is_cached_by_layer_digest(tmp_path):
    from lamina.oci.store import BlobStore
    from lamina.report.scan import scan_layer

    base, _ = small_images()
    store = BlobStore(tmp_path / "store")
    first = scan_layer(base.layers[0], base.open_blob, store)
    again = scan_layer(base.layers[0], lambda d: pytest.fail("read the layer again"), store)
    assert again == first and first.file_count == 6


def test_squarified_treemap_areas_are_proportional_and_inside_the_box():
    from lamina.report.treemap import Rect, squarify

    values = [6, 6, 4, 3, 2, 2, 1]
    rects = squarify(values, Rect(0, 0, 6, 4))
    assert [round(r.area, 6) for r in rects] == values  # the paper's example: total area 24
    assert all(0 <= r.x and r.x + r.w <= 6 + 1e-9 and 0 <= r.y and r.y + r.h <= 4 + 1e-9 for r in rects)
    worst = max(max(r.w / r.h, r.h / r.w) for r in rects)
    assert worst < 3


def test_thresholds_fail_with_a_sentence_naming_image_and_limit():
    from lamina.errors import LaminaError
    from lamina.report import analyze
    from lamina.report.thresholds import Thresholds, check

    report = analyze(list(small_images()))
    assert check(report, Thresholds.parse("1MB", 3, "1kB")) == []
    breaches = check(report, Thresholds.parse("2kB", 2, "1%"))
    messages = [b.message for b in breaches]
    assert any(m.startswith("svc:1 has 3 layers, over --max-layers 2") for m in messages)
    assert any("svc:1 is" in m and "over --max-size 2.0 kB" in m for m in messages)
    assert any("svc:1 wastes 740 B in 2 files" in m and "/tmp/cache" in m for m in messages)
    with pytest.raises(LaminaError, match="bad size"):
        Thresholds.parse("lots")


def test_recorded_inventory_names_why_each_package_is_there():
    from lamina.inventory import Component, Inventory, placed
    from lamina.report import analyze

    base, svc = small_images()
    numpy, app = svc.layers[1], svc.layers[2]
    items = placed([Component("python", "NumPy", "2.2.1", origin="libs/requirements-ml.txt:1")], layer=numpy.digest,
                   diff_id=numpy.diff_id, added_by="base") + placed([Component("files", "svc code")], layer=app.digest,
                                                                   diff_id=app.diff_id, added_by="svc")
    inventories = {svc.digest: Inventory("svc", "linux/amd64", tuple(items), digest=svc.digest)}
    report = analyze([base, svc], inventories=inventories.get)
    row = next(r for r in report.blast if r.owner.name == "numpy")
    assert row.origin == "libs/requirements-ml.txt:1"
    assert [c.owner.name for c in report.layers[app.digest].components] == ["svc code"]


# -- the HTML page in a real browser ---------------------------------------------------------------------


class Dom:
    """The elements of a page (tag, attributes, text), from Chromium's --dump-dom."""

    def __init__(self, text: str) -> None:
        from html.parser import HTMLParser

        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        stack: list[list[str]] = []
        outer = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                texts: list[str] = []
                outer.elements.append((tag, {k: v or "" for k, v in attrs}, texts))
                if tag not in ("meta", "link", "br", "img", "input", "rect", "path"):
                    stack.append(texts)

            def handle_endtag(self, tag):
                if stack and tag not in ("meta", "link", "br", "img", "input", "rect", "path"):
                    stack.pop()

            def handle_data(self, data):
                for texts in stack:
                    texts.append(data)

        Parser().feed(text)

    def find(self, tag: str | None = None, **attrs: str) -> list[tuple[dict[str, str], str]]:
        def match(a: dict[str, str]) -> bool:
            for k, v in attrs.items():
                key = "class" if k == "class_" else k.replace("_", "-")
                if key == "class" and v not in a.get("class", "").split():
                    return False
                if key != "class" and a.get(key) != v:
                    return False
            return True

        return [(a, "".join(t)) for tg, a, t in self.elements if (tag is None or tg == tag) and match(a)]


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


def render_in_chromium(page: Path, screenshot: Path, tmp: Path, height: int = 900) -> Dom:
    """Screenshot ``page`` at laptop width into ``screenshot`` and return its DOM after scripts ran."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    chromium(f"--screenshot={screenshot}", f"--window-size=1366,{height}", page.as_uri(), tmp=tmp)
    assert screenshot.stat().st_size > 10_000
    return Dom(chromium("--dump-dom", page.as_uri(), tmp=tmp).stdout)


def test_html_report_in_headless_chromium(family, tmp_path):
    from lamina.report import analyze, layout_images

    report = analyze(layout_images(family / "build" / "oci"))
    page = tmp_path / "report.html"
    lamina(family, "report", "--html", str(page), "--title", "hello family")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()  # nothing to fetch
    dom = render_in_chromium(page, ARTIFACTS / "report.png", tmp_path)
    names = ["busybox:1.0", "hello:1.0", "hello2:1.0"]
    assert [a["data-image"] for a, _ in dom.find("tr", class_="image-row")] == names
    assert [a["data-image"] for a, _ in dom.find("tr", class_="matrix-row")] == names
    cells = {(a["data-a"], a["data-b"]): int(a["data-layers"]) for a, _ in dom.find("td") if "data-a" in a}
    assert cells[("hello:1.0", "hello2:1.0")] == report.shared(report.image("hello:1.0"), report.image("hello2:1.0"))[0]
    blast = {a["data-package"]: text for a, text in dom.find("tr", class_="blast-row")}
    assert set(blast) == {"busybox-static", "greeting"}
    assert "hello:1.0, hello2:1.0" in blast["busybox-static"]
    assert [t for _, t in dom.find("figure", class_="treemap")][0].startswith("busybox:1.0")
    assert any("etc/motd" in t for _, t in dom.find("tr", class_="hidden-row"))


# -- the example family before and after moving one ML library one version ------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tax-agent"


def registry_blobs(registry) -> dict[str, int]:
    """Every blob the registry stores (layers, configs and manifests), with its size."""
    root = registry.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {p.parent.name: p.stat().st_size for p in root.glob("*/*/data")} if root.is_dir() else {}


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.registry
def test_diff_after_moving_joblib_names_it_and_predicts_the_push(tmp_path, registry):
    from conftest import archives_unreachable
    from registry_servers import unique_repo

    if (problem := archives_unreachable()) is not None:
        pytest.skip(f"the Debian archive or PyPI cannot be reached ({problem})")
    owner = unique_repo("harkon")
    # the same base names in the layouts and the registry; images only (neither SBOM attachments nor the
    # registry layer cache's index are what the diff predicts)
    flags = ("--registry", registry.host, "--owner", owner, "--no-sbom", "--no-remote-cache")
    before, after = (shutil.copytree(EXAMPLE, tmp_path / side / "tax-agent",
                                     ignore=shutil.ignore_patterns("build", "__pycache__")) for side in ("a", "b"))
    store = tmp_path / "store"  # one store for both states
    lamina(before, "build", "--locked", *flags, store=store)
    lamina(before, "build", "--locked", "--push", *flags, store=store)
    ml = after / "libs" / "requirements-ml.txt"
    assert "joblib==1.5.3" in ml.read_text()
    ml.write_text(ml.read_text().replace("joblib==1.5.3", "joblib==1.5.2"))
    lamina(after, "build", *flags, store=store)

    diff = json.loads(lamina(after, "diff", str(before / "build" / "oci"), str(after / "build" / "oci"), "--json",
                             store=store).stdout)
    assert diff["schema"] == "lamina.diff/1"
    assert [(p["name"], p["before"], p["after"]) for p in diff["packages"]] == [("joblib", "1.5.3", "1.5.2")]
    changed = {i["name"]: i for i in diff["images"] if i["changed"]}
    assert sorted(changed) == ["base-ml", "svc-classifier", "svc-retriever"]
    joblib_layers = set()
    for image in changed.values():
        assert len(image["layers_removed"]) == 1 and len(image["layers_added"]) == 1, image
        assert "joblib" in image["layers_added"][0]["description"]
        joblib_layers.add(image["layers_added"][0]["digest"])
    assert len(joblib_layers) == 1  # the same new layer in all three

    stored = registry_blobs(registry)
    lamina(after, "build", "--push", *flags, store=store)
    new = {d: size for d, size in registry_blobs(registry).items() if d not in stored}
    assert diff["push_bytes"] == sum(new.values())
    assert diff["push_blobs"] == len(new) == 7  # one layer, three configs, three manifests

    page = tmp_path / "report.html"
    lamina(after, "report", "--layout", str(after / "build" / "oci"), "--diff-from", str(before / "build" / "oci"),
           "--html", str(page), store=store)
    dom = render_in_chromium(page, ARTIFACTS / "report-tax-agent.png", tmp_path)
    assert [(a["data-package"], t) for a, t in dom.find("tr", class_="diff-package")] == [
        ("joblib", "joblibpython1.5.31.5.2changed")]
    assert {a["data-image"] for a, _ in dom.find("tr", class_="diff-image") if a["data-changed"] == "true"} == set(changed)
    assert len(dom.find("tr", class_="image-row")) == 7 and dom.find("tr", class_="blast-row")


def test_build_writes_the_report_when_asked(family, tmp_path):
    lamina(family, "build", "--report", str(tmp_path / "family.html"))
    page = (tmp_path / "family.html").read_text()
    assert 'id="sharing-matrix"' in page and all(f'data-image="{n}"' in page for n in ("busybox:1.0", "hello:1.0", "hello2:1.0"))
    lamina(family, "build", "hello", "--report", str(tmp_path / "hello.json"))
    data = json.loads((tmp_path / "hello.json").read_text())
    assert [i["name"] for i in data["images"]] == ["busybox:1.0", "hello:1.0"]  # the image and the base it needed


def test_a_corrupt_layer_is_refused_naming_its_digest(family, tmp_path):
    from lamina.errors import LaminaError
    from lamina.report import analyze, layout_images

    layout = shutil.copytree(family / "build" / "oci", tmp_path / "oci")
    digest, _ = read_layout(layout)["hello2:1.0"]["layers"][-1]
    blob = layout / "blobs" / "sha256" / digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[-12] ^= 0xFF  # in the deflate stream's end: the tar still parses, the digest does not match
    blob.write_bytes(bytes(data))
    with pytest.raises(LaminaError, match=digest.split(":")[1][:12]):
        analyze(layout_images(layout, ["hello2"]))


def test_classic_dpkg_database_of_a_foreign_base_names_its_packages():
    """An image built by apt (python:3.12-slim and the like): /var/lib/dpkg/status and info/<pkg>.list, with
    pre-merged-/usr paths in the lists."""
    from lamina.report import analyze

    status = ("Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13\n\n"
              "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    layer = tar_gz([("usr/lib/x86_64-linux-gnu/libz.so.1", b"z" * 100), ("var/lib/dpkg/status", status.encode()),
                    ("var/lib/dpkg/info/zlib1g:amd64.list", b"/.\n/lib/x86_64-linux-gnu/libz.so.1\n")])
    report = analyze([memory_image("slim:1", [layer])])
    assert report.image("slim:1").packages == {("deb", "zlib1g"): "1:1.2.13"}
    (comp,) = [c for c in report.layers[report.image("slim:1").layers[0].digest].components if c.owner.kind == "deb"]
    assert comp.bytes == 100 + len("/.\n/lib/x86_64-linux-gnu/libz.so.1\n")
