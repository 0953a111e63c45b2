"""Installing a wheel into a staging directory laid out as the image's venv, with pypa ``installer``.

Console scripts get ``#!/opt/venv/bin/python``; ``.dist-info/RECORD`` is kept (and lists the
bytecode), so ``pip list``, ``pip check`` and ``importlib.metadata`` work in the image. Bytecode is
compiled by the host only when its Python has the target's minor version, in ``unchecked-hash`` mode,
whose output does not depend on file times (otherwise the image compiles nothing and imports a little
slower the first time); how, so that the bytes do not depend on the machine: :func:`compile_site_packages`.
"""

from __future__ import annotations

import atexit
import csv
import functools
import importlib.util
import io
import os
import pickle
import re
import subprocess
import sys
import threading
import warnings
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

from isal import isal_zlib

from lamina.errors import LaminaError
from lamina.oci.compress import workers
from lamina.oci.files import disk_error
from lamina.oci.tar import Entry, tree_entries
from lamina.python.safety import Listed, Written, check_staged, check_wheel, check_written
from lamina.python.target import PythonTarget

INSTALLER_NAME = b"lamina\n"


def _scheme(target: PythonTarget, name: str) -> dict[str, str]:
    return {
        "purelib": target.site_packages,
        "platlib": target.site_packages,
        "headers": f"{target.venv}/include/site/python{target.minor}/{name}",
        "scripts": f"{target.venv}/bin",
        "data": target.venv,
    }


def install_wheel(wheel: Path, name: str, target: PythonTarget, staging: Path, *, compile_bytecode: bool) -> None:
    """Install ``wheel`` under ``staging`` as if ``staging`` were the image's root (and, when asked,
    compile what it added: see :func:`compile_site_packages`).

    The wheel is checked first (:func:`lamina.python.safety.check_wheel`: member paths and kinds, RECORD's
    entries), the files installer wrote against RECORD's hashes and sizes before it finishes
    (:func:`~lamina.python.safety.check_written`: each member is inflated and hashed once), and what was
    staged after: path safety is lamina's own, whatever installer does.
    """
    # installer is imported here: in lamina's own process only installer processes and tests call this
    from installer import install
    from installer.sources import WheelFile

    listed = check_wheel(wheel, wheel.name, contents=False)  # the contents: as installer writes them
    try:
        with WheelFile.open(wheel) as source, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # installer skips __pycache__ files of bad wheels
            destination = _checking_destination(wheel, listed, source.data_dir, target, name, staging)
            install(source=source, destination=destination, additional_metadata={"INSTALLER": INSTALLER_NAME})
    except LaminaError:
        raise
    except OSError as e:
        if (full := disk_error(e, staging)) is not None:
            raise full from None
        raise LaminaError(f"cannot install {wheel.name}: {e}", hint="check the store's tmp folder") from e
    except Exception as e:  # installer raises plain exceptions for bad wheels
        raise LaminaError(f"cannot install {wheel.name}: {e}", hint="the wheel is broken or not for this Python") from e
    check_staged(staging, target.venv, wheel.name)
    if compile_bytecode:
        compile_site_packages(staging, target)


def _checking_destination(wheel: Path, listed: Listed, data_dir: str, target: PythonTarget, name: str,
                          staging: Path) -> object:
    """installer's destination for ``staging``, checking the files it wrote against the wheel's RECORD
    (:func:`lamina.python.safety.check_written`) before it writes the installed RECORD: each member is
    inflated and hashed once, by installer."""
    destination = _checking_class()(scheme_dict=_scheme(target, name), interpreter=target.venv_python,
                                    script_kind="posix", destdir=str(staging), bytecode_optimization_levels=())
    destination.check = lambda root, written: check_written(wheel, wheel.name, listed, written, root_scheme=root,
                                                            data_dir=data_dir)
    return destination


@functools.cache
def _checking_class() -> type:
    from installer.destinations import SchemeDictionaryDestination

    class CheckingDestination(SchemeDictionaryDestination):
        check: Callable[[str, list[Written]], None]

        def finalize_installation(self, scheme, record_file_path, records):  # noqa: ANN001, ANN202
            records = list(records)
            self.check(str(scheme), [(str(s), r.path, r.hash_.name, r.hash_.value, r.size or 0)
                                     for s, r in records if r.hash_ is not None])
            return super().finalize_installation(scheme, record_file_path, records)

    return CheckingDestination


