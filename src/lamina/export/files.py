"""Writing an export into its folder, and telling which committed files are stale (``--check``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lamina.export.model import BAKE_FILE, MARK, REQUIREMENTS_DIR, Kind
from lamina.export.render import owned
from lamina.oci.store import atomic_write


@dataclass
class Result:
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _orphans(folder: Path, files: Mapping[str, bytes], kind: Kind) -> list[str]:
    """Files lamina generated earlier (they carry its mark) that it would not write now."""
    found = []
    if not folder.is_dir():
        return found
    candidates = [p for p in folder.iterdir() if p.is_file()]
    if (folder / REQUIREMENTS_DIR).is_dir():
        candidates += [p for p in (folder / REQUIREMENTS_DIR).iterdir() if p.is_file()]
    for path in candidates:
        rel = path.relative_to(folder).as_posix()
        if rel in files or not owned(rel, kind) or rel == BAKE_FILE:
            continue
        try:
            head = path.read_bytes()[:400]
        except OSError:
            continue
        if MARK.encode() in head:
            found.append(rel)
    return sorted(found)


def stale(folder: Path, files: Mapping[str, bytes], kind: Kind) -> list[tuple[str, str]]:
    """``(path, why)`` for each file that differs from what would be written: missing, differs, or a
    file lamina wrote earlier that it would no longer write."""
    problems = []
    for rel, content in files.items():
        path = folder / rel
        if not path.is_file():
            problems.append((rel, "missing"))
        elif path.read_bytes() != content:
            problems.append((rel, "differs"))
    problems += [(rel, "no longer generated") for rel in _orphans(folder, files, kind)]
    return problems


def write(folder: Path, files: Mapping[str, bytes], kind: Kind) -> Result:
    """Write the files that changed (atomically), remove lamina's own files it no longer writes."""
    result = Result()
    for rel in _orphans(folder, files, kind):
        (folder / rel).unlink()
        result.removed.append(rel)
    for rel, content in files.items():
        path = folder / rel
        executable = rel.endswith(".sh")
        if path.is_file() and path.read_bytes() == content:
            result.unchanged.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, content)
            result.written.append(rel)
        mode = 0o755 if executable else 0o644
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    return result
