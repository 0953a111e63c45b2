"""Layer writing throughput and memory: lamina vs `tar | gzip -6` and `tar | pigz -6`, same files, same run.

    python bench/layers.py [--corpus DIR] [--big-corpus DIR] [--runs N]

Prints a table (uncompressed MB/s, compressed size, wall and CPU time, peak RSS) and writes it to
bench/results/layers.md and .json. The page cache is warmed first so every tool reads from memory.
Nothing here is asserted: the numbers are for people.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

WRITE_LAYER = """
import sys, time
from pathlib import Path
from lamina.oci.layer import LayerSpec, build_layer
from lamina.oci.store import BlobStore
from lamina.oci.tar import tree_entries
store = BlobStore(sys.argv[2])
spec = LayerSpec(lambda: tree_entries(sys.argv[1], "/corpus"), "corpus")
built = build_layer(store, spec, compression=sys.argv[3], media_type="application/vnd.oci.image.layer.v1.tar+" + sys.argv[3], mtime=1)
print(built.layer.size)
"""


def corpus_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def run_measured(cmd: list[str] | str, *, shell: bool = False) -> tuple[float, float, int, str]:
    """(wall seconds, CPU seconds, peak RSS in MB of the largest process, stdout), via GNU time."""
    argv = ["sh", "-c", cmd] if shell else list(cmd)
    with tempfile.NamedTemporaryFile("r", prefix="lamina-bench-time-") as report:
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", report.name, *argv], check=True,
                             capture_output=True, text=True).stdout
        wall = time.perf_counter() - start
        user, system, rss_kb = report.read().split()[-3:]
    return wall, float(user) + float(system), int(rss_kb) // 1024, out


def lamina_cmd(corpus: Path, compression: str) -> tuple[list[str], Path]:
    store = Path(tempfile.mkdtemp(prefix="lamina-bench-store-"))
    return [sys.executable, "-c", WRITE_LAYER, str(corpus), str(store), compression], store


def measure(corpus: Path, runs: int) -> list[dict]:
    size = corpus_size(corpus)
    subprocess.run(f"tar -C {corpus} -cf - . > /dev/null", shell=True, check=True)  # warm the page cache
    tools = {
        "lamina (gzip -6, parallel)": None,
        "lamina (zstd -3)": None,
        "tar → gzip -6": f"tar -C {corpus} --sort=name -cf - . | gzip -6 > {{out}}",
        "tar → pigz -6": f"tar -C {corpus} --sort=name -cf - . | pigz -6 > {{out}}",
    }
    rows = []
    for name, shell_cmd in tools.items():
        walls, cpus, rss, out_size = [], [], 0, 0
        for _ in range(runs):
            if shell_cmd is None:
                cmd, store = lamina_cmd(corpus, "zstd" if "zstd" in name else "gzip")
                wall, cpu, peak, out = run_measured(cmd)
                out_size = int(out.strip())
                shutil.rmtree(store)
            else:
                with tempfile.NamedTemporaryFile(prefix="lamina-bench-") as tmp:
                    wall, cpu, peak, _ = run_measured(shell_cmd.format(out=tmp.name), shell=True)
                    out_size = os.path.getsize(tmp.name)
            walls.append(wall)
            cpus.append(cpu)
            rss = max(rss, peak)
        median = statistics.median(walls)
        rows.append({
            "tool": name, "input_mb": round(size / 1e6, 1), "wall_s": round(median, 2),
            "min_s": round(min(walls), 2), "max_s": round(max(walls), 2), "cpu_s": round(statistics.median(cpus), 2),
            "mb_per_s": round(size / 1e6 / median, 1), "output_mb": round(out_size / 1e6, 1), "peak_rss_mb": rss,
        })
    return rows


def table(rows: list[dict], title: str) -> str:
    pigz = next(r for r in rows if r["tool"] == "tar → pigz -6")["wall_s"]
    gzip = next(r for r in rows if r["tool"] == "tar → gzip -6")["wall_s"]
    lines = [f"### {title}", "",
             "| tool | input MB | MB/s | wall s (min–max) | CPU s | output MB | peak RSS MB | vs gzip | vs pigz |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['tool']} | {r['input_mb']} | {r['mb_per_s']} | {r['wall_s']} ({r['min_s']}–{r['max_s']}) | "
            f"{r['cpu_s']} | {r['output_mb']} | {r['peak_rss_mb']} | {gzip / r['wall_s']:.2f}× | {pigz / r['wall_s']:.2f}× |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path(sysconfig.get_paths()["purelib"]),
                        help="a few hundred MB of mixed files (default: this Python's site-packages)")
    parser.add_argument("--big-corpus", type=Path, default=Path(sys.prefix),
                        help="about 1 GB of files, for peak memory (default: this Python's prefix)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for tool in ("tar", "gzip", "pigz", "/usr/bin/time"):
        if shutil.which(tool) is None:
            package = "time" if tool == "/usr/bin/time" else tool
            print(f"{tool} is needed: apt-get install {package}", file=sys.stderr)
            return 2
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    sections = [
        table(measure(args.corpus, args.runs), f"{args.corpus} ({machine})"),
        table(measure(args.big_corpus, 1), f"{args.big_corpus}, one run ({machine})"),
    ]
    text = "\n\n".join(sections)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "layers.md").write_text(text + "\n")
    (RESULTS / "layers.json").write_text(json.dumps({"machine": machine, "tables": sections}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