#: Wheels smaller than this (together) are installed in lamina's own process: starting an installer
#: process (~0.15 s) would cost more than the GIL does (an incremental build's one changed library).
IN_PROCESS_BELOW = 1 << 20


def install_wheels(wheels: Sequence[tuple[Path, str]], target: PythonTarget, staging: Path) -> None:
    """Install ``(wheel, distribution name)`` pairs into ``staging``, in order, in an installer process.

    Installing is Python code (check each member, unzip, hash for RECORD, write): in lamina's own
    process, several installs, the tar writers and the layer bookkeeping would take turns under one
    GIL, and a cold build's installs would form one serial chain. In installer processes, one per core
    (started on first use: a build that installs nothing starts none), the installs of several layers
    run side by side and leave lamina's process to tar and compress (small wheels: see
    :data:`IN_PROCESS_BELOW`). An error comes back as the :class:`~lamina.errors.LaminaError` the
    installer raised."""
    if sum(wheel.stat().st_size for wheel, _ in wheels) < IN_PROCESS_BELOW:
        for wheel, name in wheels:  # small: done before an installer process would have started
            install_wheel(wheel, name, target, staging, compile_bytecode=False)
        return
    with _install_slots():
        server = _idle_installers.pop() if _idle_installers else _InstallServer()
        try:
            server.call((list(wheels), target, staging))
        except _ServerGone:
            server.stop()
            raise LaminaError(f"the installer process ended while installing {', '.join(w.name for w, _ in wheels)}",
                              hint="see the messages above; the machine may be out of memory") from None
        except BaseException:
            _idle_installers.append(server)
            raise
        _idle_installers.append(server)


class _ServerGone(Exception):
    pass


class _InstallServer:
    """One installer process: a request is (wheels, target, staging), the answer None or the error
    raised; both pickled, length-prefixed (the same lamina on both ends of the pipe)."""

    def __init__(self) -> None:
        code = (f"import sys; sys.path[:0] = {sys.path!r}; "
                "from lamina.python.install import serve_installs; serve_installs()")
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        with _installers_lock:
            if not _all_installers:
                atexit.register(stop_installers)
            _all_installers.append(self)

    def call(self, request: object) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        data = pickle.dumps(request)
        try:
            self.process.stdin.write(len(data).to_bytes(8, "big") + data)
            self.process.stdin.flush()
        except BrokenPipeError:
            raise _ServerGone() from None
        answer = _read_message(self.process.stdout)
        if answer is _EOF:
            raise _ServerGone()
        if isinstance(answer, BaseException):
            raise answer

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            try:
                self.process.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_EOF = object()


def _read_message(stream: IO[bytes]) -> object:
    header = stream.read(8)
    if len(header) < 8:
        return _EOF
    body = stream.read(int.from_bytes(header, "big"))
    return pickle.loads(body)


class IsalInflate:
    """What :mod:`zipfile` sees as ``zlib`` in an installer process: ISA-L's inflate (the ``isal`` package,
    lamina's gzip compressor), zlib for the rest. Inflating is exact, so the files are the same bytes;
    reading every member of torch's wheel takes 2.0–2.2 s of CPU instead of 3.1–3.6 s."""

    def __getattr__(self, name: str) -> object:
        return getattr(zlib, name)

    @staticmethod
    def decompressobj(wbits: int = zlib.MAX_WBITS) -> object:
        return isal_zlib.decompressobj(wbits)


def serve_installs() -> None:
    """The installer process's loop (see :class:`_InstallServer`); ends when lamina closes the pipe.
    The process exists to unzip wheels, so its :mod:`zipfile` inflates with :class:`IsalInflate`."""
    import zipfile

    zipfile.zlib = IsalInflate()  # type: ignore[assignment]
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever an installer prints goes to stderr, never into the answers
    requests = sys.stdin.buffer
    while (request := _read_message(requests)) is not _EOF:
        wheels, target, staging = request  # type: ignore[misc]
        answer: BaseException | None = None
        try:
            for wheel, name in wheels:
                install_wheel(wheel, name, target, staging, compile_bytecode=False)
        except LaminaError as e:
            answer = e
        except Exception as e:  # noqa: BLE001 - sent back whole, raised in lamina's process
            answer = LaminaError(f"cannot install {wheels[0][0].name}: {e}")
        data = pickle.dumps(answer)
        answers.write(len(data).to_bytes(8, "big") + data)
        answers.flush()


