"""Reading .deb files into layer entries, dpkg records, system files, layer grouping and lamina.lock (no network)."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import tomllib

import pytest
import zstandard

from lamina.config import load_config
from lamina.debian.deb import DebError, merged_usr, read_deb
from lamina.debian.image import LockedPackage, group_packages, stale_reason, upstream_version
from lamina.debian.layers import BUCKETS, DEBIAN_ROOM
from lamina.debian.status import parse_status, status_entries
from lamina.debian.system import CA_BUNDLE, postinst_entries, system_entries
from lamina.errors import ConfigError
from lamina.lock import Lock, dumps
from lamina.oci.tar import Entry, tar_chunks

CONTROL = """Package: demo
Version: 1.0-1
Architecture: amd64
Maintainer: Someone <someone@example.org>
Depends: libc6 (>= 2.36)
Description: a demo
 with a long description
"""


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, *, mode: int = 0o644,
           link: str = "", uid: int = 0, gid: int = 0) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.uid, info.gid = kind, mode, link, uid, gid
    info.size = len(data) if data is not None else 0
    return info, data


def ar(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def make_deb(compression: str = "xz", extra: list | None = None) -> bytes:
    data_members = [
        member("./", tarfile.DIRTYPE, mode=0o755),
        member("./lib/", tarfile.DIRTYPE, mode=0o755),
        member("./lib/x86_64-linux-gnu/", tarfile.DIRTYPE, mode=0o755),
        member("./lib/x86_64-linux-gnu/libdemo.so.1.0", data=b"ELF...", mode=0o644),
        member("./lib/x86_64-linux-gnu/libdemo.so.1", tarfile.SYMTYPE, link="libdemo.so.1.0"),
        member("./lib/up", tarfile.SYMTYPE, link="../usr/share/demo"),
        member("./usr/", tarfile.DIRTYPE),
        member("./usr/bin/", tarfile.DIRTYPE),
        member("./usr/bin/demo", data=b"#!/bin/sh\n", mode=0o4755),
        member("./usr/bin/demo-again", tarfile.LNKTYPE, link="./usr/bin/demo"),
        member("./bin/", tarfile.DIRTYPE),
        member("./bin/demo-legacy", tarfile.LNKTYPE, link="./usr/bin/demo"),
        member("./var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8),
        *(extra or []),
    ]
    data = tar_bytes(data_members)
    packed = {"xz": lzma.compress, "gz": gzip.compress, "zst": zstandard.ZstdCompressor().compress}[compression](data)
    control = gzip.compress(tar_bytes([member("./", tarfile.DIRTYPE), member("./control", data=CONTROL.encode()),
                                       member("./md5sums", data=b"0123  lib/x86_64-linux-gnu/libdemo.so.1.0\n")]))
    return ar([("debian-binary", b"2.0\n"), ("control.tar.gz", control), (f"data.tar.{compression}", packed)])


@pytest.mark.parametrize("compression", ["xz", "gz", "zst"])
def test_data_tar_becomes_entries_with_merged_usr_paths(compression):
    deb = read_deb(make_deb(compression), label="demo.deb")
    by_path = {e.path: e for e in deb.entries}
    assert "lib" not in by_path and "bin" not in by_path
    assert by_path["usr/lib/x86_64-linux-gnu/libdemo.so.1.0"].data == b"ELF..."
    assert by_path["usr/lib/x86_64-linux-gnu/libdemo.so.1"].target == "libdemo.so.1.0"
    assert by_path["usr/lib/up"].target == "../share/demo"  # recomputed for the new place: /usr/share/demo
    assert by_path["usr/bin/demo"].mode == 0o4755
    assert by_path["usr/bin/demo-again"].kind == "hardlink"
    assert by_path["usr/bin/demo-legacy"].kind == "hardlink" and by_path["usr/bin/demo-legacy"].target == "usr/bin/demo"
    assert (by_path["var/mail"].mode, by_path["var/mail"].gid) == (0o2775, 8)
    assert deb.control.startswith("Package: demo\n")
    b"".join(tar_chunks(deb.entries, mtime=1))  # a valid layer (parents, hard link order)


def test_a_hard_link_whose_target_moves_after_it_becomes_a_copy():
    extra = [member("./usr/lib/zz", data=b"content"), member("./lib/aa", tarfile.LNKTYPE, link="./usr/lib/zz")]
    by_path = {e.path: e for e in read_deb(make_deb(extra=extra)).entries}
    assert by_path["usr/lib/aa"].kind == "file" and by_path["usr/lib/aa"].data == b"content"  # aa sorts before zz
    b"".join(tar_chunks(list(by_path.values()), mtime=1))


def test_not_a_deb_is_refused():
    with pytest.raises(DebError):
        read_deb(b"PK\x03\x04 not an ar archive")


def test_merged_usr():
    assert merged_usr("lib64/ld-linux-x86-64.so.2") == "usr/lib64/ld-linux-x86-64.so.2"
    assert merged_usr("sbin/ldconfig") == "usr/sbin/ldconfig"
    assert merged_usr("library/x") == "library/x"
    assert merged_usr("usr/lib/x") == "usr/lib/x"


def test_status_records_read_back_as_installed():
    entries = status_entries("demo", CONTROL, "0123  lib/x86_64-linux-gnu/libdemo.so.1.0\n")
    record = entries[0].data.decode()
    assert entries[0].path == "var/lib/dpkg/status.d/demo"
    assert record.splitlines()[:2] == ["Package: demo", "Status: install ok installed"]
    assert entries[1].data == b"0123  usr/lib/x86_64-linux-gnu/libdemo.so.1.0\n"
    installed = parse_status(record + "\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n")
    assert list(installed) == ["demo"] and installed["demo"].version == "1.0-1"


def test_system_files():
    by_path = {e.path: e for e in system_entries("amd64", user="worker")}
    assert by_path["lib"].target == "usr/lib" and by_path["lib64"].target == "usr/lib64"
    assert by_path["tmp"].mode == 0o1777
    passwd = by_path["etc/passwd"].data.decode()
    assert passwd.startswith("root:x:0:0:") and "nobody:x:65534:" in passwd and "worker:x:1000:1000:" in passwd
    assert (by_path["home/worker"].uid, by_path["home/worker"].gid) == (1000, 1000)
    assert "lib64" not in {e.path for e in system_entries("arm64")}


def test_ca_bundle_concatenates_the_shipped_certificates_in_path_order():
    certs = [Entry.bytes("usr/share/ca-certificates/mozilla/B.crt", b"-----B-----\n"),
             Entry.bytes("usr/share/ca-certificates/mozilla/A.crt", b"-----A-----"),
             Entry.bytes("usr/share/doc/ca-certificates/README", b"x")]
    extra = {e.path: e for e in postinst_entries("ca-certificates", certs)}
    assert extra[CA_BUNDLE].data == b"-----A-----\n-----B-----\n"
    assert extra["etc/ca-certificates.conf"].data.decode().splitlines()[1:] == ["mozilla/A.crt", "mozilla/B.crt"]
    assert postinst_entries("libc6", certs) == []


def locked(name: str, size: int = 1000, source: str | None = None, version: str = "1.0") -> LockedPackage:
    src = source or name
    return LockedPackage(name, version, "amd64", "0" * 64, size, f"pool/main/{src[0]}/{src}/{name}_{version}_amd64.deb",
                         "bookworm")


def test_each_source_package_has_its_own_layer_while_the_image_has_room():
    packages = [locked("libc6", 2_800_000, "glibc"), locked("libc-bin", 600_000, "glibc"), locked("zlib1g"),
                *[locked(f"lib{i}") for i in range(10)]]
    groups = group_packages(packages)
    assert len(groups) == 12  # libc6 and libc-bin (one source, updated together) share a layer
    assert [p.name for p in dict(groups)["debian source glibc 1.0 (libc-bin, libc6)"]] == ["libc-bin", "libc6"]
    updated = [p if p.name != "zlib1g" else locked("zlib1g", version="1.1") for p in packages]
    assert [d for d, _ in group_packages(updated) if (d, _) not in groups] == ["debian package zlib1g 1.1"]


def test_grouping_is_stable_when_a_package_is_added():
    small = [locked(f"lib{i}") for i in range(40)]
    big = [locked("libicu72", 10_000_000), locked("libpython3.11-stdlib", 1_800_000, "python3.11")]
    before = group_packages(small + big)
    after = group_packages(small + big + [locked("libnew")])
    assert len(before) <= BUCKETS + 2 and len(before) <= DEBIAN_ROOM
    assert [d for d, _ in before][:2] == ["debian package libicu72 1.0", "debian package libpython3.11-stdlib 1.0"]
    sizes = [sum(p.size for p in ps) for _, ps in before]
    assert sizes == sorted(sizes, reverse=True)  # biggest first: a node lays out little above a changed layer
    changed = [g for g in after if g not in before]
    assert len(changed) == 1 and "libnew" in [p.name for p in changed[0][1]]


def test_upstream_version():
    assert upstream_version("3.11.2-6+deb12u8") == "3.11.2"
    assert upstream_version("1:2.0-1") == "2.0"
    assert upstream_version("3.12.7") == "3.12.7"


def test_stale_reasons():
    want = {"release": "bookworm", "arch": "amd64", "requested": ["python3"], "base_packages": "none",
            "sources": [{"suite": "bookworm", "url": "https://deb.debian.org/debian"}]}
    entry = {**want, "sources": [{**want["sources"][0], "date": "x", "inrelease": "sha256:0"}], "packages": []}
    assert stale_reason(entry, want) is None
    assert stale_reason(None, want) == "has no entry"
    assert stale_reason({**entry, "requested": ["python3", "curl"]}, want) == "is stale (requested changed)"
    assert stale_reason(entry, {**want, "sources": [{"suite": "bookworm", "url": "http://mirror"}]}) == \
        "is stale (mirror or suites changed)"


def test_lock_file_is_deterministic_toml_and_keeps_other_sections(tmp_path):
    path = tmp_path / "lamina.lock"
    lock = Lock.load(path)
    lock.set_section("zeta", "linux/amd64", "debian", {"release": "bookworm", "packages": [locked("a").to_lock()]})
    lock.set_section("alpha", "linux/arm64", "debian", {"release": "trixie", "requested": ["python3", "quote\"d"],
                                                        "packages": []})
    lock.set_section("alpha", "linux/amd64", "debian", {"release": "trixie", "packages": []})
    assert lock.save()
    text = path.read_text()
    assert text.index('[images.alpha."linux/amd64".debian]') < text.index('[images.alpha."linux/arm64".debian]') \
        < text.index('[images.zeta."linux/amd64".debian]')
    data = tomllib.loads(text)
    assert data["version"] == 2
    assert data["images"]["zeta"]["linux/amd64"]["debian"]["packages"][0]["name"] == "a"
    assert data["images"]["alpha"]["linux/arm64"]["debian"]["requested"] == ["python3", 'quote"d']
    path.write_text(text.replace("version = 2\n", 'version = 2\n\n[images.alpha."linux/amd64".python]\nlocked = true\n'))
    again = Lock.load(path)
    again.set_section("zeta", "linux/amd64", "debian", {"release": "bookworm", "packages": []})
    again.save()
    assert tomllib.loads(path.read_text())["images"]["alpha"]["linux/amd64"]["python"] == {"locked": True}
    assert not Lock.load(path).save()  # unchanged: not rewritten
    assert dumps(tomllib.loads(path.read_text())) == path.read_text()


def test_a_format_1_lock_is_read_as_each_images_platform_and_rewritten_only_on_change(tmp_path):
    path = tmp_path / "lamina.lock"
    v1 = '# old\nversion = 1\n\n[images.pybase.debian]\nrelease = "bookworm"\npackages = []\n'
    path.write_text(v1)
    lock = Lock.load(path, lambda name: "linux/arm64")
    assert lock.section("pybase", "linux/arm64", "debian") == {"release": "bookworm", "packages": []}
    assert lock.section("pybase", "linux/amd64", "debian") is None
    assert not lock.save() and path.read_text() == v1  # nothing changed: the committed file stays as it is
    lock.set_section("pybase", "linux/arm64", "python", {"dists": []})
    assert lock.save()
    data = tomllib.loads(path.read_text())
    assert data["version"] == 2 and set(data["images"]["pybase"]["linux/arm64"]) == {"debian", "python"}


def write_config(tmp_path, body: str):
    path = tmp_path / "lamina.toml"
    path.write_text(body)
    return path


def test_config_reads_debian_images(tmp_path):
    config = load_config(write_config(tmp_path, """
