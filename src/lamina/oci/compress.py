"""Layer compression with output pinned by its parameters, using every core.

gzip layers are made in the pigz scheme: the stream is cut into 1 MiB blocks, each deflated on its own
thread with the previous 32 KiB as its dictionary and ended with a sync flush, and the raw deflate
pieces are joined under one gzip header (mtime 0, OS 255) and trailer. The bytes depend on the block
size and on the deflate library's release and level (:data:`DEFLATES`), never on the number of
threads or the machine's load. Two deflates are pinned (pyproject.toml pins both packages, each of
which bundles its own library, so the system's zlib plays no part):

``gzip`` (the default): ISA-L (``isal`` on PyPI) at level 2. On the full family's 2.3 GB of layers it
takes 8.4 s of CPU where zlib-ng level 6 took 36.4 s, for 10.5% more bytes (bench/README.md,
"Compression"). ISA-L chooses SSE4.2, AVX2 or AVX-512 code when it loads; at levels 0–2 all of them
give the same bytes (tests/test_compress.py pins them; checked under qemu's Nehalem and Haswell models
against an AVX-512 host), but a CPU without SSE4.2 or another architecture gives other bytes (level 3
differs even between AVX2 and AVX-512, so it is not used). The CPU class is therefore part of
:func:`compressor_id`: a store never mixes them, and every x86-64-v2 machine (any x86-64 CPU since
2009) makes the same digests.

``gzip-small``: zlib-ng level 6 (``zlib-ng`` on PyPI), lamina 0.x's gzip: 10% smaller layers for four
times the CPU, and the same bytes on every CPU and architecture (zlib-ng hashes alike everywhere since
2.2).

The layer's diff_id (the uncompressed content) is the contract everywhere, and a compressed blob, once
in the store, is never compressed again.

zstd (on request): level 3, multi-threaded mode, whose output does not depend on the thread count.
"""

from __future__ import annotations

import os
import platform
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Literal, Protocol

import isal
import zstandard
from isal import isal_zlib
from zlib_ng import zlib_ng

Compression = Literal["gzip", "gzip-small", "zstd"]
GZIP_LEVEL = 6  # gzip-small's (zlib-ng) level
ZSTD_LEVEL = 3
BLOCK_SIZE = 1 << 20
WINDOW = 32 * 1024
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


@dataclass(frozen=True)
class Deflate:
    """One pinned raw-deflate: the library, its level, and the release its output depends on."""

    library: Literal["isal", "zlib-ng"]
    level: int

    @property
    def module(self) -> ModuleType:
        return isal_zlib if self.library == "isal" else zlib_ng

    def release(self) -> str:
        if self.library == "isal":
            return f"isal-{isal.__version__}+isa-l-{isal.ISAL_VERSION}/{instruction_class()}"
        return f"zlib-ng-{zlib_ng.ZLIBNG_VERSION}"


DEFLATES: dict[str, Deflate] = {"gzip": Deflate("isal", 2), "gzip-small": Deflate("zlib-ng", GZIP_LEVEL)}


@cache
def instruction_class() -> str:
    """Which of ISA-L's code paths (as far as its output differs) this CPU takes: ``x86-64-v2`` (SSE4.2:
    the SSE4.2, AVX2 and AVX-512 paths give the same bytes), else the bare architecture."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line for line in f if line.startswith("flags")), "")
        except OSError:
            flags = ""
        return "x86-64-v2" if " sse4_2" in flags else "x86-64"
    return machine


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def workers() -> int:
    """Threads used for compression: ``LAMINA_JOBS`` or the number of usable cores."""
    value = os.environ.get("LAMINA_JOBS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="lamina-deflate")
        return _pool


class Writer(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _deflate_block(block: bytes, dictionary: bytes, last: bool, deflate: Deflate) -> bytes:
    """One raw-deflate piece; each is independent of the others but for the dictionary it is given."""
    m = deflate.module
    extra = (dictionary,) if dictionary else ()
    c = m.compressobj(deflate.level, m.DEFLATED, -15, 8, m.Z_DEFAULT_STRATEGY, *extra)
    return c.compress(block) + c.flush(m.Z_FINISH if last else m.Z_SYNC_FLUSH)


class ParallelGzipWriter:
    """A file-like writer that gzips what it is given onto ``sink``, blocks compressed in parallel."""

    def __init__(self, sink: Writer, *, deflate: Deflate = DEFLATES["gzip"], block_size: int = BLOCK_SIZE) -> None:
        self._sink = sink
        self._deflate = deflate
        self._block_size = block_size
        self._pool = _shared_pool()
        self._pending: deque[Future[bytes]] = deque()
        self._max_pending = 2 * workers() + 1
        self._buffer = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        self._closed = False
        sink.write(GZIP_HEADER)

    def write(self, data: bytes) -> int:
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) > self._block_size:
            block = bytes(self._buffer[: self._block_size])
            del self._buffer[: self._block_size]
            self._submit(block, last=False)
        return len(data)

    def _submit(self, block: bytes, *, last: bool) -> None:
        self._pending.append(self._pool.submit(_deflate_block, block, self._dictionary, last, self._deflate))
        self._dictionary = block[-WINDOW:]
        while len(self._pending) >= self._max_pending:
            self._sink.write(self._pending.popleft().result())

    def close(self) -> None:
        """Compress what is buffered, write the trailer. The sink is left open."""
        if self._closed:
            return
        self._closed = True
        self._submit(bytes(self._buffer), last=True)
        self._buffer.clear()
        while self._pending:
            self._sink.write(self._pending.popleft().result())
        self._sink.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))


class ZstdWriter:
    """A file-like writer that zstd-compresses onto ``sink`` (multi-threaded, deterministic)."""

    def __init__(self, sink: Writer, *, level: int = ZSTD_LEVEL) -> None:
        compressor = zstandard.ZstdCompressor(level=level, threads=workers(), write_content_size=False)
        self._stream = compressor.stream_writer(sink, closefd=False)  # type: ignore[arg-type]

    def write(self, data: bytes) -> int:
        self._stream.write(data)
        return len(data)

    def close(self) -> None:
        self._stream.close()


def compressor_id(kind: Compression) -> str:
    """Everything the compressed bytes depend on: a blob made with another identity is made again."""
    if kind in DEFLATES:
        deflate = DEFLATES[kind]
        return f"gzip/{deflate.release()}/level-{deflate.level}/block-{BLOCK_SIZE}"
    return f"zstd/{'.'.join(map(str, zstandard.ZSTD_VERSION))}/level-{ZSTD_LEVEL}/mt"


def compression_of(media_type: str) -> Compression:
    """The compression a layer media type names (for gzip, the default deflate: callers that use another
    pass theirs)."""
    return "zstd" if media_type.endswith("zstd") else "gzip"


def compressor(kind: Compression, sink: Writer) -> ParallelGzipWriter | ZstdWriter:
    """A writer compressing onto ``sink`` with the pinned parameters of ``kind``."""
    if kind in DEFLATES:
        return ParallelGzipWriter(sink, deflate=DEFLATES[kind])
    if kind == "zstd":
        return ZstdWriter(sink)
    raise ValueError(f"unknown compression {kind!r} (expected gzip, gzip-small or zstd)")


def decompressor(media_type: str) -> Callable[[], "zlib._Decompress | zstandard.ZstdDecompressionObj"] | None:
    """A factory of incremental decompressors for a layer media type (None: not compressed)."""
    if media_type.endswith("gzip"):
        return lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)
    if media_type.endswith("zstd"):
        return lambda: zstandard.ZstdDecompressor().decompressobj()
    return None
