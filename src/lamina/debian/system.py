"""What maintainer scripts and debootstrap would have set up, done without running anything.

* :func:`system_entries` — the bottom layer of an image built ``from = "debian:RELEASE"``: the merged-/usr
  symlinks (``/bin``, ``/sbin``, ``/lib``, and ``/lib64`` on amd64), ``/etc/passwd`` and ``/etc/group``
  (root, nobody/nogroup, and the app user), ``/etc/nsswitch.conf``, ``/tmp`` and ``/var/tmp`` (1777),
  ``/root`` (0700), the app user's home, and the empty ``status.d`` directory.
* :func:`postinst_entries` — per package, in that package's layer: ``ca-certificates`` gets the CA bundle
  ``/etc/ssl/certs/ca-certificates.crt`` and ``/etc/ca-certificates.conf`` (every certificate it ships,
  as its debconf default selects them); ``tzdata`` gets ``/etc/localtime`` → UTC and ``/etc/timezone``.
"""

from __future__ import annotations

from collections.abc import Sequence

from lamina.oci.tar import Entry

APP_USER = "app"
APP_UID = 1000
NOBODY = 65534
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
CA_SOURCE = "usr/share/ca-certificates/"

NSSWITCH = """\
# /etc/nsswitch.conf, written by lamina (Debian's defaults without NIS)
passwd:         files
group:          files
shadow:         files
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files
"""


def system_entries(arch: str, *, user: str = APP_USER, uid: int = APP_UID) -> list[Entry]:
    """The files every Debian-from-packages image needs (see the module docstring)."""
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{user}:x:{uid}:{uid}:{user}:/home/{user}:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nnogroup:x:{NOBODY}:\n{user}:x:{uid}:\n"
    entries = [
        Entry.symlink("bin", "usr/bin"),
        Entry.symlink("sbin", "usr/sbin"),
        Entry.symlink("lib", "usr/lib"),
        Entry.dir("usr/bin"),
        Entry.dir("usr/sbin"),
        Entry.dir("usr/lib"),
        Entry.bytes("etc/passwd", passwd.encode()),
        Entry.bytes("etc/group", group.encode()),
        Entry.bytes("etc/nsswitch.conf", NSSWITCH.encode()),
        Entry.dir("tmp", mode=0o1777),
        Entry.dir("var/tmp", mode=0o1777),
        Entry.dir("root", mode=0o700),
        Entry.dir("home"),
        Entry.dir(f"home/{user}", uid=uid, gid=uid),
        Entry.dir("var/lib/dpkg/status.d"),
    ]
    if arch == "amd64":
        entries += [Entry.symlink("lib64", "usr/lib64"), Entry.dir("usr/lib64")]
    return entries


def postinst_entries(package: str, entries: Sequence[Entry]) -> list[Entry]:
    """Files the package's maintainer scripts would have made, from the package's own files."""
    if package == "ca-certificates":
        return _ca_bundle(entries)
    if package == "tzdata":
        return [Entry.symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC"), Entry.bytes("etc/timezone", b"Etc/UTC\n")]
    return []


def _ca_bundle(entries: Sequence[Entry]) -> list[Entry]:
    """update-ca-certificates with the default selection: every shipped certificate, in path order."""
    certs = sorted((e for e in entries if e.kind == "file" and e.path.startswith(CA_SOURCE) and e.path.endswith(".crt")),
                   key=lambda e: e.path)
    bundle = bytearray()
    for cert in certs:
        data = cert.data or b""
        bundle += data if data.endswith(b"\n") else data + b"\n"
    conf = "# written by lamina: every certificate the package ships is trusted (debconf's default)\n"
    conf += "".join(f"{c.path.removeprefix(CA_SOURCE)}\n" for c in certs)
    return [Entry.bytes(CA_BUNDLE, bytes(bundle)), Entry.bytes("etc/ca-certificates.conf", conf.encode())]
