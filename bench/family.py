"""The seed's image family, lamina vs buildah, same machine, same run.

    python bench/family.py                  # the CI-sized family (examples/tax-agent), a few minutes
    python bench/family.py --profile full   # the seed's real stack (CPU torch, transformers, ...), ~30-60 min
    python bench/family.py --runs 3 --scenarios cold,app,noop

The peer builds the Dockerfiles that `lamina export dockerfiles` writes for the same family (the seed's own
patterns) with `buildah bud --layers` (its step cache, as Docker's default) on the overlay driver, and pushes
with `buildah push`. Both tools start from the same Python base (built by lamina from Debian packages, with
python3-venv for the peer's `python -m venv`), pushed beforehand to each tool's own loopback registry, and
both install from the same pre-downloaded wheelhouse (pip with --no-index, lamina with a find-links index),
so the network is not what is measured. Bytes uploaded are read from each registry's storage (the sizes of
the blobs that appeared), not from the tools' reports.

Scenarios (each a whole-family build and push, timed as the median of N runs, with min and max):
  cold   empty build caches (lamina's store, buildah's storage), empty registry but for the Python base
  app    one line of one service's code changed
  ml     one ML library moved one version
  core   one base-runtime library moved one version
  noop   nothing changed
  fresh-runner   a CI runner that starts empty: one line of one service changed, no local cache at all,
         the registry holding the previous family (lamina: a new, empty store, reading the registry's layer
         cache; buildah: empty storage with --cache-from/--cache-to a cache repository in its registry,
         filled beforehand, untimed, by a build with --cache-to)

Writes bench/results/family-PROFILE.md and .json. Nothing here is asserted: the numbers are for people.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "tax-agent"
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from registry_servers import RegistryServer  # noqa: E402  (the tests' real docker-registry runner)

PROFILES = {
    # config, the file the app scenario changes, and the ML and core bumps: (requirements file, package,
    # versions): run n moves from versions[n] to versions[n+1], a version no tool has built before
    "ci": ("lamina.toml", "apps/svc_forms/main.py",
           ("libs/requirements-ml.txt", "joblib", ["1.5.3", "1.5.2", "1.5.1", "1.5.0", "1.4.2"]),
           ("libs/requirements-base.txt", "orjson", ["3.10.13", "3.10.12", "3.10.11", "3.10.10", "3.10.9"])),
    "full": ("lamina.full.toml", "apps/svc_forms/main.py",
             ("libs/requirements-ml-full.txt", "nltk", ["3.9.4", "3.9.3", "3.9.2", "3.9.1", "3.8.1"]),
             ("libs/requirements-base-full.txt", "orjson", ["3.12.0", "3.11.9", "3.11.8", "3.11.7", "3.11.6"])),
}
SCENARIOS = ("cold", "app", "ml", "core", "noop", "fresh-runner")
PODMAN_LIKE = ["--storage-driver", "overlay"]
# The peer's Dockerfiles run `python3 -m venv` and RUN steps: python3-venv and a /bin/sh (dash) in the base.
PYTHON_BASE_PACKAGES = ["python3", "python3-venv", "dash", "ca-certificates", "tzdata", "libstdc++6"]


@dataclass
class Sample:
    wall: float = 0.0
    cpu: float = 0.0
    rss_mb: int = 0
    uploaded: int = 0


@dataclass
class Row:
    scenario: str
    tool: str
    samples: list[Sample] = field(default_factory=list)
    images: dict[str, dict[str, int]] = field(default_factory=dict)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(s, attr) for s in self.samples)

    def span(self, attr: str) -> tuple[float, float]:
        values = [getattr(s, attr) for s in self.samples]
        return min(values), max(values)


def timed(cmd: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None, log: Path) -> Sample:
    """Run one command under GNU time; a failure stops the benchmark with its output."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-") as report:
        start = time.perf_counter()
        result = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *cmd], cwd=cwd,
                                env={**os.environ, **(env or {})}, capture_output=True, text=True)
        wall = time.perf_counter() - start
        with open(log, "a") as out:
            out.write(f"$ {' '.join(cmd)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}\n{result.stderr[-3000:]}\n(log: {log})")
        user, system, rss = report.read().split()[-3:]
    return Sample(wall, float(user) + float(system), int(rss) // 1024)


def merge(samples: Sequence[Sample]) -> Sample:
    return Sample(sum(s.wall for s in samples), sum(s.cpu for s in samples), max(s.rss_mb for s in samples))


def blob_bytes(registry: RegistryServer) -> dict[str, int]:
    blobs = registry.storage / "docker/registry/v2/blobs/sha256"
    return {p.parent.name: p.stat().st_size for p in blobs.glob("*/*/data")} if blobs.exists() else {}


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = args.profile
        self.config_name, self.app_file, self.ml_bump, self.core_bump = PROFILES[args.profile]
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix=f"lamina-bench-{args.profile}-"))
        self.log = self.work / "commands.log"
        self.project = self.work / "project"
        self.wheelhouse = self.work / "wheelhouse"
        self.registries: dict[str, RegistryServer] = {}

    # -- setup ----------------------------------------------------------------------------------

    def lamina(self, *args: str, store: Path, check: bool = True) -> Sample:
        env = {"LAMINA_STORE": str(store), "PYTHONPATH": str(ROOT / "src"), "NO_PROXY": "127.0.0.1,localhost"}
        return timed([sys.executable, "-m", "lamina", *args], cwd=self.project, env=env, log=self.log)

    def setup(self) -> None:
        print(f"workdir {self.work}", flush=True)
        shutil.copytree(EXAMPLE, self.project, ignore=shutil.ignore_patterns("build", "__pycache__", "infra"))
        self.config = self.project / self.config_name
        self.fill_wheelhouse()
        for tool in ("lamina", "buildah"):
            server = RegistryServer(self.work / f"registry-{tool}")
            server.workdir.mkdir(parents=True)
            self.registries[tool] = server.start()
        self.push_python_base()
        self.write_bench_config()
        self.use_registry("lamina")
        self.lamina("lock", "--config", self.config.name, store=self.work / "setup-store")

    def fill_wheelhouse(self) -> None:
        """Lock every variant the scenarios need (from PyPI), then copy the locked wheels to a folder."""
        store = self.work / "setup-store"
        self.wheelhouse.mkdir()
        lock = self.config.with_suffix(".lock") if self.config.name != "lamina.toml" else self.project / "lamina.lock"
        self.lamina("lock", "--config", self.config.name, store=store)
        self.copy_wheels(lock, store)
        for file, package, versions in (self.ml_bump, self.core_bump):
            for old, new in zip(versions, versions[1 : self.args.runs + 1]):
                self.edit(file, f"{package}=={old}", f"{package}=={new}")
                self.lamina("lock", "--config", self.config.name, store=store)
                self.copy_wheels(lock, store)
            self.edit(file, f"{package}=={versions[min(self.args.runs, len(versions) - 1)]}", f"{package}=={versions[0]}")
        self.lamina("lock", "--config", self.config.name, store=store)

    def copy_wheels(self, lock: Path, store: Path) -> None:
        from lamina.lock import Lock
        from lamina.oci.store import BlobStore
        from lamina.python.resolve import LockedDist
        from lamina.python.wheels import fetch_wheels

        data = Lock.load(lock)
        dists = [LockedDist.from_lock(d) for image in data.data.get("images", {}).values()
                 for sections in image.values() for d in sections.get("python", {}).get("dists", [])]
        for dist in dists:  # one at a time: two images may lock two versions of one package
            target = self.wheelhouse / dist.filename
            if not target.exists():
                shutil.copy(fetch_wheels([dist], BlobStore(store))[dist.name], target)

    def push_python_base(self, only: str | None = None) -> None:
        """The Python base both tools start from, built by lamina, pushed to both registries."""
        base = self.work / "python-base"
        base.mkdir(exist_ok=True)
        packages = ", ".join(f'"{p}"' for p in PYTHON_BASE_PACKAGES)
        (base / "lamina.toml").write_text(
            f'[project]\nversion = "base"\n\n[images.python]\nfrom = "debian:bookworm"\npackages = [{packages}]\n'
            'user = "app"\n')
        for tool, server in self.registries.items():
            if only not in (None, tool):
                continue
            timed([sys.executable, "-m", "lamina", "build", "--push", "--registry", server.host, "--owner", "bench"],
                  cwd=base, env={"LAMINA_STORE": str(self.work / "setup-store"), "PYTHONPATH": str(ROOT / "src")},
                  log=self.log)

    def write_bench_config(self) -> None:
        """The profile's config, on the pushed Python base, installing from the wheelhouse only."""
        text = self.config.read_text()
        text = re.sub(r'(?ms)^\[images\.python\].*?(?=^\[)', "", text)
        text = text.replace('from = "python"', 'from = "REGISTRY/bench/python:base"')
        text = re.sub(r'(?m)^registry = .*$', 'registry = "REGISTRY"', text)
        text = re.sub(r'(?m)^owner = .*$', 'owner = "bench"', text)
        text = re.sub(r'(?ms)^\[python\].*?(?=^\[)', "", text)
        text = re.sub(r'(?m)^base_version = .*$', 'base_version = "base"', text)
        # svc-ocr's apt-get step needs a base with apt and a Debian mirror reachable inside the build; the
        # shared base has neither (lamina installs packages without apt), so both tools leave svc-ocr out
        text = re.sub(r'(?ms)^\[services\.svc_ocr\].*?(?=^\[|\Z)', "", text)
        text = text.replace('exclude = ["svc_classifier", "svc_retriever"]', 'exclude = ["svc_classifier", "svc_retriever", "svc_ocr"]')
        self.version = re.search(r'(?m)^version = "([^"]*)"', text).group(1)  # type: ignore[union-attr]
        text += f'\n[python]\nfind_links = ["{self.wheelhouse}"]\nno_index = true\n'
        self.template = text

    def use_registry(self, tool: str) -> None:
        self.config.write_text(self.template.replace("REGISTRY", self.registries[tool].host))

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.project / rel
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{rel} does not contain {old!r}")
        path.write_text(text.replace(old, new, 1))

    # -- the tools ------------------------------------------------------------------------------

    def lamina_family(self, store: Path) -> Sample:
        self.use_registry("lamina")
        return self.lamina("build", "--config", self.config.name, "--locked", "--push", "--no-check", store=store)

    def buildah_family(self, root: Path, extra_flags: str = "") -> Sample:
        """The seed's method: the exported build scripts, bases first, then every service, each pushed."""
        self.use_registry("buildah")
        registry = self.registries["buildah"].host
        self.lamina("export", "dockerfiles", "--config", self.config.name, store=self.work / "setup-store")
        pip_conf = self.work / "pip.conf"
        pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n")
        env = {
            "DOCKER": f"buildah --root {root / 'root'} --runroot {root / 'run'} {' '.join(PODMAN_LIKE)}",
            "BUILD_FLAGS": f"--layers --isolation chroot --network host --tls-verify=false "
                           f"-v {self.wheelhouse}:/wheels:ro -v {pip_conf}:/etc/pip.conf:ro {extra_flags}",
            "PUSH_FLAGS": "--tls-verify=false",
        }
        scripts = self.project / "infra" / "docker"
        return merge([
            timed(["sh", str(scripts / "build-base-images.sh"), registry, "base", "bench"], cwd=self.project, env=env,
                  log=self.log),
            timed(["sh", str(scripts / "build-and-push-images.sh"), registry, self.version, "bench", "base"],
                  cwd=self.project, env=env, log=self.log),
        ])

    # -- scenarios ------------------------------------------------------------------------------

    def run(self) -> list[Row]:
        """Each run makes one change, then both tools build and push the family from their own caches."""
        rows = []
        caches = {"lamina": self.work / "lamina-store", "buildah": self.work / "buildah"}
        builders = {"lamina": self.lamina_family, "buildah": self.buildah_family}
        for scenario in [s for s in SCENARIOS if s in self.args.scenarios.split(",")]:
            by_tool = {tool: Row(scenario, tool) for tool in caches}
            runs = self.args.runs_cold if scenario == "cold" and self.args.runs_cold else self.args.runs
            for n in range(runs):
                self.change(scenario, n)
                for tool, cache in caches.items():
                    if scenario == "cold":
                        self.reset(tool, cache)
                    elif not cache.exists():
                        raise SystemExit(f"scenario {scenario} starts from the caches the cold scenario leaves")
                    before = blob_bytes(self.registries[tool])
                    sample = self.fresh_runner(tool, n) if scenario == "fresh-runner" else builders[tool](cache)
                    sample.uploaded = sum(size for d, size in blob_bytes(self.registries[tool]).items() if d not in before)
                    by_tool[tool].samples.append(sample)
                    print(f"{scenario:5} {tool:8} run {n + 1}: {sample.wall:7.1f}s wall, {sample.cpu:7.1f}s CPU, "
                          f"{sample.rss_mb} MB RSS, {sample.uploaded / 1e6:.1f} MB uploaded", flush=True)
            for tool, row in by_tool.items():
                row.images = self.image_facts(tool)
                rows.append(row)
        return rows

    def change(self, scenario: str, n: int) -> None:
        """Make the scenario's change: every run a change neither tool has built before."""
        if scenario == "fresh-runner" and n == 0:
            self.fill_buildah_cache()  # of the family as it is, before the change
        if scenario in ("app", "fresh-runner"):
            mark = "r" if scenario == "app" else "f"
            path = self.project / self.app_file
            text = re.sub(r"Form \{\{ number \}\}( [rf]\d+)?", "Form {{ number }}", path.read_text())
            path.write_text(text.replace("Form {{ number }}", f"Form {{{{ number }}}} {mark}{n}", 1))
        elif scenario in ("ml", "core"):
            file, package, versions = self.ml_bump if scenario == "ml" else self.core_bump
            self.edit(file, f"{package}=={versions[n]}", f"{package}=={versions[n + 1]}")
            self.use_registry("lamina")
            self.lamina("lock", "--config", self.config.name, store=self.work / "setup-store")

    def buildah_cache(self) -> str:
        return f"{self.registries['buildah'].host}/bench/buildah-cache"

    def fill_buildah_cache(self) -> None:
        """buildah's registry cache of the family as it stands (untimed: what a previous CI run left)."""
        self.buildah_family(self.work / "buildah", f"--cache-to {self.buildah_cache()}")

    def fresh_runner(self, tool: str, n: int) -> Sample:
        """One whole-family build and push from nothing local: lamina with an empty store, buildah with empty
        storage and its registry cache (both registries hold the previous family)."""
        if tool == "lamina":
            return self.lamina_family(self.work / f"fresh-store-{n}")
        root = self.work / f"fresh-buildah-{n}"
        cache = self.buildah_cache()
        try:
            return self.buildah_family(root, f"--cache-from {cache} --cache-to {cache}")
        finally:
            buildah = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), *PODMAN_LIKE]
            subprocess.run([*buildah, "rm", "--all"], capture_output=True)
            subprocess.run([*buildah, "rmi", "--all", "--force"], capture_output=True)

    def reset(self, tool: str, cache: Path) -> None:
        """Empty build caches, and a registry holding only the Python base."""
        if tool == "buildah" and cache.exists():
            buildah = ["buildah", "--root", str(cache / "root"), "--runroot", str(cache / "run"), *PODMAN_LIKE]
            subprocess.run([*buildah, "rm", "--all"], capture_output=True)
            subprocess.run([*buildah, "rmi", "--all", "--force"], capture_output=True)
        shutil.rmtree(cache, ignore_errors=True)
        server = self.registries[tool]
        server.stop()
        shutil.rmtree(server.storage)
        server.start()
        self.push_python_base(only=tool)

    def image_facts(self, tool: str) -> dict[str, dict[str, int]]:
        """Compressed size and layer count of each pushed image, from the registry's storage."""
        server = self.registries[tool]
        repos = server.storage / "docker/registry/v2/repositories/bench"
        blobs = server.storage / "docker/registry/v2/blobs/sha256"
        facts = {}
        for repo in sorted(repos.glob("*")) if repos.exists() else []:
            if repo.name in ("lamina-cache", "buildah-cache"):
                continue  # the tools' build caches, not images
            tags = sorted((repo / "_manifests/tags").glob("*/current/link"))
            if not tags:
                continue
            digest = tags[0].read_text().split(":", 1)[1]
            manifest = json.loads((blobs / digest[:2] / digest / "data").read_text())
            layers = manifest.get("layers", [])
            facts[repo.name] = {"layers": len(layers), "bytes": sum(layer["size"] for layer in layers)}
        return facts

    def close(self) -> None:
        for server in self.registries.values():
            server.stop()
        cache = self.work / "buildah"
        if cache.exists():  # unmount its containers' overlays, so the folder can be removed
            buildah = ["buildah", "--root", str(cache / "root"), "--runroot", str(cache / "run"), *PODMAN_LIKE]
            subprocess.run([*buildah, "rm", "--all"], capture_output=True)


