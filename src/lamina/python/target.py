"""The Python an image runs: its version, its interpreter, and where lamina installs packages.

lamina installs into a virtual environment at ``/opt/venv`` made by hand (``pyvenv.cfg`` and
interpreter symlinks), never into the distribution's own directories: a ``pip install`` in the image,
``pip list`` and ``importlib.metadata`` see exactly what lamina installed.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lamina.errors import LaminaError
from lamina.oci.model import Platform, env_of

VENV = "/opt/venv"
DEFAULT_MANYLINUX = "manylinux_2_28"
_UV_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class PythonTarget:
    """Where and for what Python packages are installed in an image."""

    version: str
    interpreter: str
    platform: Platform
    manylinux: str = DEFAULT_MANYLINUX
    venv: str = VENV

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def site_packages(self) -> str:
        return f"{self.venv}/lib/python{self.minor}/site-packages"

    @property
    def venv_python(self) -> str:
        return f"{self.venv}/bin/python"

    @property
    def uv_platform(self) -> str:
        """The ``--python-platform`` uv resolves for, e.g. ``x86_64-manylinux_2_28``."""
        arch = _UV_ARCH.get(self.platform.architecture)
        if arch is None or self.platform.os != "linux":
            raise LaminaError(f"lamina cannot resolve Python packages for {self.platform}",
                              hint="use linux/amd64 or linux/arm64")
        return f"{arch}-{self.manylinux}"

    @property
    def host_can_compile(self) -> bool:
        """Bytecode depends on the Python minor version only: the host can compile when they match."""
        return f"{sys.version_info.major}.{sys.version_info.minor}" == self.minor

    def describe(self) -> str:
        return f"Python {self.version} ({self.interpreter}) on {self.platform}"


def target_from_config(config: Mapping[str, Any], platform: Platform, *, interpreter: str | None = None,
                       manylinux: str = DEFAULT_MANYLINUX, where: str) -> PythonTarget:
    """The target read from a base image's config: ``PYTHON_VERSION`` and the interpreter on its PATH.

    ``LAMINA_PYTHON`` (written by lamina's Debian bases) names the interpreter; the official
    ``python:*`` images put theirs in ``/usr/local/bin``.
    """
    env = env_of(config.get("config", {}))
    version = env.get("PYTHON_VERSION")
    if not version or not re.fullmatch(r"3\.\d+(\.\d+)?\S*", version):
        raise LaminaError(
            f"{where}: cannot tell which Python the base image runs (no PYTHON_VERSION in its config)",
            hint="base Python images on a lamina Debian base with python3, or an official python:3.X image",
        )
    version = re.match(r"3\.\d+(\.\d+)?", version).group(0)  # type: ignore[union-attr]
    minor = ".".join(version.split(".")[:2])
    path = interpreter or env.get("LAMINA_PYTHON") or f"/usr/local/bin/python{minor}"
    return PythonTarget(version, path, platform, manylinux)
