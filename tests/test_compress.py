"""Compression output depends on its pinned parameters only, never on threads."""

from __future__ import annotations

import gzip
import io
import os
import random
from concurrent.futures import ThreadPoolExecutor

import zstandard

from lamina.oci import compress
from lamina.oci.compress import ParallelGzipWriter, ZstdWriter


def sample(size: int = 5_000_000) -> bytes:
    rng = random.Random(7)
    words = [bytes(rng.randrange(97, 123) for _ in range(rng.randrange(2, 12))) for _ in range(500)]
    text = b" ".join(rng.choice(words) for _ in range(size // 7))
    return text[: size // 2] + os.urandom(0) + rng.randbytes(size // 2)


def gzip_with(data: bytes, threads: int, piece: int) -> bytes:
    out = io.BytesIO()
    saved = compress._pool
    compress._pool = ThreadPoolExecutor(max_workers=threads)
    try:
        writer = ParallelGzipWriter(out)
        for i in range(0, len(data), piece):
            writer.write(data[i : i + piece])
        writer.close()
    finally:
        compress._pool.shutdown()
        compress._pool = saved
    return out.getvalue()


def test_parallel_gzip_round_trips():
    data = sample()
    assert gzip.decompress(gzip_with(data, 2, 65536)) == data


def test_parallel_gzip_is_independent_of_threads_and_write_sizes():
    data = sample(3_000_000)
    assert gzip_with(data, 1, 4096) == gzip_with(data, 2, 1 << 20) == gzip_with(data, 4, 777_777)


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
    """The compressor's exact output: a change here changes every gzip layer digest (zlib-ng's release)."""
    import hashlib

    data = sample(3_000_000)
    assert hashlib.sha256(gzip_with(data, 2, 65536)).hexdigest() == (
        "19f1a11b9f08c74b6684d438fce02d4d9b43dcb09ae8c7db0a65b1d0ae12227a"
    )
