"""Layer compressors side by side on real layers: output size, wall and CPU time, same run.

    python bench/compression.py --store STORE [--min-mb 1] [--only base-ml]

Reads every layer a lamina store holds (``layers/*.json``: the uncompressed tar of each, once per
diff_id), and compresses all of them with each candidate, in the pigz scheme lamina uses (1 MiB
pieces deflated in parallel on every core, each with the previous 32 KiB as its dictionary):

- zlib-ng at levels 1, 4 and 6 (6 is lamina's gzip until 0.x);
- ISA-L (``isal`` on PyPI) at levels 1, 2 and 3;
- zstd level 3, multi-threaded.

Prints a table (total input, output, ratio to zlib-ng 6, wall, CPU, MB/s of input) and writes it to
bench/results/compression.md. Nothing here is asserted: the numbers are for people.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zstandard
from isal import isal_zlib
from zlib_ng import zlib_ng

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 1 << 20
WINDOW = 32 * 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pigz(module, level: int) -> Callable[[Path, ThreadPoolExecutor], int]:  # noqa: ANN001 (zlib-like module)
    """A pigz-scheme compressor of one file with ``module`` (zlib_ng or isal_zlib); returns bytes out."""

    def piece(block: bytes, dictionary: bytes, last: bool) -> bytes:
        extra = [dictionary] if dictionary else []
        c = module.compressobj(level, module.DEFLATED, -15, 8, module.Z_DEFAULT_STRATEGY, *extra)
        return c.compress(block) + c.flush(module.Z_FINISH if last else module.Z_SYNC_FLUSH)

    def run(path: Path, pool: ThreadPoolExecutor) -> int:
        data = path.read_bytes()
        futures = []
        for start in range(0, max(len(data), 1), BLOCK):
            block = data[start : start + BLOCK]
            dictionary = data[max(0, start - WINDOW) : start]
            futures.append(pool.submit(piece, block, dictionary, start + BLOCK >= len(data)))
        return 18 + sum(len(f.result()) for f in futures)

    return run


def zstd3(path: Path, pool: ThreadPoolExecutor) -> int:
    compressor = zstandard.ZstdCompressor(level=3, threads=pool._max_workers, write_content_size=False)
    out = io.BytesIO()
    with compressor.stream_writer(out, closefd=False) as writer:
        writer.write(path.read_bytes())
    return len(out.getvalue())


CANDIDATES: dict[str, Callable[[Path, ThreadPoolExecutor], int]] = {
    "zlib-ng 6 (lamina ≤ 0.x)": pigz(zlib_ng, 6),
    "zlib-ng 4": pigz(zlib_ng, 4),
    "zlib-ng 1": pigz(zlib_ng, 1),
    "ISA-L 3": pigz(isal_zlib, 3),
    "ISA-L 2": pigz(isal_zlib, 2),
    "ISA-L 1": pigz(isal_zlib, 1),
    "zstd 3 (multi-threaded)": zstd3,
}


def layer_tars(store: Path, scratch: Path, min_bytes: int) -> list[Path]:
    """Every distinct layer of the store, uncompressed, as files under ``scratch`` (biggest first)."""
    tars: dict[str, Path] = {}
    for record in sorted((store / "layers").glob("*")):
        data = json.loads(record.read_text())
        diff_id = data.get("diff_id") or "sha256:" + record.name.split(".")[0]
        blob = store / "blobs" / "sha256" / data["digest"].split(":", 1)[1]
        if diff_id in tars or not blob.exists():
            continue
        raw = blob.read_bytes()
        plain = (zstandard.ZstdDecompressor().decompressobj().decompress(raw) if raw[:4] == b"\x28\xb5\x2f\xfd"
                 else zlib.decompress(raw, 16 + zlib.MAX_WBITS))
        if len(plain) < min_bytes:
            continue
        path = scratch / diff_id.split(":", 1)[1]
        path.write_bytes(plain)
        tars[diff_id] = path
    return sorted(tars.values(), key=lambda p: -p.stat().st_size)


def measure(tars: list[Path], jobs: int) -> list[dict[str, float | str]]:
    total = sum(p.stat().st_size for p in tars)
    rows = []
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for name, run in CANDIDATES.items():
            for p in tars:  # warm the page cache
                p.read_bytes()
            cpu0, wall0 = cpu_seconds(), time.perf_counter()
            out = sum(run(p, pool) for p in tars)
            wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
            rows.append({"candidate": name, "input_mb": total / 1e6, "output_mb": out / 1e6, "wall_s": wall,
                         "cpu_s": cpu, "mb_per_cpu_s": total / 1e6 / cpu})
            print(f"{name:28} {out / 1e6:9.1f} MB {wall:7.2f} s wall {cpu:7.2f} s CPU", flush=True)
    return rows


def table(rows: list[dict[str, float | str]], title: str) -> str:
    base = next(r for r in rows if str(r["candidate"]).startswith("zlib-ng 6"))
    lines = [f"### {title}", "",
             "| compressor | input MB | output MB | size vs zlib-ng 6 | wall s | CPU s | MB/s per core |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['candidate']} | {r['input_mb']:.0f} | {r['output_mb']:.1f} | "
                     f"{float(r['output_mb']) / float(base['output_mb']) - 1:+.1%} | {r['wall_s']:.2f} | "
                     f"{r['cpu_s']:.2f} | {r['mb_per_cpu_s']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a lamina store holding the family's layers")
    parser.add_argument("--min-mb", type=float, default=0, help="skip layers smaller than this (uncompressed)")
    parser.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory(prefix="lamina-bench-compression-") as scratch:
        tars = layer_tars(args.store, Path(scratch), int(args.min_mb * 1e6))
        print(f"{len(tars)} layers, {sum(p.stat().st_size for p in tars) / 1e6:.0f} MB uncompressed", flush=True)
        rows = measure(tars, args.jobs)
    load = os.getloadavg()
    text = table(rows, f"{args.title or args.store} — {len(tars)} layers, {args.jobs} threads ({machine}, "
                       f"load {load[0]:.1f} after)")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compression.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
