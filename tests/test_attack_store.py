"""The store under attack: SIGKILL at several points of a build, leftovers of dead runs, tampered layers,
a full disk. After each: the store verifies, the next run cleans up and gives the reference digests."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import assert_one_line_error
from attack_project import kill_after, layout_digest, make_project, run, timed
from lamina.oci.store import BlobStore

pytestmark = pytest.mark.attack

BUILD = ("build", "app", "-o", "oci:out", "--no-check")


def verify_ok(root: Path, store: Path) -> None:
    result = run(root, store, "store", "verify")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, float]:
    """The digest of ``app`` built once in a fresh store, and how long that took (to spread the kills)."""
    root = make_project(tmp_path_factory.mktemp("reference"))
    result, seconds = timed(root, root / "store", *BUILD)
    assert result.returncode == 0, result.stderr
    return layout_digest(root / "out", "app"), seconds


def test_sigkill_at_several_points_of_a_build(tmp_path, reference):
    """Kills spread over a fresh build (seeded): each leaves a store that verifies; the next run removes the
    dead run's temp folder and builds the reference digest."""
    digest, seconds = reference
    root = make_project(tmp_path / "proj")
    store = root / "store"
    rng = random.Random(10)
    kills = 0
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.8):
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(root / "out", ignore_errors=True)
        (root / "lamina.lock").unlink(missing_ok=True)
        delay = seconds * fraction * rng.uniform(0.9, 1.1)
        if kill_after(root, store, delay, *BUILD) is None:
            kills += 1
        if store.exists():
            verify_ok(root, store)
        result = run(root, store, *BUILD)
        assert result.returncode == 0, result.stderr
        assert layout_digest(root / "out", "app") == digest
        assert list((store / "tmp").iterdir()) == []  # the killed run's leftovers are gone
    assert kills >= 3  # most kills hit a running build


def test_sigkill_of_an_incremental_build_keeps_the_store_good(tmp_path, reference):
    digest, seconds = reference
    root = make_project(tmp_path / "proj")
    store = root / "store"
    assert run(root, store, *BUILD).returncode == 0
    for i, fraction in enumerate((0.1, 0.3, 0.5)):
        (root / "data" / "blob1.bin").write_bytes(random.Random(100 + i).randbytes(6 << 20))  # a changed layer
        kill_after(root, store, seconds * fraction, *BUILD)
        verify_ok(root, store)
    (root / "data" / "blob1.bin").write_bytes(random.Random(1).randbytes(6 << 20))  # back to the reference
    result = run(root, store, *BUILD)
    assert result.returncode == 0, result.stderr
    assert layout_digest(root / "out", "app") == digest


def test_a_dead_runs_temp_folder_is_swept_and_a_live_ones_is_kept(tmp_path):
    root = tmp_path / "store"
    code = textwrap.dedent(f"""
        import sys, time
        from lamina.oci.store import BlobStore
        store = BlobStore({str(root)!r})
        (store.tmp_dir / "partial").write_bytes(b"x" * 1000)
        print(store.tmp_dir, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(process.stdout.readline().strip())
        assert (folder / "partial").exists()
        BlobStore(root)  # another run opens the store while that one is alive: its folder stays
        assert (folder / "partial").exists()
    finally:
        process.kill()
        process.wait()
    BlobStore(root)  # the next run after the kill removes it
    assert not folder.exists()
    assert list((root / "tmp").iterdir()) == []


def test_store_gc_removes_leftovers_of_killed_runs_of_older_releases(tmp_path):
    """Older releases left ``tmp/python-layers-*`` folders: ``store gc`` used to fail on them (IsADirectoryError)."""
    root = make_project(tmp_path / "proj", megabytes=1, files=1)
    store = root / "store"
    BlobStore(store)
    legacy = store / "tmp" / "python-layers-abc" / "stage-1" / "opt"
    legacy.mkdir(parents=True)
    (legacy / "file").write_bytes(b"x")
    (store / "tmp" / "blob-123").write_bytes(b"partial")
    result = run(root, store, "store", "gc")
    assert result.returncode == 0, result.stderr
    assert list((store / "tmp").iterdir()) == []


def _first_layer_blob(store: Path, out: Path) -> Path:
    import json

    index = json.loads((out / "index.json").read_text())
    app = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "app:1")
    manifest = json.loads((out / "blobs" / "sha256" / app["digest"].split(":")[1]).read_text())
    biggest = max(manifest["layers"], key=lambda layer: layer["size"])
    return store / "blobs" / "sha256" / biggest["digest"].split(":")[1]


def _built_then_tampered(root: Path) -> tuple[Path, Path, Path]:
    """A small project at ``root`` built into ``root/store``, then one byte of its biggest layer's blob in the
    store flipped: ``(root, store, blob)``."""
    make_project(root, megabytes=1, files=1)
    store = root / "store"
    assert run(root, store, *BUILD).returncode == 0
    blob = _first_layer_blob(store, root / "out")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    return root, store, blob


@pytest.mark.parametrize("output", ["docker-archive:app.tar", "oci:out2"])
def test_a_tampered_layer_in_the_store_is_detected_before_use(tmp_path, output):
    root, store, blob = _built_then_tampered(tmp_path / "proj")
    result = run(root, store, "build", "app", "-o", output, "--no-check")
    assert_one_line_error(result, "corrupt", "lamina store verify --delete")
    assert not (root / "app.tar").exists() and not (root / "out2" / "index.json").exists()
    bad = run(root, store, "store", "verify", "--delete")
    assert blob.name in bad.stdout + bad.stderr
    result = run(root, store, "build", "app", "-o", output, "--no-check")  # made again
    assert result.returncode == 0, result.stderr


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 20 MiB tmpfs here ({done.stderr.strip()}): the disk-full cases need one")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_in_the_store_is_one_line_and_the_store_verifies(tmp_path, small_disk):
    root = make_project(tmp_path / "proj", megabytes=8, files=2)  # 24 MiB of incompressible bytes
    store = small_disk / "store"
    result = run(root, store, *BUILD)
    assert_one_line_error(result, "no space left on the device holding")
    verify_ok(root, store)
    assert [p for p in (store / "tmp").iterdir() if not p.name.endswith(".alive")] == []


@pytest.mark.parametrize("output", ["oci:{disk}/out", "docker-archive:{disk}/app.tar"])
def test_disk_full_in_the_output_is_one_line(tmp_path, small_disk, output):
    root = make_project(tmp_path / "proj", megabytes=8, files=2)
    store = tmp_path / "store"
    result = run(root, store, "build", "app", "-o", output.format(disk=small_disk), "--no-check")
    assert_one_line_error(result, "no space left on the device holding")
    assert not (small_disk / "app.tar").exists() and not (small_disk / "out" / "index.json").exists()
    verify_ok(root, store)


def test_a_tampered_layer_is_not_pushed(tmp_path, registry):
    from registry_servers import unique_repo

    root, store, blob = _built_then_tampered(tmp_path / "proj")
    owner = unique_repo("tampered")
    result = run(root, store, "build", "app", "--push", "--registry", registry.host, "--owner", owner, "--no-check")
    assert_one_line_error(result, blob.name[:12])
    from lamina.oci.registry.client import RegistryClient

    with RegistryClient(registry.host) as client:
        assert client.head_manifest(f"{owner}/app", "1") is None  # no image names the corrupt blob
        assert client.blob_size(f"{owner}/app", "sha256:" + blob.name) is None
