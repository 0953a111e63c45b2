"""Units of the registry layer cache and the remote build: keys that travel, the index's merge rule, the
ssh URL and the arguments sent (the end-to-end behaviour is in test_cache.py and test_onhost.py)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from lamina.errors import UsageError
from lamina.oci.cache import MAX_ENTRIES, CacheEntry, CacheIndex, index_document
from lamina.oci.layer import content_key
from lamina.oci.tar import tree_entries
from lamina.onhost import Host, changes, project_files, remote_argv


def tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("print('a')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    return root


def test_a_content_key_is_the_same_for_a_copy_elsewhere_with_other_times_and_differs_on_a_change(tmp_path):
    one = tree(tmp_path / "one")
    time.sleep(0.01)
    two = tmp_path / "somewhere" / "two"
    shutil.copytree(one, two)
    os.utime(two / "pkg" / "a.py", (1, 1))
    key = content_key(tree_entries(one, "/app"))
    assert content_key(tree_entries(two, "/app")) == key
    (two / "pkg" / "a.py").write_text("print('b')\n")
    assert content_key(tree_entries(two, "/app")) != key
    assert content_key(tree_entries(one, "/srv")) != key  # where it goes is part of the layer


def entry(key: str, digest: str = "sha256:" + "0" * 64) -> CacheEntry:
    return CacheEntry(key, "sha256:" + "1" * 64, digest, 10, "application/vnd.oci.image.layer.v1.tar+gzip",
                      "r.example/o/img", "sha256:" + "2" * 64)


def test_the_index_puts_this_pushs_entries_first_and_keeps_the_newest(tmp_path):
    import json

    previous = CacheIndex({f"old{i}": entry(f"old{i}") for i in range(MAX_ENTRIES)})
    newer = entry("old3", digest="sha256:" + "9" * 64)
    data = json.loads(index_document([entry("new"), newer], previous))
    keys = list(data["layers"])
    assert keys[:2] == ["new", "old3"] and len(keys) == MAX_ENTRIES
    assert data["layers"]["old3"]["digest"] == newer.digest  # this push's entry wins its key
    assert f"old{MAX_ENTRIES - 1}" not in keys  # the oldest ones go
    assert index_document([entry("new"), newer], previous) == index_document([entry("new"), newer], previous)


@pytest.mark.parametrize(("text", "expected"), [
    ("ssh://deploy@build.example.com", Host("build.example.com", "deploy")),
    ("ssh://build.example.com:2222/srv/lamina", Host("build.example.com", None, 2222, "/srv/lamina")),
    ("ssh://root@127.0.0.1:22/", Host("127.0.0.1", "root", 22)),
])
def test_ssh_urls(text, expected):
    assert Host.parse(text) == expected


@pytest.mark.parametrize("text", ["deploy@host", "http://host", "ssh://host:port"])
def test_bad_ssh_urls_say_how_to_write_one(text):
    with pytest.raises(UsageError):
        Host.parse(text)


def test_the_remote_gets_the_same_arguments_without_those_of_the_ssh_side(tmp_path):
    root = tmp_path
    argv = ["build", "svc-a", "--on", "ssh://h", "--known-hosts=kh", "--identity", "k", "--push", "--json",
            "--remote-lamina", "/opt/lamina", "-c", str(root / "lamina.toml")]
    assert remote_argv(argv, root, root / "lamina.toml") == ["build", "svc-a", "--push", "--json"]
    assert remote_argv(["build"], root, root / "ci" / "lamina.ci.toml") == ["build", "--config", "ci/lamina.ci.toml"]


def test_only_new_or_changed_files_are_sent_and_missing_ones_deleted(tmp_path):
    root = tree(tmp_path / "p")
    (root / "build").mkdir()
    (root / "build" / "out.tar").write_text("x")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_text("x")
    files = project_files(root)
    assert sorted(files) == ["pkg/a.py", "run.sh"]
    assert files["run.sh"][1] == 0o755
    there = {p: list(v) for p, v in files.items()} | {"gone.txt": ["0" * 64, 0o644]}
    (root / "pkg" / "a.py").write_text("changed\n")
    assert changes(project_files(root), there) == (["pkg/a.py"], ["gone.txt"])