_installers_lock = threading.Lock()
_idle_installers: list[_InstallServer] = []  # list.pop/append are atomic: no lock needed for the pool
_all_installers: list[_InstallServer] = []
_slots: threading.BoundedSemaphore | None = None


def _install_slots() -> threading.BoundedSemaphore:
    global _slots
    with _installers_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(workers())
        return _slots


def warm_installers(count: int) -> None:
    """Start installer processes for ``count`` installs that will need one (at most one per core), now:
    their interpreters start while the build still plans and fetches."""
    with _installers_lock:
        missing = min(count, workers()) - len(_all_installers)
    for _ in range(missing):
        _idle_installers.append(_InstallServer())


def stop_installers() -> None:
    """End the installer processes (and wait for them, so that their CPU time counts as lamina's)."""
    with _installers_lock:
        servers, _all_installers[:], _idle_installers[:] = list(_all_installers), [], []
    for server in servers:
        server.stop()


#: Files compiled by one process. Fixed, so that which process compiles which file (and so the bytes:
#: marshal marks objects by their reference counts, which depend on what the process compiled before)
#: depends on the file list only, never on the number of cores or on scheduling. Small enough that a
#: small library's files (joblib's 46: 23 + 23, see :func:`compile_chunks`) are compiled on every core
#: (a fork per chunk costs ~1 ms).
COMPILE_CHUNK = 32
#: Libraries' own test suites (numpy/*/tests/..., about half of numpy's, scipy's and scikit-learn's
#: files) are not compiled: a service never imports them, and they would compile on first import.
SKIP_COMPILE = re.compile(r"/tests?/")
#: The compile server (``python -I -S``): imports what compiling needs, then for each request line (a
#: chunk: ``path<TAB>name in the image`` items joined by NUL) forks a child, which compiles the chunk as
#: py_compile does in ``unchecked-hash`` mode and prints ``pyc<TAB>sha256<TAB>size`` per file (nothing
#: for a file that does not compile, e.g. Python 2 code, as compileall skips it), so RECORD needs no
#: second read. The server itself never compiles: every chunk starts from the same untouched process
#: (the same bytes every time), and costs a fork instead of an interpreter's start.
_SERVER = r"""
import base64, hashlib, os, sys
import importlib._bootstrap_external as be
import importlib.machinery, importlib.util

def compile_chunk(request):
    out = []
    for item in request.split("\0"):
        path, name = item.split("\t")
        loader = importlib.machinery.SourceFileLoader("<py_compile>", path)
        try:
            source = loader.get_data(path)
            code = loader.source_to_code(source, name)
        except Exception:
            continue
        data = be._code_to_hash_pyc(code, importlib.util.source_hash(source), False)
        pyc = importlib.util.cache_from_source(path)
        os.makedirs(os.path.dirname(pyc), exist_ok=True)
        be._write_atomic(pyc, data, be._calc_mode(path))
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        out.append(f"{pyc}\t{digest}\t{len(data)}\n")
    sys.stdout.write("".join(out))
    sys.stdout.flush()

for line in sys.stdin:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            compile_chunk(line.rstrip("\n"))
            status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    sys.stdout.write(f"\0{status}\n")
    sys.stdout.flush()
"""

_compile_lock = threading.Lock()
_compile_pool: ThreadPoolExecutor | None = None
_servers = threading.local()
_started: list[subprocess.Popen[str]] = []


def _compilers() -> ThreadPoolExecutor:
    """Threads that each drive one compile server: as many as there are cores, shared by all the layers
    being made (while one layer compiles, the others install, tar and compress)."""
    global _compile_pool
    with _compile_lock:
        if _compile_pool is None:
            _compile_pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="lamina-compile")
        return _compile_pool


def compile_site_packages(staging: Path, target: PythonTarget) -> None:
    """Compile the ``.py`` files under the staged site-packages that have no bytecode yet (all but
    libraries' test suites), and add the ``.pyc`` files to the RECORD of the distribution owning each.

    :data:`COMPILE_CHUNK` files at a time, each chunk by a fork of an untouched interpreter that does
    nothing but compile (:data:`_SERVER`): the same files in the same order in the same starting state
    give the same bytes every time (bytecode compiled in lamina's busy process, or by compileall's worker
    pool, whose files go to whichever worker is free, can differ, and so with the number of cores). The
    chunks of a big distribution are compiled on every core, and no ``.pyc`` is read back to be hashed.
    """
    root = staging / target.site_packages.lstrip("/")
    sources = [p for p in sorted(root.rglob("*.py"))
               if not SKIP_COMPILE.search("/" + p.relative_to(staging).as_posix())
               and not Path(importlib.util.cache_from_source(str(p))).exists()]
    if not sources:
        return
    compiled: dict[Path, tuple[str, int]] = {}
    chunks = compile_chunks(sources)
    for result in _compilers().map(lambda chunk: _compile_chunk(chunk, staging), chunks):
        compiled.update(result)
    _add_to_record(root, compiled)


