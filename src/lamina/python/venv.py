"""The virtual environment lamina installs into, made by hand (no Python runs to make it)."""

from __future__ import annotations

from lamina.oci.tar import Entry
from lamina.python.target import PythonTarget


def venv_entries(target: PythonTarget, *, uid: int = 0, gid: int = 0) -> list[Entry]:
    """``pyvenv.cfg``, ``bin/python*`` symlinks to the base interpreter, an empty site-packages."""
    home = target.interpreter.rsplit("/", 1)[0]
    cfg = (
        f"home = {home}\n"
        "include-system-site-packages = false\n"
        f"version = {target.version}\n"
        f"executable = {target.interpreter}\n"
        f"command = {target.interpreter} -m venv {target.venv}\n"
    )
    venv = target.venv.strip("/")
    return [
        Entry.bytes(f"{venv}/pyvenv.cfg", cfg.encode(), uid=uid, gid=gid),
        Entry.symlink(f"{venv}/bin/python", target.interpreter),
        Entry.symlink(f"{venv}/bin/python3", "python"),
        Entry.symlink(f"{venv}/bin/python{target.minor}", "python"),
        Entry.symlink(f"{venv}/lib64", "lib"),
        Entry.dir(target.site_packages, uid=uid, gid=gid),
    ]


def venv_env(target: PythonTarget, base_path: str | None) -> dict[str, str]:
    """Environment of an image with the venv: its ``bin`` first on PATH, ``VIRTUAL_ENV`` set."""
    default = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    path = base_path or default
    prefix = f"{target.venv}/bin"
    if not path.startswith(prefix + ":"):
        path = f"{prefix}:{path}"
    return {"VIRTUAL_ENV": target.venv, "PATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
