"""Which CPU an ELF file is for: so that no binary of another architecture slips into a platform's image.

Only the ELF header is read (20 bytes). Executables and shared objects are checked; relocatable
objects (``.o``), core dumps and files that merely start like ELF but are too short are not.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from lamina.errors import LaminaError
from lamina.oci.tar import Entry

ELF_MAGIC = b"\x7fELF"
ET_EXEC, ET_DYN = 2, 3
#: e_machine → the OCI architecture it runs on.
MACHINES = {
    3: "386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "amd64",
    183: "arm64",
    243: "riscv64",
    258: "loong64",
}
#: Names people know the machines by, for messages.
MACHINE_NAMES = {"amd64": "x86-64", "arm64": "AArch64 (arm64)", "386": "i386", "arm": "32-bit ARM"}


class WrongArchitectureError(LaminaError):
    """A layer of a platform's image holds a binary built for another CPU."""


def elf_architecture(header: bytes) -> str | None:
    """The OCI architecture an ELF executable or shared object (its first 20 bytes) is for; None for
    anything else (not ELF, another ELF type, or an unknown machine)."""
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    order = "<" if header[5] == 1 else ">"
    e_type, e_machine = struct.unpack(order + "HH", header[16:20])
    if e_type not in (ET_EXEC, ET_DYN):
        return None
    return MACHINES.get(e_machine, f"machine-{e_machine}")


def elf_header(entry: Entry) -> bytes:
    """The first 20 bytes of a file entry (its bytes, or its source file's)."""
    if entry.data is not None:
        return entry.data[:20]
    if entry.source is not None:
        with open(entry.source, "rb") as f:
            return f.read(20)
    return b""


def foreign(found: Mapping[str, str] | None, architecture: str) -> tuple[str, str] | None:
    """The first (architecture, path) in a layer's ELF record that is not ``architecture``."""
    for arch, path in sorted((found or {}).items()):
        if arch != architecture:
            return arch, path
    return None


def wrong_architecture(image: str, platform: str, architecture: str, found: str, path: str,
                       origin: str) -> WrongArchitectureError:
    """The error for a binary of another CPU in a platform's image: which file, from what, and what to do."""
    return WrongArchitectureError(
        f"image {image!r} for {platform}: /{path.lstrip('/')} is a {MACHINE_NAMES.get(found, found)} binary "
        f"(from {origin}), not {MACHINE_NAMES.get(architecture, architecture)}",
        hint=f"use a wheel or package built for {architecture} (a pure-Python wheel must not carry binaries; check "
             "the lock's URLs and find-links folders), or leave the file out of the image",
    )