def report(rows: list[Row], profile: str, machine: str) -> str:
    by = {(r.scenario, r.tool): r for r in rows}
    lines = [f"### {profile} family — {machine}, {time.strftime('%Y-%m-%d')}", "",
             "| scenario | tool | wall s (min–max) | CPU s | peak RSS MB | uploaded MB | lamina vs buildah |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        if (scenario, "lamina") not in by:
            continue
        ours, peer = by[(scenario, "lamina")], by[(scenario, "buildah")]
        for row in (ours, peer):
            low, high = row.span("wall")
            ratio = ""
            if row is ours:
                speed = peer.median("wall") / max(ours.median("wall"), 1e-9)
                sent = peer.median("uploaded") / max(ours.median("uploaded"), 1)
                ratio = f"{speed:.1f}× faster, {sent:.0f}× fewer bytes" if ours.median("uploaded") else f"{speed:.1f}× faster"
            lines.append(f"| {scenario} | {row.tool} | {row.median('wall'):.2f} ({low:.2f}–{high:.2f}) | "
                         f"{row.median('cpu'):.1f} | {row.median('rss_mb'):.0f} | {row.median('uploaded') / 1e6:.2f} | {ratio} |")
    lines += ["", "| image | lamina layers | lamina MB | buildah layers | buildah MB |", "|---|---:|---:|---:|---:|"]
    ours = next((r.images for r in rows if r.tool == "lamina" and r.images), {})
    peer = next((r.images for r in rows if r.tool == "buildah" and r.images), {})
    for name in sorted(set(ours) | set(peer)):
        a, b = ours.get(name, {}), peer.get(name, {})
        lines.append(f"| {name} | {a.get('layers', '–')} | {a.get('bytes', 0) / 1e6:.1f} | {b.get('layers', '–')} | "
                     f"{b.get('bytes', 0) / 1e6:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 5), help="runs per scenario (median, min, max)")
    parser.add_argument("--runs-cold", type=int, help="runs of the cold scenario (default: --runs)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workdir", help="where to work (default: a new temp dir, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    for tool in ("buildah", "docker-registry", "/usr/bin/time"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install buildah docker-registry time)", file=sys.stderr)
            return 2
    bench = Bench(args)
    try:
        bench.setup()
        rows = bench.run()
    finally:
        bench.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(bench.work, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = report(rows, args.profile, machine)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"family-{args.profile}.md").write_text(text + "\n")
    (RESULTS / f"family-{args.profile}.json").write_text(json.dumps(
        {"machine": machine, "profile": args.profile, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__: Sequence[Callable[..., object]] = []
