"""The seed's image family, lamina vs buildah (with pip, and with uv), same machine, same run.

    python bench/family.py                  # the CI-sized family (examples/tax-agent), a few minutes
    python bench/family.py --profile full   # the seed's real stack (CPU torch, transformers, ...), ~30-60 min
    python bench/family.py --runs 3 --scenarios cold,app,noop --peer uv

The peers build the Dockerfiles that `lamina export dockerfiles` writes for the same family (the seed's own
patterns) with `buildah bud --layers` (its step cache, as Docker's default) on the overlay driver, and push
with `buildah push`. Two peers: `pip` runs those Dockerfiles as written (pip inside RUN); `uv` runs them with
each `pip install` replaced by `uv pip install --compile-bytecode --require-hashes --no-deps` (uv's Docker
guidance), the host's uv binary bind-mounted into the build (no layer holds it). All tools start from the
same Python base (built by lamina from Debian packages, with python3-venv for the peers' `python -m venv`),
pushed beforehand to each tool's own loopback registry, and all install from the same pre-downloaded
wheelhouse (pip and uv with --no-index, lamina with a find-links index), so the network is not what is
measured. Bytes uploaded are read from each registry's storage (the sizes of the blobs that appeared), not
from the tools' reports.

After each build a "node" (podman with its own storage, holding the version before) pulls every service's
new image: the `pull` columns are its seconds and the bytes of the layers it did not have. Then, untimed,
the images the change superseded are pruned from the peers' storage and the nodes' (so that the full
profile's `core` runs, which rebuild every peer image, fit a disk).

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

During lamina's first cold build the machine's CPU use is sampled every 0.5 s (/proc/stat).

Writes bench/results/family-PROFILE.md and .json. Nothing here is asserted: the numbers are for people.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
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


TOOLS = ("lamina", "pip", "uv")
PEER_NAMES = {"pip": "buildah + pip", "uv": "buildah + uv"}
PIP_INSTALL = "pip install --no-cache-dir --require-hashes --no-deps --only-binary :all: -r"
# The peer's node: podman with its own storage (the flags that work on these machines, tests/conftest.py).
PODMAN = ["--storage-driver", "overlay", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


@dataclass
class Sample:
    wall: float = 0.0
    cpu: float = 0.0
    rss_mb: int = 0
    uploaded: int = 0
    pull_s: float = 0.0
    pulled: int = 0


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


class Utilisation:
    """CPU use every ``period`` seconds, as a share of all cores: the whole machine's (/proc/stat) and
    lamina's own (the ``python -m lamina`` processes this benchmark started and their children, from
    /proc/PID/stat; a finished child's time counts when its parent reaps it), so the chart says what
    lamina kept busy even when other jobs share the machine."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.cores = len(os.sched_getaffinity(0))
        self.tick = os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _machine() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]) - idle, sum(values[:8])

    def _lamina(self) -> float:
        """CPU seconds of lamina's process trees (own, and children reaped)."""
        parent: dict[int, int] = {}
        cpu: dict[int, int] = {}
        lamina: set[int] = set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            pid = int(entry.name)
            parent[pid] = int(fields[1])
            cpu[pid] = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
            if b"-m\0lamina\0" in cmdline:
                lamina.add(pid)
        me = {os.getpid()}  # only this benchmark's lamina: other jobs on the machine may run lamina too
        roots = {p for p in lamina if self._under(p, me, parent) and not self._under(parent.get(p, 0), lamina, parent)}
        total = 0
        for pid in cpu:
            if pid in roots or self._under(parent.get(pid, 0), roots, parent):
                total += cpu[pid]
        return total / self.tick

    @staticmethod
    def _under(pid: int, roots: set[int], parent: dict[int, int]) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = parent.get(pid, 0)
        return False

    def _run(self) -> None:
        start = time.perf_counter()
        busy0, total0 = self._machine()
        own0, at0 = self._lamina(), start
        while not self._stop.wait(self.period):
            busy, total = self._machine()
            own, at = self._lamina(), time.perf_counter()
            machine = (busy - busy0) / max(total - total0, 1)
            mine = max(own - own0, 0) / ((at - at0) * self.cores)
            self.samples.append((at - start, min(mine, 1.0), machine))
            busy0, total0, own0, at0 = busy, total, own, at

    def stop(self) -> list[tuple[float, float, float]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def utilisation_chart(samples: Sequence[tuple[float, float, float]], *, width: int = 40, step: float = 1.0) -> str:
    """A text chart of CPU use over time, one row per ``step`` seconds (the mean of its samples):
    lamina's share of all cores, and the whole machine's."""
    if not samples:
        return ""
    rows = ["| t (s) | lamina's CPU use (share of both cores) | machine |", "|---:|:---|---:|"]
    end = samples[-1][0]
    t = 0.0
    while t < end:
        window = [(own, machine) for at, own, machine in samples if t < at <= t + step]
        if window:
            own = sum(w[0] for w in window) / len(window)
            machine = sum(w[1] for w in window) / len(window)
            rows.append(f"| {t + step:.0f} | `{'█' * round(own * width):<{width}}` {own:.0%} | {machine:.0%} |")
        t += step
    own = sum(s[1] for s in samples) / len(samples)
    machine = sum(s[2] for s in samples) / len(samples)
    rows.append(f"| mean over {end:.1f} s | {own:.0%} | {machine:.0%} |")
    return "\n".join(rows)


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
        self.tools = ["lamina", *args.peer.split(",")]
        self.utilisation: list[tuple[float, float]] = []
        self.failure: str | None = None

    # -- setup ----------------------------------------------------------------------------------

    def lamina(self, *args: str, store: Path, check: bool = True) -> Sample:
        # lamina as installed: `pip install` byte-compiles a package, and setup() compiled this checkout's
        # sources (an editable install has no bytecode where PYTHONDONTWRITEBYTECODE is set, as on these
        # machines, and would compile lamina's sources on every start and in every installer process)
        env = {"LAMINA_STORE": str(store), "PYTHONPATH": str(ROOT / "src"), "NO_PROXY": "127.0.0.1,localhost"}
        return timed([sys.executable, "-m", "lamina", *args], cwd=self.project, env=env, log=self.log)

    def setup(self) -> None:
        """The project, its wheelhouse and lock (kept in the workdir: a later run with the same --workdir
        starts from them), then fresh registries holding the Python base."""
        print(f"workdir {self.work}", flush=True)
        compileall.compile_dir(ROOT / "src" / "lamina", quiet=1)  # see lamina(): lamina as pip installs it
        self.config = self.project / self.config_name
        prepared = self.work / "prepared.toml"
        if prepared.exists():  # a workdir a --setup-only run (or an earlier run) prepared
            self.template = prepared.read_text()
            self.version = re.search(r'(?m)^version = "([^"]*)"', self.template).group(1)  # type: ignore[union-attr]
        else:
            shutil.copytree(EXAMPLE, self.project, ignore=shutil.ignore_patterns("build", "__pycache__", "infra"))
            if self.args.seed_store:  # wheels already downloaded by another store: hard links, no network
                blobs = self.work / "setup-store" / "blobs" / "sha256"
                blobs.mkdir(parents=True)
                for blob in (Path(self.args.seed_store) / "blobs" / "sha256").iterdir():
                    os.link(blob, blobs / blob.name)
            self.fill_wheelhouse()
        for tool in self.tools:
            server = RegistryServer(self.work / f"registry-{tool}")
            shutil.rmtree(server.workdir, ignore_errors=True)
            server.workdir.mkdir(parents=True)
            self.registries[tool] = server.start()
        self.push_python_base()
        if not prepared.exists():
            self.write_bench_config()
            prepared.write_text(self.template)
        self.use_registry("lamina")
        self.reset_bumps()
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
        sbom = [] if self.args.sbom else ["--no-sbom"]  # the peers attach none: like for like by default
        return self.lamina("build", "--config", self.config.name, "--locked", "--push", "--no-check", *sbom, store=store)

    def buildah_family(self, root: Path, peer: str, extra_flags: str = "") -> Sample:
        """The seed's method: the exported build scripts, bases first, then every service, each pushed;
        for the uv peer, with the Dockerfiles' pip steps made uv steps."""
        self.use_registry(peer)
        registry = self.registries[peer].host
        self.lamina("export", "dockerfiles", "--config", self.config.name, store=self.work / "setup-store")
        scripts = self.project / "infra" / "docker"
        pip_conf = self.work / "pip.conf"
        pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n")
        mounts = f"-v {self.wheelhouse}:/wheels:ro -v {pip_conf}:/etc/pip.conf:ro"
        if peer == "uv":
            scripts = self.uv_dockerfiles(scripts)
            mounts += f" -v {uv_binary()}:/usr/local/bin/uv:ro"
        env = {
            "DOCKER": f"buildah --root {root / 'root'} --runroot {root / 'run'} {' '.join(PODMAN_LIKE)}",
            "BUILD_FLAGS": f"--layers --isolation chroot --network host --tls-verify=false {mounts} {extra_flags}",
            "PUSH_FLAGS": "--tls-verify=false",
        }
        return merge([
            timed(["sh", str(scripts / "build-base-images.sh"), registry, "base", "bench"], cwd=self.project, env=env,
                  log=self.log),
            timed(["sh", str(scripts / "build-and-push-images.sh"), registry, self.version, "bench", "base"],
                  cwd=self.project, env=env, log=self.log),
        ])

    def uv_dockerfiles(self, exported: Path) -> Path:
        """The exported Dockerfiles and scripts with every pip step made a uv step (uv's Docker guidance:
        `uv pip install --compile-bytecode`, the uv binary mounted into the build, not copied into a layer)."""
        out = exported.parent / "docker-uv"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        uv = ("uv pip install --python /opt/venv/bin/python --no-cache --compile-bytecode --require-hashes --no-deps "
              "--only-binary :all: --no-index --find-links /wheels -r")
        for path in exported.iterdir():
            if path.is_dir():
                continue
            text = path.read_text()
            if path.name.endswith(".Dockerfile"):
                # the venv without pip (pip is one of the locked distributions, installed by uv like the
                # others); pip run from the venv, from pip's wheel or from PATH becomes uv
                text = re.sub(r"python3 -m venv (--without-pip )?/opt/venv", "python3 -m venv --without-pip /opt/venv", text)
                text = re.sub(r'&& set -- /usr/share/python-wheels/pip-\*\.whl \\\n && /opt/venv/bin/python "\$1/pip" '
                              + re.escape(PIP_INSTALL.removeprefix("pip ")), "&& " + uv, text)
                text = re.sub(r"(/opt/venv/bin/python -m )?" + re.escape(PIP_INSTALL), uv, text)
                if "pip install" in text.replace("uv pip install", ""):
                    raise SystemExit(f"{path.name}: a pip step the uv peer does not know how to replace")
            elif path.suffix == ".sh":
                text = text.replace("infra/docker/$1.Dockerfile", "infra/docker-uv/$1.Dockerfile")
            (out / path.name).write_text(text)
        return out

    # -- the node -------------------------------------------------------------------------------

    def services(self) -> list[str]:
        """The service images (tagged with the project's version) in the lamina registry."""
        repos = self.registries["lamina"].storage / "docker/registry/v2/repositories/bench"
        return sorted(r.name for r in repos.glob("*") if (r / "_manifests/tags" / self.version).exists())

    def pull(self, tool: str) -> tuple[float, int]:
        """A node (podman, own storage, holding the previous version) pulls every service's image as now
        tagged: (seconds, bytes it downloaded). The bytes are those of the blobs the registry served it
        (its access log), not of the layers it lacked by digest: podman stores layers by their chain (a
        layer and everything under it), so after a change low in an image it downloads again every layer
        above the change, even those it holds under another chain."""
        node = self.work / f"node-{tool}"
        podman = ["podman", "--root", str(node / "root"), "--runroot", str(node / "run"), *PODMAN]
        server = self.registries[tool]
        sizes = {f"sha256:{hex_}": size for hex_, size in blob_bytes(server).items()}
        mark = server.mark()
        start = time.perf_counter()
        for service in self.services():
            result = subprocess.run([*podman, "pull", "-q", "--tls-verify=false",
                                     f"{server.host}/bench/{service}:{self.version}"], capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"podman pull of {service} ({tool}) failed: {result.stderr[-2000:]}")
        seconds = time.perf_counter() - start
        served = [r.path.rsplit("/", 1)[1] for r in server.requests(mark)
                  if r.method == "GET" and "/blobs/sha256:" in r.path and r.status == 200]
        return seconds, sum(sizes.get(digest, 0) for digest in served)

    def reset_node(self, tool: str) -> None:
        node = self.work / f"node-{tool}"
        if node.exists():
            podman = ["podman", "--root", str(node / "root"), "--runroot", str(node / "run"), *PODMAN]
            subprocess.run([*podman, "system", "reset", "--force"], capture_output=True)
            shutil.rmtree(node, ignore_errors=True)

    @staticmethod
    def manifest(server: RegistryServer, repo: str, tag: str) -> dict:
        root = server.storage / "docker/registry/v2"
        link = root / "repositories" / repo / "_manifests/tags" / tag / "current/link"
        digest = link.read_text().split(":", 1)[1]
        return json.loads((root / "blobs/sha256" / digest[:2] / digest / "data").read_text())

    # -- scenarios ------------------------------------------------------------------------------

    def run(self) -> list[Row]:
        """Each run makes one change, then every tool builds and pushes the family from its own caches, and
        its node pulls the services."""
        rows: list[Row] = []
        caches = {tool: self.work / ("lamina-store" if tool == "lamina" else f"buildah-{tool}") for tool in self.tools}
        for scenario in [s for s in SCENARIOS if s in self.args.scenarios.split(",")]:
            by_tool = {tool: Row(scenario, tool) for tool in caches}
            try:
                self.scenario(scenario, caches, by_tool)
            except (Exception, SystemExit) as failure:  # keep what was measured; the caches are now unknown
                self.failure = f"{scenario}: {failure}"
                rows += [row for row in by_tool.values() if row.samples]
                print(f"stopped in {scenario}: {str(failure)[-500:]}", flush=True)
                return rows
            for tool, row in by_tool.items():
                row.images = self.image_facts(tool)
                rows.append(row)
        return rows

    def reset_bumps(self) -> None:
        """Put the bumped pins back to their first versions (a workdir an earlier run left bumped)."""
        for file, package, versions in (self.ml_bump, self.core_bump):
            path = self.project / file
            text = path.read_text()
            for version in versions[1:]:
                text = text.replace(f"{package}=={version}\n", f"{package}=={versions[0]}\n")
            path.write_text(text)

    def scenario(self, scenario: str, caches: dict[str, Path], by_tool: dict[str, Row]) -> None:
        """The runs of one scenario: each makes its change, then every tool builds, pushes and is pulled."""
        runs = self.args.runs_cold if scenario == "cold" and self.args.runs_cold else self.args.runs
        for n in range(runs):
            self.change(scenario, n)
            for tool, cache in caches.items():
                if scenario == "cold":
                    self.reset(tool, cache)
                elif not cache.exists():
                    raise SystemExit(f"scenario {scenario} starts from the caches the cold scenario leaves")
                before = blob_bytes(self.registries[tool])
                sampler = Utilisation() if tool == "lamina" and scenario == "cold" and not self.utilisation else None
                if scenario == "fresh-runner":
                    sample = self.fresh_runner(tool, n)
                else:
                    sample = self.lamina_family(cache) if tool == "lamina" else self.buildah_family(cache, tool)
                if sampler is not None:
                    self.utilisation = sampler.stop()
                sample.uploaded = sum(size for d, size in blob_bytes(self.registries[tool]).items() if d not in before)
                if scenario == "cold" and n == 0:
                    self.reset_node(tool)
                if self.args.pull:
                    sample.pull_s, sample.pulled = self.pull(tool)
                self.prune(tool)
                by_tool[tool].samples.append(sample)
                print(f"{scenario:5} {tool:8} run {n + 1}: {sample.wall:7.1f}s wall, {sample.cpu:7.1f}s CPU, "
                      f"{sample.rss_mb} MB RSS, {sample.uploaded / 1e6:.1f} MB uploaded; pull {sample.pull_s:.1f}s "
                      f"{sample.pulled / 1e6:.1f} MB (load {os.getloadavg()[0]:.1f})", flush=True)

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

    def buildah_cache(self, peer: str) -> str:
        return f"{self.registries[peer].host}/bench/buildah-cache"

    def fill_buildah_cache(self) -> None:
        """Each peer's registry cache of the family as it stands (untimed: what a previous CI run left)."""
        for peer in (t for t in self.tools if t != "lamina"):
            self.buildah_family(self.work / f"buildah-{peer}", peer, f"--cache-to {self.buildah_cache(peer)}")

    def fresh_runner(self, tool: str, n: int) -> Sample:
        """One whole-family build and push from nothing local: lamina with an empty store, buildah with empty
        storage and its registry cache (both registries hold the previous family)."""
        if tool == "lamina":
            return self.lamina_family(self.work / f"fresh-store-{n}")
        root = self.work / f"fresh-{tool}-{n}"
        cache = self.buildah_cache(tool)
        try:
            return self.buildah_family(root, tool, f"--cache-from {cache} --cache-to {cache}")
        finally:
            buildah = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), *PODMAN_LIKE]
            subprocess.run([*buildah, "rm", "--all"], capture_output=True)
            subprocess.run([*buildah, "rmi", "--all", "--force"], capture_output=True)

    def prune(self, tool: str) -> None:
        """Untimed, after each build and pull: remove from the peer's storage and from the node's the images
        the change superseded (no tag reaches them, no image is built on them), so that runs which rebuild
        whole stacks fit the disk. What a later build can reuse stays: every step of every tagged image.
        (The Dockerfiles are single-stage, so no other untagged image is a step cache.) lamina's store keeps
        everything: its superseded layers are small, and it reuses none of them either."""
        node = self.work / f"node-{tool}"
        stores = [("podman", node, PODMAN)] if node.exists() else []
        if tool != "lamina":
            stores.append(("buildah", self.work / f"buildah-{tool}", PODMAN_LIKE))
        for program, root, flags in stores:
            command = [program, "--root", str(root / "root"), "--runroot", str(root / "run"), *flags]
            prune = [*command, "image", "prune", "--force"] if program == "podman" else [*command, "rmi", "--prune"]
            result = subprocess.run(prune, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"pruning {root.name}: {result.stderr.strip()[-300:]}", flush=True)

    def reset(self, tool: str, cache: Path) -> None:
        """Empty build caches, and a registry holding only the Python base."""
        if tool != "lamina" and cache.exists():
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
        for tool in self.tools:
            cache = self.work / f"buildah-{tool}"
            if cache.exists():  # unmount its containers' overlays, so the folder can be removed
                buildah = ["buildah", "--root", str(cache / "root"), "--runroot", str(cache / "run"), *PODMAN_LIKE]
                subprocess.run([*buildah, "rm", "--all"], capture_output=True)
            if (self.work / f"node-{tool}").exists():
                self.reset_node(tool)