[project]
debian_mirror = "http://mirror.example/debian/"
debian_suites = ["security", "updates"]

[images.base]
from = "debian:bookworm"
packages = ["python3", "libc6 (>= 2.36)"]

[images.ocr]
from = "base"
packages = "tesseract-ocr"
"""))
    assert config.debian_mirror == "http://mirror.example/debian"
    assert config.debian_suites == ("security", "updates")
    assert config.images["base"].packages == ("python3", "libc6 (>= 2.36)")
    assert config.images["ocr"].packages == ("tesseract-ocr",)


@pytest.mark.parametrize("body, message", [
    ('[images.a]\npackages = ["curl"]\n', "Debian packages need a Debian base"),
    ('[images.a]\nfrom = "debian:Bookworm 12"\n', "expected a Debian release"),
    ('[images.a]\nfrom = "debian:bookworm"\npackages = ["Not A Name"]\n', "is not a Debian package name"),
    ('[project]\ndebian_suites = ["backports"]\n', "unknown suite 'backports'"),
    ('[project]\ndebian_mirror = "ftp://x"\n', r"expected an http\(s\) URL"),
])
def test_config_errors_name_the_line(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write_config(tmp_path, body))
    assert "lamina.toml:" in str(info.value)


def test_an_unreachable_mirror_is_a_clear_error(tmp_path):
    from helpers import run_lamina

    write_config(tmp_path, '[project]\ndebian_mirror = "http://127.0.0.1:9/debian"\n\n[images.a]\nfrom = "debian:bookworm"\n')
    result = run_lamina("lock", cwd=tmp_path, env={"LAMINA_STORE": str(tmp_path / "store"), "NO_PROXY": "127.0.0.1"},
                        check=False)
    assert result.returncode == 4  # a network error
    assert "cannot download http://127.0.0.1:9/debian/dists/bookworm/InRelease" in result.stderr.replace("\n", "")
    assert "check the network" in result.stderr
