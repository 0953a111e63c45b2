"""The layer tar is a function of its entries only."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from lamina.errors import LaminaError
from lamina.oci.tar import DEFAULT_EPOCH, Entry, source_date_epoch, tar_chunks, tree_entries, write_tar


def tar_bytes(entries, mtime=DEFAULT_EPOCH) -> bytes:
    out = io.BytesIO()
    write_tar(entries, out, mtime=mtime)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_input_order_does_not_change_the_bytes():
    a = [Entry.bytes("b/x", b"1"), Entry.bytes("a/y", b"2"), Entry.symlink("c", "b/x")]
    assert tar_bytes(a) == tar_bytes(list(reversed(a)))


def test_parent_directories_are_emitted_sorted_with_fixed_metadata():
    data = tar_bytes([Entry.bytes("usr/lib/x.so", b"elf", mode=0o755, uid=5, gid=6)])
    infos = members(data)
    assert [m.name for m in infos] == ["usr", "usr/lib", "usr/lib/x.so"]
    assert all(m.mtime == DEFAULT_EPOCH and m.uname == "" and m.gname == "" for m in infos)
    assert infos[0].isdir() and infos[0].mode == 0o755
    assert (infos[2].uid, infos[2].gid, infos[2].mode) == (5, 6, 0o755)


def test_sorting_is_by_path_components_so_parents_precede_children():
    names = [m.name for m in members(tar_bytes([Entry.bytes("a.b/c", b""), Entry.bytes("a/b", b"")]))]
    assert names == ["a", "a/b", "a.b", "a.b/c"]


def test_source_files_ignore_host_mtime_and_umask(tmp_path):
    def make(root: Path, umask: int, mtime: int) -> bytes:
        old = os.umask(umask)
        try:
            (root / "pkg").mkdir(parents=True)
            (root / "pkg" / "run.sh").write_text("#!/bin/sh\necho hi\n")
            (root / "pkg" / "run.sh").chmod(0o777 & ~umask | 0o100)
            (root / "pkg" / "data.txt").write_text("data")
            for p in (root / "pkg" / "run.sh", root / "pkg" / "data.txt"):
                os.utime(p, (mtime, mtime))
        finally:
            os.umask(old)
        return tar_bytes(tree_entries(root / "pkg", "/app"))

    first = make(tmp_path / "one", 0o022, 1_600_000_000)
    second = make(tmp_path / "two" / "deeper", 0o077, 1_700_000_000)
    assert first == second
    modes = {m.name: m.mode for m in members(first)}
    assert modes == {"app": 0o755, "app/data.txt": 0o644, "app/run.sh": 0o755}


def test_source_date_epoch_sets_every_mtime(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert source_date_epoch() == 1700000000
    data = io.BytesIO()
    write_tar([Entry.bytes("f", b"x")], data)
    assert {m.mtime for m in members(data.getvalue())} == {1700000000}


def test_bad_source_date_epoch_is_explained(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(LaminaError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch()


def test_whiteouts_and_opaque_directories():
    names = [m.name for m in members(tar_bytes([Entry.whiteout("etc/motd"), Entry.opaque("var/cache")]))]
    assert "etc/.wh.motd" in names and "var/cache/.wh..wh..opq" in names


def test_symlinks_and_hardlinks_from_a_tree(tmp_path):
    root = tmp_path / "src"
    root.mkdir()
    (root / "a").write_text("same")
    os.link(root / "a", root / "b")
    (root / "link").symlink_to("a")
    infos = {m.name: m for m in members(tar_bytes(tree_entries(root, "opt")))}
    assert infos["opt/link"].issym() and infos["opt/link"].linkname == "a"
    assert infos["opt/b"].islnk() and infos["opt/b"].linkname == "opt/a"
    assert infos["opt/a"].isfile()


def test_long_and_non_ascii_paths_round_trip():
    long_path = "site-packages/" + "x" * 150 + "/é.py"
    infos = members(tar_bytes([Entry.bytes(long_path, b"print()")]))
    assert infos[-1].name == long_path


def test_tar_ends_with_two_zero_blocks_and_no_padding_record():
    data = tar_bytes([Entry.bytes("f", b"x")])
    assert data.endswith(b"\0" * 1024) and len(data) == 512 + 512 + 1024  # header, padded content, end


def test_paths_escaping_the_root_are_refused():
    with pytest.raises(LaminaError, match="leaves the image root"):
        Entry.bytes("../etc/passwd", b"")


def test_conflicting_entries_for_one_path_are_refused():
    with pytest.raises(LaminaError, match="two different entries"):
        tar_bytes([Entry.bytes("f", b"1"), Entry.bytes("f", b"2")])


def test_file_that_shrinks_after_its_header_is_written_is_an_error(tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    chunks = tar_chunks([Entry.file("f", src)])
    next(chunks)  # the header, with size 3
    src.write_bytes(b"a")
    with pytest.raises(LaminaError, match="changed size"):
        list(chunks)


@pytest.mark.parametrize(
    "entry",
    [
        Entry.bytes("usr/bin/tool", b"x" * 1000, mode=0o755, uid=1000, gid=1000),
        Entry.dir("var/lib/dpkg", mode=0o700),
        Entry.symlink("bin", "usr/bin"),
        Entry.symlink("long/link", "t" * 150),
        Entry.bytes("a" * 100, b""),
        Entry.bytes("deep/" + "b" * 120 + "/file.py", b"print()"),
        Entry.bytes("naïve/ß.txt", b"1"),
        Entry.bytes("big-ids", b"", uid=3_000_000, gid=4_000_000),
    ],
    ids=lambda e: e.path[:20],
)
def test_headers_read_back_with_every_field(entry):
    info = members(tar_bytes([entry]))[-1]
    assert (info.name, info.mode, info.uid, info.gid, info.size, info.mtime) == (
        entry.path, entry.mode, entry.uid, entry.gid, entry.size, DEFAULT_EPOCH)
    assert info.linkname == (entry.target or "")


def test_tar_bytes_are_pinned():
    """The writer's exact output: a change here changes every image digest (do it on purpose only)."""
    entries = [
        Entry.bytes("app/main.py", b"print('hi')\n", mode=0o644, uid=1000, gid=1000),
        Entry.symlink("bin", "usr/bin"),
        Entry.bytes("x/" + "long" * 40 + ".txt", "é".encode()),
        Entry.whiteout("etc/motd"),
    ]
    import hashlib

    assert hashlib.sha256(tar_bytes(entries)).hexdigest() == (
        "434458d6c02efb3208e57d6df0d93c274f1a776e30474c0c89879fbaad72df98"
    )
