"""Byte counts for people (decimal units, as registries and ``docker images`` show them) and back."""

from __future__ import annotations

import re

from lamina.errors import LaminaError

UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
         "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def human(n: float) -> str:
    """``1234567`` → ``1.2 MB``."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1000
    return f"{sign}{n} B"


def parse_size(text: str) -> int:
    """``300MB``, ``1.2 GB``, ``512MiB``, ``1000`` → bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise LaminaError(f"bad size {text!r}", hint="write a number with an optional unit: 300MB, 1.2GB, 512MiB")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])
