"""Small real projects for tests: a static busybox root filesystem and a shell-script app."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import run_lamina

__all__ = ["make_hello_project", "run_lamina", "static_busybox"]  # run_lamina: for tests that import it from here

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

HELLO_TOML = """\
[project]
version = "1.0"
{extra}

[images.busybox]
from = "scratch"
[[images.busybox.copy]]
src = "rootfs"
dest = "/"

[images.hello]
from = "{base}"
env = {{ GREETING = "lamina" }}
cmd = ["/app/hello.sh"]
workdir = "/app"
user = "1000:1000"
expose = [8000]
labels = {{ "org.example.team" = "platform" }}
healthcheck = {{ test = ["/bin/sh", "-c", "true"], interval = "5s", retries = 2 }}
[[images.hello.copy]]
src = "app"
dest = "/app"
owner = "1000:1000"
"""


def static_busybox() -> Path:
    """A statically linked busybox (Debian package busybox-static), or skip."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.exists():
            out = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True).stdout
            if "statically linked" in out or "static-pie" in out or not shutil.which("file"):
                return path
    pytest.skip("a static busybox is needed: apt-get install busybox-static")


def make_hello_project(root: Path, *, base: str = "busybox", extra: str = "") -> Path:
    """A project with a busybox base image and a hello app on top; returns lamina.toml's path."""
    (root / "rootfs" / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(static_busybox(), root / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "echo", "cat", "id", "true"):
        link = root / "rootfs" / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (root / "app").mkdir(exist_ok=True)
    script = root / "app" / "hello.sh"
    script.write_text('#!/bin/sh\necho "hello from $GREETING as $(id -u)"\n')
    script.chmod(0o755)
    (root / "app" / "message.txt").write_text("version 1\n")
    path = root / "lamina.toml"
    path.write_text(HELLO_TOML.format(base=base, extra=extra))
    return path
