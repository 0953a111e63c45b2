"""Compression output depends on its pinned parameters only, never on threads."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import isal
import pytest
import zstandard

from lamina.oci import compress
from lamina.oci.compress import DEFLATES, ParallelGzipWriter, ZstdWriter, compressor_id, instruction_class


def sample(size: int = 5_000_000) -> bytes:
    rng = random.Random(7)
    words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(2, 12))) for _ in range(500)]
    text = b" ".join(rng.choice(words) for _ in range(size // 7))
    return text[: size // 2] + os.urandom(0) + rng.randbytes(size // 2)


def gzip_with(data: bytes, threads: int, piece: int, kind: str = "gzip") -> bytes:
    out = io.BytesIO()
    saved = compress._pool
    compress._pool = ThreadPoolExecutor(max_workers=threads)
    try:
        writer = ParallelGzipWriter(out, deflate=DEFLATES[kind])
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
        writer.close()
    finally:
        compress._pool.shutdown()
        compress._pool = saved
    return out.getvalue()


@pytest.mark.parametrize("kind", sorted(DEFLATES))
def test_parallel_gzip_round_trips(kind):
    data = sample()
    assert gzip.decompress(gzip_with(data, 2, 65536, kind)) == data


@pytest.mark.parametrize("kind", sorted(DEFLATES))
def test_parallel_gzip_is_independent_of_threads_and_write_sizes(kind):
    data = sample(3_000_000)
    assert gzip_with(data, 1, 4096, kind) == gzip_with(data, 2, 1 << 20, kind) == gzip_with(data, 4, 777_777, kind)


def test_empty_input_is_a_valid_gzip():
    assert gzip.decompress(gzip_with(b"", 2, 10)) == b""


def test_gzip_header_has_no_timestamp_or_name():
    out = gzip_with(b"x", 1, 1)
    assert out[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def zstd_with(data: bytes, threads: int, piece: int, monkeypatch) -> bytes:
    monkeypatch.setenv("LAMINA_JOBS", str(threads))  # ZstdWriter takes its thread count from workers()
    assert compress.workers() == threads
    buf = io.BytesIO()
    writer = ZstdWriter(buf)
    for i in range(0, len(data), piece):
        writer.write(data[i : i + piece])
    writer.close()
    return buf.getvalue()


def test_zstd_round_trips_and_is_independent_of_threads_and_write_sizes(monkeypatch):
    # 20 MB: several zstd jobs (8 MB each at level 3), so the threads really share the work; below one job
    # every thread count gives the same bytes trivially. Single-threaded zstd (which lamina never uses)
    # cuts no jobs, so its output differing shows the input was split.
    data = sample(4_000_000) * 5
    one = zstd_with(data, 1, len(data), monkeypatch)
    assert zstandard.ZstdCompressor(level=compress.ZSTD_LEVEL, threads=0, write_content_size=False).compress(data) != one
    assert zstd_with(data, 2, 1 << 20, monkeypatch) == one
    assert zstd_with(data, 4, 777_777, monkeypatch) == one
    assert zstandard.ZstdDecompressor().decompressobj().decompress(one) == data


def test_gzip_bytes_are_pinned():
    """The default compressor's exact output: a change here changes every gzip layer digest (the isal
    release, ISA-L's level, the block size). Pinned for x86-64-v2 hosts, whose bytes ISA-L makes alike."""
    if instruction_class() != "x86-64-v2":
        pytest.skip(f"the pinned bytes are x86-64-v2's; this host is {instruction_class()}")
    data = sample(3_000_000)
    assert hashlib.sha256(gzip_with(data, 2, 65536)).hexdigest() == (
        "67916ebe0d66b7adb8f860faa919aa940326a059513d7ef374dd2f347a66db5e"
    )


def test_gzip_small_bytes_are_pinned_on_every_host():
    """zlib-ng's exact output (gzip-small, lamina 0.x's gzip): the same on every CPU."""
    data = sample(3_000_000)
    assert hashlib.sha256(gzip_with(data, 2, 65536, "gzip-small")).hexdigest() == (
        "19f1a11b9f08c74b6684d438fce02d4d9b43dcb09ae8c7db0a65b1d0ae12227a"
    )


def test_compressor_identity_names_release_level_and_cpu_class():
    assert compressor_id("gzip") == (f"gzip/isal-{isal.__version__}+isa-l-{isal.ISAL_VERSION}/{instruction_class()}"
                                     f"/level-2/block-{1 << 20}")
    assert compressor_id("gzip-small").startswith("gzip/zlib-ng-2.") and "/level-6/" in compressor_id("gzip-small")
    assert compressor_id("gzip") != compressor_id("gzip-small") != compressor_id("zstd")


ISA_CHECK = """
import hashlib, sys
sys.path[:0] = sys.argv[1:]
from test_compress import gzip_with, sample
print(hashlib.sha256(gzip_with(sample(400_000), 2, 65536)).hexdigest())
"""


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["Nehalem", "Haswell"])
def test_default_gzip_bytes_do_not_depend_on_the_cpus_vector_units(cpu):
    """ISA-L picks SSE4.2, AVX2 or AVX-512 code at run time: under qemu's models of an SSE4.2-only and an
    AVX2 CPU, the bytes are the host's (which may have AVX-512)."""
    qemu = shutil.which("qemu-x86_64-static")
    if qemu is None or platform.machine() != "x86_64" or instruction_class() != "x86-64-v2":
        pytest.skip("needs an x86-64-v2 host and qemu-x86_64-static (Debian qemu-user-static)")
    here = str(Path(__file__).parent)
    src = str(Path(compress.__file__).parents[2])
    native = subprocess.run([sys.executable, "-c", ISA_CHECK, here, src], capture_output=True, text=True, check=True)
    emulated = subprocess.run([qemu, "-cpu", cpu, sys.executable, "-c", ISA_CHECK, here, src], capture_output=True,
                              text=True, check=True, timeout=600)
    assert emulated.stdout == native.stdout
