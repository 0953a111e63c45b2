"""The CI family for linux/arm64 on an x86-64 machine: lamina natively against buildah under QEMU, same run.

    python bench/arm64.py            # a few minutes, most of it buildah's pip under emulation

lamina never runs the image's programs, so it builds an arm64 image at the host's speed from arm64 wheels
and arm64 .debs. The peer builds the Dockerfiles `lamina export dockerfiles` writes (the seed's method) with
`buildah bud --platform linux/arm64 --layers`, whose RUN steps (python -m venv, pip install) run under
qemu-aarch64 through binfmt_misc (registered here, as root, for the run and unregistered after). Both start
from the same two-platform Python base (built by lamina, pushed to each tool's loopback registry) and install
from the same wheelhouse (both platforms' wheels, downloaded once beforehand), so the network is not measured.

Also measured: lamina's cold build of the family for amd64 alone, and for amd64 + arm64 in one index.

Writes bench/results/arm64.md and .json. Nothing here is asserted: the numbers are for people.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from family import EXAMPLE, PODMAN_LIKE, PYTHON_BASE_PACKAGES, RESULTS, Sample, blob_bytes, merge, timed  # noqa: E402
from registry_servers import RegistryServer  # noqa: E402

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BOTH = '["linux/amd64", "linux/arm64"]'


def register_binfmt() -> bool:
    """qemu-aarch64 in binfmt_misc (as root); returns whether this call registered it."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    if (BINFMT / "qemu-aarch64").exists():
        return False
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    (BINFMT / "register").write_text(next(l for l in conf.read_text().splitlines() if l.startswith(":")))
    return True


class Arm64Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="lamina-bench-arm64-"))
        self.log = self.work / "commands.log"
        self.project = self.work / "project"
        self.wheelhouse = self.work / "wheelhouse"
        self.registries: dict[str, RegistryServer] = {}

    def lamina(self, *args: str, store: Path, cwd: Path | None = None) -> Sample:
        env = {"LAMINA_STORE": str(store), "PYTHONPATH": str(ROOT / "src"), "NO_PROXY": "127.0.0.1,localhost"}
        return timed([sys.executable, "-m", "lamina", *args], cwd=cwd or self.project, env=env, log=self.log)

    # -- setup ----------------------------------------------------------------------------------

    def setup(self) -> None:
        print(f"workdir {self.work}", flush=True)
        shutil.copytree(EXAMPLE, self.project, ignore=shutil.ignore_patterns("build", "__pycache__", "infra"))
        self.config = self.project / "lamina.toml"
        self.original = self.config.read_text()
        self.config.write_text(self.original.replace("[project]\n", f"[project]\nplatforms = {BOTH}\n", 1))
        setup_store = self.work / "setup-store"
        self.lamina("lock", store=setup_store)  # both platforms' pins, from PyPI
        self.copy_wheels(setup_store)
        for tool in ("lamina", "buildah"):
            server = RegistryServer(self.work / f"registry-{tool}")
            server.workdir.mkdir(parents=True)
            self.registries[tool] = server.start()
        self.push_python_base()
        self.template = self.bench_config()
        self.use("lamina", BOTH)
        self.lamina("lock", store=setup_store)  # the same pins, from the wheelhouse

    def copy_wheels(self, store: Path) -> None:
        from lamina.lock import Lock
        from lamina.oci.store import BlobStore
        from lamina.python.resolve import LockedDist
        from lamina.python.wheels import fetch_wheels

        self.wheelhouse.mkdir()
        lock = Lock.load(self.project / "lamina.lock")
        dists = {d["url"]: LockedDist.from_lock(d) for image in lock.data["images"].values()
                 for sections in image.values() for d in sections.get("python", {}).get("dists", [])}
        for dist in dists.values():
            target = self.wheelhouse / dist.filename
            if not target.exists():
                shutil.copy(fetch_wheels([dist], BlobStore(store))[dist.name], target)

    def push_python_base(self) -> None:
        base = self.work / "python-base"
        base.mkdir(exist_ok=True)
        packages = ", ".join(f'"{p}"' for p in PYTHON_BASE_PACKAGES)
        (base / "lamina.toml").write_text(
            f'[project]\nversion = "base"\nplatforms = {BOTH}\n\n[images.python]\nfrom = "debian:bookworm"\n'
            f'packages = [{packages}]\nuser = "app"\n')
        for server in self.registries.values():
            self.lamina("build", "--push", "--registry", server.host, "--owner", "bench", store=self.work / "setup-store",
                        cwd=base)

    def bench_config(self) -> str:
        text = self.config.read_text()
        text = re.sub(r'(?ms)^\[images\.python\].*?(?=^\[)', "", text)
        text = text.replace('from = "python"', 'from = "REGISTRY/bench/python:base"')
        text = re.sub(r'(?m)^registry = .*$', 'registry = "REGISTRY"', text)
        text = re.sub(r'(?m)^owner = .*$', 'owner = "bench"', text)
        text = re.sub(r'(?m)^base_version = .*$', 'base_version = "base"', text)
        text = re.sub(r'(?m)^platforms = .*$', 'platforms = PLATFORMS', text)
        self.version = re.search(r'(?m)^version = "([^"]*)"', text).group(1)  # type: ignore[union-attr]
        return text + f'\n[python]\nfind_links = ["{self.wheelhouse}"]\nno_index = true\n'

    def use(self, tool: str, platforms: str) -> None:
        self.config.write_text(self.template.replace("REGISTRY", self.registries[tool].host)
                               .replace("PLATFORMS", platforms))

    def fresh_registry(self, tool: str) -> None:
        server = self.registries[tool]
        server.stop()
        shutil.rmtree(server.storage)
        server.start()
        base = self.work / "python-base"
        self.lamina("build", "--push", "--registry", server.host, "--owner", "bench", store=self.work / "setup-store",
                    cwd=base)

    # -- the tools ------------------------------------------------------------------------------

    def lamina_cold(self, platforms: str) -> Sample:
        self.use("lamina", platforms)
        self.fresh_registry("lamina")
        store = self.work / "lamina-store"
        shutil.rmtree(store, ignore_errors=True)
        before = blob_bytes(self.registries["lamina"])
        sample = self.lamina("build", "--locked", "--push", "--no-check", store=store)
        sample.uploaded = sum(s for d, s in blob_bytes(self.registries["lamina"]).items() if d not in before)
        return sample

    def buildah_arm64_cold(self) -> Sample:
        self.use("buildah", '["linux/arm64"]')  # the export pins each image to its arm64 lock
        self.fresh_registry("buildah")
        self.lamina("export", "dockerfiles", store=self.work / "setup-store")
        root = self.work / "buildah"
        shutil.rmtree(root, ignore_errors=True)
        pip_conf = self.work / "pip.conf"
        pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n")
        registry = self.registries["buildah"].host
        env = {
            "DOCKER": f"buildah --root {root / 'root'} --runroot {root / 'run'} {' '.join(PODMAN_LIKE)}",
            "BUILD_FLAGS": f"--platform linux/arm64 --layers --isolation chroot --network host --tls-verify=false "
                           f"-v {self.wheelhouse}:/wheels:ro -v {pip_conf}:/etc/pip.conf:ro",
            "PUSH_FLAGS": "--tls-verify=false",
        }
        scripts = self.project / "infra" / "docker"
        before = blob_bytes(self.registries["buildah"])
        try:
            sample = merge([
                timed(["sh", str(scripts / "build-base-images.sh"), registry, "base", "bench"], cwd=self.project,
                      env=env, log=self.log),
                timed(["sh", str(scripts / "build-and-push-images.sh"), registry, self.version, "bench", "base"],
                      cwd=self.project, env=env, log=self.log),
            ])
        finally:
            buildah = ["buildah", "--root", str(root / "root"), "--runroot", str(root / "run"), *PODMAN_LIKE]
            subprocess.run([*buildah, "rm", "--all"], capture_output=True)
        sample.uploaded = sum(s for d, s in blob_bytes(self.registries["buildah"]).items() if d not in before)
        return sample

    def close(self) -> None:
        for server in self.registries.values():
            server.stop()


