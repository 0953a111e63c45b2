"""dpkg's database, the distroless way: one ``/var/lib/dpkg/status.d/<package>`` file per package.

Writing: the package's own ``control`` paragraph (from its ``.deb``) with ``Status: install ok installed``
after the ``Package`` line, plus ``<package>.md5sums``: syft and trivy read both. Reading (what a
base image has): ``/var/lib/dpkg/status`` and ``status.d/*``, walking the base's layers with whiteouts.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import zstandard

from lamina.debian.deb import rewrite_md5sums
from lamina.debian.resolve import Installed
from lamina.errors import LaminaError
from lamina.oci.model import Image
from lamina.oci.store import BlobStore
from lamina.oci.tar import OPAQUE_WHITEOUT, WHITEOUT_PREFIX, Entry

STATUS_DIR = "var/lib/dpkg/status.d"
STATUS_FILE = "var/lib/dpkg/status"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
INSTALLED = "install ok installed"
FACTS_KIND = "debian-base"
FACTS_FORMAT = "1"


def status_entries(name: str, control: str, md5sums: str) -> list[Entry]:
    """The ``status.d`` files recording ``name`` as installed."""
    lines = control.strip("\n").splitlines()
    lines = [line for line in lines if not line.startswith("Status:")]
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("Package:")), 0)
    lines.insert(at, f"Status: {INSTALLED}")
    entries = [Entry.bytes(f"{STATUS_DIR}/{name}", ("\n".join(lines) + "\n").encode())]
    if md5sums.strip():
        entries.append(Entry.bytes(f"{STATUS_DIR}/{name}.md5sums", rewrite_md5sums(md5sums).encode("utf-8", "surrogateescape")))
    return entries


def parse_status(text: str) -> dict[str, Installed]:
    """Installed packages of a dpkg status text (paragraphs without a ``Status`` count as installed:
    distroless records omit it)."""
    out: dict[str, Installed] = {}
    from debian import deb822  # imported when a status file is read: slow to import

    for para in deb822.Deb822.iter_paragraphs(text.splitlines(True), use_apt_pkg=False):
        name = para.get("Package")
        if not name:
            continue
        status = para.get("Status", INSTALLED).split()
        if status[-1:] != ["installed"]:
            continue
        out[name] = Installed(name, para.get("Version", ""), para.get("Architecture", ""), para.get("Provides", ""))
    return out


@dataclass(frozen=True)
class BaseFacts:
    """What lamina needs to know of a Debian-based base image."""

    release: str
    installed: Mapping[str, Installed]
    os_id: str = "debian"


def read_base_facts(image: Image, store: BlobStore, label: str) -> BaseFacts:
    """Release and installed packages of ``image`` (whose layers are in the store), cached by its digest."""
    record = store.get_key(FACTS_KIND, f"{FACTS_FORMAT}\0{image.digest}")
    if record is not None:
        installed = {r[0]: Installed(*r) for r in record["installed"]}
        return BaseFacts(record["release"], installed, record["os_id"])
    files = _collect(image, store)
    os_release = _os_release(files)
    os_id = os_release.get("ID", "")
    if os_id != "debian":
        like = os_release.get("ID_LIKE", "")
        raise LaminaError(
            f"the base {label} is not Debian (its os-release says ID={os_id or 'nothing'}"
            f"{', ID_LIKE=' + like if like else ''})",
            hint="system packages can only be added on a Debian-based image, e.g. from = \"debian:bookworm\"",
        )
    release = os_release.get("VERSION_CODENAME", "")
    if not release:
        raise LaminaError(f"the base {label} does not say which Debian release it is (no VERSION_CODENAME)",
                          hint="use a base built from a named release (bookworm, trixie)")
    installed: dict[str, Installed] = {}
    if STATUS_FILE in files:
        installed.update(parse_status(files[STATUS_FILE].decode("utf-8", "replace")))
    for path in sorted(p for p in files if p.startswith(STATUS_DIR + "/") and not p.endswith(".md5sums")):
        installed.update(parse_status(files[path].decode("utf-8", "replace")))
    rows = [[p.name, p.version, p.arch, p.provides] for p in sorted(installed.values(), key=lambda p: p.name)]
    store.put_key(FACTS_KIND, f"{FACTS_FORMAT}\0{image.digest}", {"release": release, "os_id": os_id, "installed": rows})
    return BaseFacts(release, installed, os_id)


def _wanted(path: str) -> bool:
    return path in OS_RELEASE or path == STATUS_FILE or path.startswith(STATUS_DIR + "/")


def _collect(image: Image, store: BlobStore) -> dict[str, bytes]:
    """The files of interest in the flattened image (later layers win, whiteouts honoured)."""
    files: dict[str, bytes] = {}
    for desc in image.layers:
        added: dict[str, bytes] = {}
        removed: list[str] = []
        opaque: list[str] = []
        for member, data in _members(store, desc.digest, desc.media_type):
            path = member.name.removeprefix("./").strip("/")
            parent, _, base = path.rpartition("/")
            if base == OPAQUE_WHITEOUT:
                opaque.append(parent)
            elif base.startswith(WHITEOUT_PREFIX):
                removed.append(f"{parent}/{base[len(WHITEOUT_PREFIX):]}".lstrip("/"))
            elif data is not None:
                added[path] = data
        for gone in removed:
            for p in [p for p in files if p == gone or p.startswith(gone + "/")]:
                del files[p]
        for d in opaque:
            for p in [p for p in files if p.startswith(d + "/")]:
                del files[p]
        files.update(added)
    if "etc/os-release" not in files and "usr/lib/os-release" in files:
        files["etc/os-release"] = files["usr/lib/os-release"]
    return files


def _members(store: BlobStore, digest: str, media_type: str) -> Iterable[tuple[tarfile.TarInfo, bytes | None]]:
    with store.open(digest) as blob:
        raw = blob.read()
    if media_type.endswith("gzip"):
        raw = zlib.decompress(raw, 16 + zlib.MAX_WBITS)
    elif media_type.endswith("zstd"):
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as reader:
            raw = reader.read()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            path = member.name.removeprefix("./").strip("/")
            data = tar.extractfile(member).read() if member.isfile() and _wanted(path) else None  # type: ignore[union-attr]
            yield member, data


def _os_release(files: Mapping[str, bytes]) -> dict[str, str]:
    text = files.get("etc/os-release", b"").decode("utf-8", "replace")
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out
