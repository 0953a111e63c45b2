"""A small project whose build takes a few seconds (a wheel and files of incompressible bytes): the target of
the kill, disk-full and store-tampering attacks. Seeded, so every run builds the same bytes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import wheels_project, write_wheel


def noise(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def make_project(root: Path, *, megabytes: int = 6, files: int = 2) -> Path:
    """``files`` copies of ``megabytes`` MiB each, plus a wheel of the same size; returns ``root``."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    copies = []
    for i in range(files):
        (root / "data" / f"blob{i}.bin").write_bytes(noise(megabytes << 20, i))
        copies.append(f'[[images.app.copy]]\nsrc = "data/blob{i}.bin"\ndest = "/data/blob{i}.bin"\n')
    wheels_project(root, "bulk", app="".join(copies))
    write_wheel(root / "wheels" / "bulk-1.0-py3-none-any.whl",
                {"bulk/__init__.py": "", "bulk/payload.bin": noise(megabytes << 20, 99)}, name="bulk")
    return root


def lamina_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lamina", *args]


def env_for(store: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "LAMINA_STORE": str(store), **extra}


def run(root: Path, store: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lamina_cmd(*args), cwd=root, env=env_for(store), capture_output=True, text=True,
                          timeout=timeout)


def kill_after(root: Path, store: Path, delay: float, *args: str) -> int | None:
    """Start ``lamina ARGS``, SIGKILL its whole process group after ``delay`` seconds; returns its exit code
    if it finished before that (None when it was killed)."""
    process = subprocess.Popen(lamina_cmd(*args), cwd=root, env=env_for(store), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        return process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def timed(root: Path, store: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run(root, store, *args)
    return result, time.monotonic() - started


def layout_digest(out: Path, name: str) -> str:
    index = json.loads((out / "index.json").read_text())
    return next(m["digest"] for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name", "").startswith(name))
