"""Hostile ``.deb`` data, built here with ``dpkg-deb --build`` (and, for what dpkg-deb refuses to make, its
data.tar rewritten), injected below the verification layer: stored under the digest the lock names, then
made into a layer as a build does (:func:`package_layer_entries`). Handled as docs/debian.md says:

* a member that is absolute or holds ``..`` (a file or a hard link's target): refused, naming package and member;
* a device node or FIFO: refused;
* setuid/setgid files: kept, as dpkg installs them (``passwd``, ``su``);
* absolute symlinks: kept as links, never followed (they resolve inside the container at run time);
* a member below a symlink (``usr/evil -> /etc`` then ``usr/evil/passwd``): refused by the layer writer.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from lamina.debian.deb import DebError, ar_members
from lamina.debian.image import LockedPackage, package_layer_entries
from lamina.errors import DigestMismatchError, LaminaError, UnsafePathError
from lamina.oci.digest import sha256_digest
from lamina.oci.tar import tar_chunks

pytestmark = pytest.mark.attack


def dpkg_deb(tmp_path: Path, name: str, populate) -> bytes:
    """A package built by ``dpkg-deb --build`` from a tree ``populate(root)`` fills."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is needed (Debian package dpkg)")
    root = tmp_path / f"{name}-tree"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
    populate(root)
    out = tmp_path / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    return out.read_bytes()


def with_data(deb: bytes, members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """``deb`` with its data.tar replaced by ``members`` (what dpkg-deb would never write)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    parts = [(n, d) for n, d in ar_members(deb) if not n.startswith("data.tar")]
    parts.append(("data.tar.xz", lzma.compress(raw.getvalue())))
    out = bytearray(b"!<arch>\n")
    for name, data in parts:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def member(name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, mode
    return info


def layer_of(store, deb: bytes, name: str = "evil"):
    """The layer entries a build makes of ``deb``, stored under its digest as a verified download would be."""
    digest = store.put_bytes(deb)
    package = LockedPackage(name, "1.0", "all", digest.split(":")[1], len(deb), f"pool/{name}.deb", "bookworm")
    return package_layer_entries(store, [package])


def plain_file(root: Path) -> None:
    (root / "usr" / "share" / "evil").mkdir(parents=True)
    (root / "usr" / "share" / "evil" / "README").write_text("hi\n")


@pytest.mark.parametrize("name,needle", [
    ("./../../../../tmp/PWNED", "leaves the image tree"),
    ("/etc/cron.d/evil", "is an absolute path"),
    ("./usr/../../etc/passwd", "leaves the image tree"),
])
def test_a_member_leaving_the_tree_is_refused_naming_the_package(tmp_path, store, name, needle):
    deb = with_data(dpkg_deb(tmp_path, "evil", plain_file), [(member(name), b"x\n")])
    with pytest.raises(UnsafePathError) as raised:
        layer_of(store, deb)
    assert "evil 1.0" in str(raised.value) or "evil" in str(raised.value)
    assert needle in str(raised.value) and name in str(raised.value)
    assert not Path("/tmp/PWNED").exists()


def test_a_hard_link_to_outside_is_refused(tmp_path, store):
    deb = with_data(dpkg_deb(tmp_path, "evil", plain_file),
                    [(member("./usr/bin/x", tarfile.LNKTYPE, link="../../etc/shadow"), b"")])
    with pytest.raises(UnsafePathError, match="leaves the image tree"):
        layer_of(store, deb)


def test_a_device_node_is_refused(tmp_path, store):
    def populate(root: Path) -> None:
        plain_file(root)
        (root / "dev").mkdir()
        try:
            os.mknod(root / "dev" / "evilmem", 0o600 | 0o020000, os.makedev(1, 1))
        except PermissionError:
            pytest.skip("mknod needs root")

    deb = dpkg_deb(tmp_path, "evil", populate)
    with pytest.raises(DebError) as raised:
        layer_of(store, deb)
    assert "dev/evilmem" in str(raised.value) and "device node" in str(raised.value)


def test_a_fifo_is_refused(tmp_path, store):
    deb = with_data(dpkg_deb(tmp_path, "evil", plain_file), [(member("./run/evil.fifo", tarfile.FIFOTYPE), b"")])
    with pytest.raises(DebError, match="evil.fifo"):
        layer_of(store, deb)


def test_setuid_files_are_kept_as_dpkg_installs_them(tmp_path, store):
    def populate(root: Path) -> None:
        (root / "usr" / "bin").mkdir(parents=True)
        tool = root / "usr" / "bin" / "evil-su"
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o4755)

    entries = {e.path: e for e in layer_of(store, dpkg_deb(tmp_path, "evil", populate))}
    assert entries["usr/bin/evil-su"].mode == 0o4755


def test_an_absolute_symlink_is_kept_as_a_link_and_never_followed(tmp_path, store):
    def populate(root: Path) -> None:
        (root / "usr" / "share").mkdir(parents=True)
        (root / "usr" / "share" / "shadow").symlink_to("/etc/shadow")

    entries = {e.path: e for e in layer_of(store, dpkg_deb(tmp_path, "evil", populate))}
    link = entries["usr/share/shadow"]
    assert (link.kind, link.target, link.data) == ("symlink", "/etc/shadow", None)


def test_a_member_below_a_symlink_is_refused_by_the_layer_writer(tmp_path, store):
    deb = with_data(dpkg_deb(tmp_path, "evil", plain_file), [
        (member("./usr/evil", tarfile.SYMTYPE, link="/etc"), b""),
        (member("./usr/evil/passwd"), b"root::0:0::/:/bin/sh\n"),
    ])
    entries = layer_of(store, deb)
    with pytest.raises(LaminaError, match="is a symlink and also a parent"):
        b"".join(tar_chunks(entries, mtime=1))


def test_a_deb_tampered_in_the_store_is_detected_before_use(tmp_path, store):
    deb = dpkg_deb(tmp_path, "evil", plain_file)
    digest = store.put_bytes(deb)
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(deb[:-10] + b"0123456789")
    package = LockedPackage("evil", "1.0", "all", digest.split(":")[1], len(deb), "pool/evil.deb", "bookworm")
    with pytest.raises(LaminaError, match="does not match its SHA256"):
        package_layer_entries(store, [package])
    with pytest.raises(DigestMismatchError):
        store.read_bytes(digest)
    assert sha256_digest(path.read_bytes()) != digest
