"""CPU seconds per stage of a cold build's Python layers, each stage measured alone: the floor on N cores.

    python bench/stages.py --lock LOCK [--exclude svc-ocr]

For every Python layer the family's lock asks for (the images lamina builds on the shared Python base),
one at a time and in one thread, so each stage's CPU time is its own:

- fetch: the wheel copied into a fresh store and its sha256 checked (from a local wheelhouse);
- install: pypa installer unpacking the wheel into a staging tree (hashing each file for RECORD), with
  ISA-L's inflate, as lamina's installer processes unzip;
- compile: lamina's compile servers and the processes they fork (child CPU time);
- tar + sha256: the layer tar streamed through sha256 (the diff_id), reading every staged file;
- gzip (ISA-L 2) / gzip-small (zlib-ng 6) / zstd 3: compressing that tar, one thread.

Layer trees are staged where lamina stages them (tmpfs, see lamina.oci.scratch). The sum of one column
per stage over the number of cores is the floor of a cold build's wall time
(if every stage overlapped perfectly); bench/README.md compares it with the measured wall time.
Prints a Markdown table; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import zstandard  # noqa: E402

from lamina.lock import Lock  # noqa: E402
from lamina.oci.compress import DEFLATES, _deflate_block  # noqa: E402
from lamina.oci.digest import DigestWriter  # noqa: E402
from lamina.oci.model import Platform  # noqa: E402
from lamina.oci.scratch import staging_root  # noqa: E402
from lamina.oci.store import BlobStore  # noqa: E402
from lamina.oci.tar import tar_chunks  # noqa: E402
from lamina.python.install import IsalInflate, compile_site_packages, install_wheel, staged_entries  # noqa: E402
from lamina.python.layers import group_dists  # noqa: E402
from lamina.python.resolve import LockedDist  # noqa: E402
from lamina.python.target import PythonTarget  # noqa: E402
from lamina.python.wheels import fetch_wheels  # noqa: E402


def children_cpu() -> float:
    """CPU seconds of this process's children: those reaped, and those still running (lamina's compile
    servers live for the whole build, their forked compilers are reaped by them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    me = str(os.getpid())
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def measure(lock_path: Path, scratch: Path, exclude: set[str]) -> tuple[dict[str, float], int, int]:
    """CPU seconds per stage over every distinct Python layer of the lock but those of the ``exclude``d
    images; (stages, layers, tar bytes)."""
    import zipfile

    zipfile.zlib = IsalInflate()  # type: ignore[assignment]  # as in lamina's installer processes
    data = Lock.load(lock_path).data
    target = PythonTarget("3.11.2", "/usr/bin/python3.11", Platform())
    store = BlobStore(scratch / "store")
    seconds: dict[str, float] = defaultdict(float)
    seen: set[tuple[str, ...]] = set()
    layers = size = 0
    sections = [section for name, image in data.get("images", {}).items() if name not in exclude
                for section in image.values()]
    stage_in = staging_root(scratch)
    stage_in.mkdir(parents=True, exist_ok=True)
    for section in sections:  # one per image and platform
        dists = [LockedDist.from_lock(d) for d in section.get("python", {}).get("dists", [])]
        for group in group_dists(dists):
            pins = tuple(d.pin for d in group)
            if pins in seen:
                continue
            seen.add(pins)
            layers += 1
            t = time.thread_time()
            wheels = fetch_wheels(group, store)
            seconds["fetch"] += time.thread_time() - t
            staging = Path(tempfile.mkdtemp(dir=stage_in))
            t = time.thread_time()
            for dist in group:
                named = scratch / dist.filename
                if not named.exists():
                    named.symlink_to(wheels[dist.name])
                install_wheel(named, dist.name, target, staging, compile_bytecode=False)
            seconds["install"] += time.thread_time() - t
            c = children_cpu()
            t = time.thread_time()
            compile_site_packages(staging, target)
            seconds["compile"] += children_cpu() - c + time.thread_time() - t
            t = time.thread_time()
            writer = DigestWriter()
            chunks = []
            for chunk in tar_chunks(staged_entries(staging), mtime=0):
                writer.write(chunk)
                chunks.append(chunk)
            seconds["tar + sha256"] += time.thread_time() - t
            tar = b"".join(chunks)
            size += len(tar)
            for kind, deflate in DEFLATES.items():
                t = time.thread_time()
                for start in range(0, len(tar), 1 << 20):
                    _deflate_block(tar[start:start + (1 << 20)], tar[max(0, start - 32768):start], False, deflate)
                seconds[f"{kind} ({deflate.library} {deflate.level})"] += time.thread_time() - t
            t = time.thread_time()
            zstandard.ZstdCompressor(level=3).compress(tar)
            seconds["zstd 3"] += time.thread_time() - t
            shutil.rmtree(staging)
    return seconds, layers, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", type=Path, required=True, help="the family's lamina.lock")
    parser.add_argument("--exclude", default="", help="images of the lock to leave out, comma-separated "
                        "(family.py's bench leaves out svc-ocr)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lamina-bench-stages-") as scratch:
        seconds, layers, size = measure(args.lock, Path(scratch), set(filter(None, args.exclude.split(","))))
    load = os.getloadavg()[0]
    print(f"### CPU seconds per stage: {layers} Python layers, {size / 1e6:.0f} MB of tar (load {load:.1f})\n")
    print("| stage | CPU s |\n|---|---:|")
    for stage, value in seconds.items():
        print(f"| {stage} | {value:.2f} |")
    floor = sum(v for k, v in seconds.items() if not k.startswith(("gzip-small", "zstd")))
    print(f"| **total with the default gzip** | **{floor:.2f}** (on 2 cores ≥ {floor / 2:.2f} s wall) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