def compile_chunks(sources: Sequence[Path]) -> list[Sequence[Path]]:
    """``sources`` in as few contiguous chunks of at most :data:`COMPILE_CHUNK` files as will do, of even
    sizes (46 files: 23 and 23, not 32 and 14, so two cores finish together); from the list alone."""
    count = -(-len(sources) // COMPILE_CHUNK)
    bounds = [len(sources) * i // count for i in range(count + 1)]
    return [sources[a:b] for a, b in zip(bounds, bounds[1:])]


def warm_compile_servers() -> None:
    """Start one compile server per core now, in the background: their interpreters start while the
    build still plans, instead of when the first layer is ready to compile."""
    with _compile_lock:
        if _started:
            return
    pool = _compilers()
    ready = threading.Barrier(workers())  # one server per compile thread: each waits for the others

    def start() -> None:
        _server()
        try:
            ready.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass

    for _ in range(workers()):
        pool.submit(start)


def _server() -> subprocess.Popen[str]:
    """This thread's compile server, started on first use; it ends when lamina closes its stdin or exits."""
    server: subprocess.Popen[str] | None = getattr(_servers, "process", None)
    if server is None or server.poll() is not None:
        server = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SERVER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        _servers.process = server
        with _compile_lock:
            if not _started:
                atexit.register(stop_compile_servers)
            _started.append(server)
    return server


def stop_compile_servers() -> None:
    """End the compile servers (they also end by themselves when lamina exits), and wait for them, so
    their CPU time counts as lamina's children's."""
    with _compile_lock:
        servers, _started[:] = list(_started), []
    for server in servers:
        if server.stdin is not None:
            server.stdin.close()
    for server in servers:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


def _compile_chunk(sources: list[Path], staging: Path) -> dict[Path, tuple[str, int]]:
    server = _server()
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write("\0".join(f"{p}\t/{p.relative_to(staging).as_posix()}" for p in sources) + "\n")
    server.stdin.flush()
    out: dict[Path, tuple[str, int]] = {}
    for line in server.stdout:
        if line.startswith("\0"):
            if line.strip("\0\n") != "0":
                raise LaminaError(f"compiling {sources[0].parent} failed (status {line.strip()})",
                                  hint="a bug in lamina's bytecode step; please report it")
            return out
        pyc, digest, size = line.rstrip("\n").split("\t")
        out[Path(pyc)] = (digest, int(size))
    raise LaminaError(f"the compile server stopped while compiling {sources[0].parent}",
                      hint="a bug in lamina's bytecode step; please report it")


def _add_to_record(site_packages: Path, compiled: dict[Path, tuple[str, int]]) -> None:
    """Each ``.pyc`` goes into the RECORD that lists its source (several distributions may share a stage)."""
    if not compiled:
        return
    by_source = {os.path.relpath(Path(importlib.util.source_from_cache(str(pyc))), site_packages): (pyc, facts)
                 for pyc, facts in compiled.items()}
    for record in sorted(site_packages.glob("*.dist-info/RECORD")):
        rows = list(csv.reader(io.StringIO(record.read_text())))
        known = {row[0] for row in rows if row}
        added = False
        for source in [row[0] for row in rows if row and row[0] in by_source]:
            pyc, (digest, size) = by_source[source]
            rel = os.path.relpath(pyc, site_packages)
            if rel not in known:
                rows.append([rel, f"sha256={digest}", str(size)])
                added = True
        if added:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerows(sorted(rows, key=lambda r: r[0]))
            record.write_text(out.getvalue())


def staged_entries(staging: Path, *, uid: int = 0, gid: int = 0) -> list[Entry]:
    """Entries of everything staged, with modes kept as installer set them (scripts executable)."""
    entries: list[Entry] = []
    for top in sorted(p for p in staging.iterdir()):
        entries += tree_entries(top, top.name, uid=uid, gid=gid, exclude=())
    return entries
