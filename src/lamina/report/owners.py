"""Which package owns which path: read from what the image itself records, or from lamina's inventory.

- Debian: ``var/lib/dpkg/status.d/<pkg>`` (lamina and distroless) with ``<pkg>.md5sums`` listing its
  files, or the classic ``var/lib/dpkg/status`` with ``info/<pkg>.list``;
- Python: every ``*.dist-info/RECORD`` (paths relative to the directory holding the dist-info, so
  ``../../../bin/uvicorn`` resolves to the venv's ``bin``).

Anything no package claims belongs to the layer's own "files" component (app code, copies, the base
system), named after the history line that made the layer.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lamina.report.scan import LayerFiles

STATUS_DIR = "var/lib/dpkg/status.d/"
INFO_DIR = "var/lib/dpkg/info/"


@dataclass(frozen=True, order=True)
class Owner:
    """A package (``deb`` or ``python``) or a layer's own files (``files``)."""

    kind: str
    name: str
    version: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}".strip()


def canonical(name: str) -> str:
    """PEP 503 name: ``Scikit_Learn`` → ``scikit-learn``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def path_owners(layers: Iterable[LayerFiles]) -> dict[str, Owner]:
    """Every path some package's record names (the record files themselves included) → its package."""
    owners: dict[str, Owner] = {}
    for layer in layers:
        _debian(layer.metadata, owners)
        _python(layer.metadata, owners)
    return owners


def _debian(metadata: Mapping[str, str], owners: dict[str, Owner]) -> None:
    packages: dict[str, Owner] = {}
    for path, text in metadata.items():
        if path.startswith(STATUS_DIR) and not path.endswith(".md5sums"):
            for para in _paragraphs(text):
                if "Package" in para:
                    owner = Owner("deb", para["Package"], para.get("Version", ""))
                    packages[para["Package"]] = owner
                    owners[path] = owner
                    for conffile in _conffiles(para):
                        owners.setdefault(conffile, owner)
        elif path == "var/lib/dpkg/status":
            for para in _paragraphs(text):
                if "Package" in para and para.get("Status", "installed").endswith("installed"):
                    owner = Owner("deb", para["Package"], para.get("Version", ""))
                    packages[para["Package"]] = owner
                    for conffile in _conffiles(para):
                        owners.setdefault(conffile, owner)
    for path, text in metadata.items():
        name = None
        if path.startswith(STATUS_DIR) and path.endswith(".md5sums"):
            name, rows = path[len(STATUS_DIR):-len(".md5sums")], _md5sums_paths(text)
        elif path.startswith(INFO_DIR) and path.endswith(".list"):
            name, rows = path[len(INFO_DIR):-len(".list")].split(":")[0], (p.lstrip("/") for p in text.splitlines())
        if name is None:
            continue
        owner = packages.get(name) or Owner("deb", name)
        owners[path] = owner
        for row in rows:
            if row:
                owners.setdefault(_merged_usr(row), owner)
                owners.setdefault(row, owner)


def _merged_usr(path: str) -> str:
    """dpkg lists ``lib/x`` where a merged-/usr image (and lamina) has ``usr/lib/x``."""
    head = path.split("/", 1)[0]
    return f"usr/{path}" if head in ("bin", "sbin", "lib", "lib32", "lib64", "libx32") else path


def _md5sums_paths(text: str) -> Iterable[str]:
    for line in text.splitlines():
        _, _, path = line.partition("  ")
        yield path.strip().lstrip("/")


def _paragraphs(text: str) -> Iterable[dict[str, str]]:
    """deb822 paragraphs; a multi-line field's lines are joined with newlines."""
    para: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if para:
                yield para
            para, key = {}, ""
        elif line[0].isspace() and key:
            para[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            para[key] = value.strip()
    if para:
        yield para


def _conffiles(para: Mapping[str, str]) -> list[str]:
    """``Conffiles:`` lines are ``/etc/x <md5>``: md5sums lists do not name conffiles."""
    return [line.split()[0].lstrip("/") for line in para.get("Conffiles", "").splitlines() if line.strip()]


def _python(metadata: Mapping[str, str], owners: dict[str, Owner]) -> None:
    for path, text in metadata.items():
        if not path.endswith(".dist-info/RECORD"):
            continue
        dist_info = posixpath.dirname(path)
        site = posixpath.dirname(dist_info)
        stem = posixpath.basename(dist_info)[: -len(".dist-info")]
        name, _, version = stem.partition("-")
        owner = Owner("python", canonical(name), version)
        owners[path] = owner
        for row in csv.reader(text.splitlines()):
            if row and row[0]:
                owners.setdefault(posixpath.normpath(posixpath.join(site, row[0])).lstrip("/"), owner)