def report(rows: list[Row], profile: str, machine: str, utilisation: Sequence[tuple[float, float]] = ()) -> str:
    by = {(r.scenario, r.tool): r for r in rows}
    tools = [t for t in TOOLS if any(r.tool == t for r in rows)]
    lines = [f"### {profile} family — {machine}, {time.strftime('%Y-%m-%d %H:%M')}", "",
             "| scenario | tool | wall s (min–max) | CPU s | peak RSS MB | uploaded MB | node pull s | pulled MB "
             "| lamina vs the stronger peer |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for scenario in SCENARIOS:
        if (scenario, "lamina") not in by:
            continue
        ours = by[(scenario, "lamina")]
        peers = [by[(scenario, t)] for t in tools if t != "lamina" and (scenario, t) in by]
        strongest = min(peers, key=lambda r: r.median("wall")) if peers else None
        for row in (ours, *peers):
            low, high = row.span("wall")
            ratio = ""
            if row is ours and strongest is not None:
                speed = strongest.median("wall") / max(ours.median("wall"), 1e-9)
                sent = strongest.median("uploaded") / max(ours.median("uploaded"), 1)
                pulled = strongest.median("pulled") / max(ours.median("pulled"), 1)
                ratio = f"{speed:.1f}× faster than {PEER_NAMES[strongest.tool]}"
                if ours.median("uploaded"):
                    ratio += f", {sent:.0f}× fewer bytes"
                if ours.median("pulled"):
                    ratio += f", {pulled:.0f}× fewer pulled"
            name = PEER_NAMES.get(row.tool, row.tool)
            lines.append(f"| {scenario} | {name} | {row.median('wall'):.2f} ({low:.2f}–{high:.2f}) | "
                         f"{row.median('cpu'):.1f} | {row.median('rss_mb'):.0f} | {row.median('uploaded') / 1e6:.2f} | "
                         f"{row.median('pull_s'):.2f} | {row.median('pulled') / 1e6:.2f} | {ratio} |")
    facts = {t: next((r.images for r in rows if r.tool == t and r.images), {}) for t in tools}
    lines += ["", "| image | " + " | ".join(f"{PEER_NAMES.get(t, t)} layers | MB" for t in tools) + " |",
              "|---|" + "---:|---:|" * len(tools)]
    for name in sorted(set().union(*facts.values())):
        cells = []
        for t in tools:
            f = facts[t].get(name, {})
            cells.append(f"{f.get('layers', '–')} | {f.get('bytes', 0) / 1e6:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if utilisation:
        lines += ["", "lamina's first cold build, the machine's CPU use every second (sampled at 0.5 s):", "",
                  utilisation_chart(utilisation)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="ci")
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 5), help="runs per scenario (median, min, max)")
    parser.add_argument("--runs-cold", type=int, help="runs of the cold scenario (default: --runs)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--workdir", help="where to work (default: a new temp dir, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--peer", default="pip,uv", help="the peers: pip, uv or pip,uv (default)")
    parser.add_argument("--no-pull", dest="pull", action="store_false", help="skip the node's pulls")
    parser.add_argument("--sbom", action="store_true",
                        help="let lamina attach its SBOMs and provenance (the default of `lamina build`; the peers make none)")
    parser.add_argument("--setup-only", action="store_true",
                        help="prepare --workdir (project, wheelhouse, lock) and stop: a later run starts from it")
    parser.add_argument("--seed-store", help="a lamina store whose blobs (wheels) the setup links instead of downloading")
    args = parser.parse_args()
    if not set(args.peer.split(",")) <= {"pip", "uv"}:
        parser.error("--peer takes pip, uv or pip,uv")
    for tool in ("buildah", "podman", "docker-registry", "/usr/bin/time"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install buildah docker-registry time)", file=sys.stderr)
            return 2
    bench = Bench(args)
    try:
        bench.setup()
        if args.setup_only:
            return 0
        rows = bench.run()
    finally:
        bench.close()
        if not args.keep and not args.workdir:
            shutil.rmtree(bench.work, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = report(rows, args.profile, machine, bench.utilisation)
    if bench.failure:
        text += f"\n\nThe run stopped in {bench.failure[:300]}: the rows above are what was measured before.\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"family-{args.profile}.md").write_text(text + "\n")
    (RESULTS / f"family-{args.profile}.json").write_text(json.dumps(
        {"machine": machine, "profile": args.profile, "rows": [asdict(r) for r in rows],
         "utilisation": bench.utilisation, "failure": bench.failure}, indent=2))
    return 1 if bench.failure else 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__: Sequence[Callable[..., object]] = []