def row(name: str, tool: str, s: Sample, note: str = "") -> str:
    return f"| {name} | {tool} | {s.wall:.2f} | {s.cpu:.1f} | {s.rss_mb} | {s.uploaded / 1e6:.1f} | {note} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="where to work (default: a new temp dir, removed unless --keep)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    for tool in ("buildah", "docker-registry", "/usr/bin/time", "qemu-aarch64-static"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed (apt-get install buildah docker-registry time qemu-user-static)", file=sys.stderr)
            return 2
    registered = register_binfmt()
    bench = Arm64Bench(args)
    load = os.getloadavg()[0]
    try:
        bench.setup()
        amd = bench.lamina_cold('["linux/amd64"]')
        print(f"lamina amd64 cold: {amd.wall:.1f}s", flush=True)
        arm = bench.lamina_cold('["linux/arm64"]')
        print(f"lamina arm64 cold: {arm.wall:.1f}s", flush=True)
        both = bench.lamina_cold(BOTH)
        print(f"lamina amd64+arm64 cold: {both.wall:.1f}s", flush=True)
        peer = bench.buildah_arm64_cold()
        print(f"buildah arm64 (QEMU) cold: {peer.wall:.1f}s", flush=True)
    finally:
        bench.close()
        if registered:
            (BINFMT / "qemu-aarch64").write_text("-1")
        if not args.keep and not args.workdir:
            shutil.rmtree(bench.work, ignore_errors=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load {load:.1f} at start, {time.strftime('%Y-%m-%d')}"
    lines = [f"### arm64 — the CI family, cold, built and pushed ({machine})", "",
             "| build | tool | wall s | CPU s | peak RSS MB | uploaded MB | ratio |", "|---|---|---:|---:|---:|---:|---:|",
             row("linux/arm64", "lamina (native)", arm, f"{peer.wall / arm.wall:.1f}× faster than buildah under QEMU"),
             row("linux/arm64", "buildah bud --platform (QEMU)", peer),
             row("linux/amd64", "lamina", amd),
             row("linux/amd64 + linux/arm64", "lamina", both, f"{both.wall / amd.wall:.2f}× amd64 alone")]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "arm64.md").write_text(text + "\n")
    (RESULTS / "arm64.json").write_text(json.dumps({"machine": machine, "amd64": vars(amd), "arm64": vars(arm),
                                                    "both": vars(both), "buildah_arm64": vars(peer)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
