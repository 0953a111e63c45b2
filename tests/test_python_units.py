"""Python packaging pieces on their own: requirement files, layer grouping, installing a wheel, checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.errors import ConfigError
from lamina.oci.model import Platform
from lamina.python.check import ERROR, NOTE, WARNING, check_service, imports_in, wheel_modules
from lamina.python.install import install_wheel
from lamina.python.layers import BUCKETS, LAYER_BUDGET, RESERVE, ROOM, bucket_of, group_dists, room_for
from lamina.python.requirements import read_requirements
from lamina.python.resolve import LockedDist, parse_pylock
from lamina.python.target import PythonTarget
from lamina.python.venv import venv_entries
from helpers import record_line, record_with, write_wheel

TARGET = PythonTarget("3.11.2", "/usr/bin/python3.11", Platform())


def dist(name: str, version: str = "1.0", size: int = 1000) -> LockedDist:
    return LockedDist(name, version, f"https://files.example/{name}-{version}-py3-none-any.whl", "0" * 64, size)


def test_requirements_keep_file_and_line_and_follow_includes(tmp_path):
    (tmp_path / "base.txt").write_text("# core\nfastapi==0.115.6\n\nuvicorn>=0.30  # server\n")
    (tmp_path / "svc.txt").write_text("-r base.txt\n--extra-index-url https://example\nnumpy\n")
    found = [(r.name, r.file.name, r.line) for r in read_requirements(tmp_path / "svc.txt")]
    assert found == [("fastapi", "base.txt", 2), ("uvicorn", "base.txt", 4), ("numpy", "svc.txt", 3)]


def test_bad_requirement_names_file_and_line(tmp_path):
    (tmp_path / "r.txt").write_text("fastapi\nnot a requirement!\n")
    with pytest.raises(ConfigError, match="r.txt:2: not a valid requirement"):
        read_requirements(tmp_path / "r.txt")


def test_each_distribution_has_its_own_layer_while_the_image_has_room():
    dists = [dist(f"pkg{i}") for i in range(30)] + [dist("orjson", "3.10.13", 130_000), dist("fastapi", "0.115.6")]
    groups = group_dists(dists, room=40)
    assert sorted(len(g) for g in groups) == [1] * 32
    bumped = [d if d.name != "orjson" else dist("orjson", "3.10.12", 131_000) for d in dists]
    changed = [g for g in group_dists(bumped, room=40) if g not in groups]
    assert [[d.pin for d in g] for g in changed] == [["orjson==3.10.12"]]  # one library moved: one layer


def test_above_its_room_an_image_groups_small_families_and_stays_stable():
    small = [dist(f"pkg{i}") for i in range(30)] + [dist("pydantic", size=400_000), dist("pydantic-core", size=2000),
                                                     dist("opentelemetry-api"), dist("opentelemetry-sdk")]
    big = [dist("torch", size=200_000_000), dist("numpy", size=20_000_000)]
    groups = group_dists(small + big, room=12)
    assert len(groups) <= 12 and len(groups) <= BUCKETS + 3
    assert [["torch"], ["numpy"], ["pydantic"]] == [[d.name for d in g] for g in groups[:3]]  # >= 256 KiB: alone
    where = {d.name: i for i, g in enumerate(groups) for d in g}
    assert where["opentelemetry-api"] == where["opentelemetry-sdk"]  # released together, rebuilt together
    assert bucket_of("pydantic-core") == bucket_of("pydantic")
    bumped = [d if d.name != "pkg3" else dist("pkg3", "2.0") for d in small] + big
    changed = [a != b for a, b in zip(groups, group_dists(bumped, room=12))]
    assert sum(changed) == 1  # only pkg3's bucket
    without = group_dists([d for d in small if d.name != "pkg7"] + big, room=12)
    assert sum(1 for g in without if g not in groups) == 1  # only pkg7's bucket changed


def test_layers_go_biggest_first_so_a_node_lays_out_little_above_a_change():
    dists = [dist("joblib", size=300_000), dist("numpy", size=16_000_000), dist("scipy", size=38_000_000),
             dist("threadpoolctl", size=18_000), dist("scikit-learn", size=13_000_000)]
    order = [g[0].name for g in group_dists(dists, room=40)]
    assert order == ["scipy", "numpy", "scikit-learn", "joblib", "threadpoolctl"]
    above_joblib = order[order.index("joblib") + 1:]
    assert above_joblib == ["threadpoolctl"]  # joblib moved: numpy, scipy and scikit-learn stay laid out
    small = [dist(f"pkg{i}", size=100_000 + i) for i in range(30)]
    groups = group_dists(small + dists, room=12)  # buckets too: by their total size
    sizes = [sum(d.size or 0 for d in g) for g in groups]
    assert sizes == sorted(sizes, reverse=True)


def test_room_shrinks_with_the_base_and_never_below_the_buckets():
    assert room_for(0) == ROOM
    assert room_for(LAYER_BUDGET - RESERVE - 20) == 20
    assert room_for(LAYER_BUDGET) == BUCKETS


def test_pylock_wheels_become_locked_dists():
    text = """
lock-version = "1.0"
[[packages]]
name = "Typing_Extensions"
version = "4.12.2"
wheels = [{ url = "https://files.example/typing_extensions-4.12.2-py3-none-any.whl", size = 37438, hashes = { sha256 = "ab" } }]
"""
    (only,) = parse_pylock(text, "test")
    assert (only.name, only.version, only.size, only.filename) == (
        "typing-extensions", "4.12.2", 37438, "typing_extensions-4.12.2-py3-none-any.whl")


def make_wheel(tmp_path: Path) -> Path:
    return write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "VALUE = 1\n",
        "demo_cli.py": "def main():\n    print('hi')\n",
        "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo = demo_cli:main\n",
    })


def test_wheel_installs_into_the_venv_with_image_shebangs_and_record(tmp_path):
    staging = tmp_path / "stage"
    install_wheel(make_wheel(tmp_path), "demo", TARGET, staging, compile_bytecode=TARGET.host_can_compile)
    site = staging / "opt/venv/lib/python3.11/site-packages"
    assert (site / "demo/__init__.py").read_text() == "VALUE = 1\n"
    script = (staging / "opt/venv/bin/demo").read_text()
    assert script.startswith("#!/opt/venv/bin/python\n")
    record = (site / "demo-1.0.dist-info/RECORD").read_text()
    assert "../../../bin/demo," in record and "demo-1.0.dist-info/INSTALLER," in record
    if TARGET.host_can_compile:
        assert "demo/__pycache__/__init__.cpython-311.pyc," in record


def test_an_install_inflates_each_member_once_and_checks_it_against_record(tmp_path, monkeypatch):
    """RECORD's hashes are compared with what installer hashed while writing: no member is read twice
    (before, the check inflated and hashed every member, and installer did it all again)."""
    import zipfile
    from collections import Counter

    from lamina.python.safety import WheelRecordError

    opened: Counter[str] = Counter()
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if mode == "r":
            opened[name.filename if isinstance(name, zipfile.ZipInfo) else name] += 1
        return real_open(self, name, mode, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    payload = b"x" * 300_000
    wheel = write_wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "VALUE = 1\n", "demo/big.bin": payload,
        "demo-1.0.data/scripts/tool": "#!python\nprint('tool')\n",  # rewritten by installer: checked from the wheel
        "demo-1.0.data/data/share/demo.txt": "shared\n",
    })
    install_wheel(wheel, "demo", TARGET, tmp_path / "stage", compile_bytecode=False)
    assert opened["demo/big.bin"] == 1 and opened["demo/__init__.py"] == 1
    assert opened["demo-1.0.data/data/share/demo.txt"] == 1
    assert (tmp_path / "stage/opt/venv/share/demo.txt").read_text() == "shared\n"

    # a changed member, in the root scheme, a .data scheme or the scripts, is refused, naming it
    for member in ("demo/big.bin", "demo-1.0.data/data/share/demo.txt", "demo-1.0.data/scripts/tool"):
        files = {"demo/__init__.py": "VALUE = 1\n", "demo/big.bin": payload, "demo-1.0.data/data/share/demo.txt": "shared\n",
                 "demo-1.0.data/scripts/tool": "#!python\nprint('tool')\n"}
        good = write_wheel(tmp_path / "good.whl", files)
        with zipfile.ZipFile(good) as zf:
            record = zf.read("demo-1.0.dist-info/RECORD").decode()
        files[member] = (files[member].encode() if isinstance(files[member], str) else files[member])[:-1] + b"!"
        folder = tmp_path / member.replace("/", "_")
        folder.mkdir()
        bad = write_wheel(folder / "demo-1.0-py3-none-any.whl", files, record=record)
        with pytest.raises(WheelRecordError, match=f"{member!r} does not match its RECORD hash"):
            install_wheel(bad, "demo", TARGET, folder / "stage", compile_bytecode=False)


def test_a_record_in_hex_and_a_wrong_size_are_judged_on_what_was_written(tmp_path):
    import hashlib

    from lamina.python.safety import WheelRecordError

    data = b"VALUE = 1\n"
    hex_record = record_with(f"demo/__init__.py,sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n", "demo")
    (tmp_path / "hex").mkdir()
    wheel = write_wheel(tmp_path / "hex/demo-1.0-py3-none-any.whl", {"demo/__init__.py": data}, record=hex_record)
    install_wheel(wheel, "demo", TARGET, tmp_path / "s1", compile_bytecode=False)  # gmsh's hex RECORD: accepted
    sized = record_with(record_line("demo/__init__.py", data).replace(f",{len(data)}\n", ",99\n"), "demo")
    (tmp_path / "size").mkdir()
    wheel = write_wheel(tmp_path / "size/demo-1.0-py3-none-any.whl", {"demo/__init__.py": data}, record=sized)
    with pytest.raises(WheelRecordError, match="RECORD says 99"):
        install_wheel(wheel, "demo", TARGET, tmp_path / "s2", compile_bytecode=False)


def test_bytecode_is_the_same_whatever_the_file_times(tmp_path):
    if not TARGET.host_can_compile:
        pytest.skip("the host Python is not 3.11")
    outputs = []
    for n in range(2):
        staging = tmp_path / f"s{n}"
        install_wheel(make_wheel(tmp_path), "demo", TARGET, staging, compile_bytecode=True)
        outputs.append((staging / "opt/venv/lib/python3.11/site-packages/demo/__pycache__/__init__.cpython-311.pyc").read_bytes())
    assert outputs[0] == outputs[1]


def make_named_wheel(tmp_path: Path, name: str, modules: int) -> Path:
    files = {f"{name}/m{i}.py": f"NAMES = {{'a{i}', 'b', 'c'}}\ndef f(self, x):\n    return self.{name}(x, 'k{i % 3}')\n"
             for i in range(modules)}
    files[f"{name}/tests/test_it.py"] = "def test():\n    pass\n"
    files[f"{name}/py2.py"] = "print 'not python 3'\n"
    return write_wheel(tmp_path / f"{name}-1.0-py3-none-any.whl", files, name=name)


def test_bytecode_does_not_depend_on_how_many_processes_compile_it(tmp_path, monkeypatch):
    """Files are compiled in fixed chunks by fresh interpreters: the bytes are the same whether one or
    three compile at once; each .pyc is listed in the RECORD of the distribution owning its source."""
    if not TARGET.host_can_compile:
        pytest.skip("the host Python is not 3.11")
    from concurrent.futures import ThreadPoolExecutor

    from lamina.python import install

    monkeypatch.setattr(install, "COMPILE_CHUNK", 7)
    wheels = [make_named_wheel(tmp_path, "alpha", 30), make_named_wheel(tmp_path, "beta", 12)]
    outputs = []
    for threads in (1, 3):
        monkeypatch.setattr(install, "_compile_pool", ThreadPoolExecutor(threads))
        staging = tmp_path / f"stage{threads}"
        for wheel in wheels:
            install_wheel(wheel, wheel.name.split("-")[0], TARGET, staging, compile_bytecode=False)
        install.compile_site_packages(staging, TARGET)
        site = staging / "opt/venv/lib/python3.11/site-packages"
        outputs.append({p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*.pyc"))})
        for name, count in (("alpha", 30), ("beta", 12)):
            record = (site / f"{name}-1.0.dist-info/RECORD").read_text()
            assert record.count(".pyc,") == count and f"{name}/__pycache__/m0.cpython-311.pyc,sha256=" in record
    assert outputs[0] == outputs[1] and len(outputs[0]) == 42
    assert not any("tests" in name or "py2" in name for name in outputs[0])  # test suites skipped, py2 fails


def test_compile_chunks_are_even_contiguous_and_from_the_list_alone():
    from lamina.python.install import COMPILE_CHUNK, compile_chunks

    for count in (1, COMPILE_CHUNK, COMPILE_CHUNK + 14, 3 * COMPILE_CHUNK - 1, 200):
        files = [Path(f"m{i:03}.py") for i in range(count)]
        chunks = compile_chunks(files)
        assert [f for chunk in chunks for f in chunk] == files  # every file once, in order
        sizes = [len(chunk) for chunk in chunks]
        assert max(sizes) <= COMPILE_CHUNK and max(sizes) - min(sizes) <= 1
        assert len(chunks) == -(-count // COMPILE_CHUNK)  # as few as will do
    assert [len(c) for c in compile_chunks([Path(f"{i}.py") for i in range(COMPILE_CHUNK + 14)])] == \
        [(COMPILE_CHUNK + 14) // 2] * 2


def test_compile_servers_start_ahead_one_per_core_and_are_used(tmp_path):
    """A build that will compile starts the servers while it plans; compiling then starts no other."""
    if not TARGET.host_can_compile:
        pytest.skip("the host Python is not 3.11")
    import time

    from lamina.oci.compress import workers
    from lamina.python import install

    install.stop_compile_servers()
    install.warm_compile_servers()
    deadline = time.monotonic() + 10
    while len(install._started) < workers() and time.monotonic() < deadline:
        time.sleep(0.01)
    started = list(install._started)
    assert len(started) == workers() and all(server.poll() is None for server in started)
    wheel = make_named_wheel(tmp_path, "alpha", 2 * install.COMPILE_CHUNK)
    install_wheel(wheel, "alpha", TARGET, tmp_path / "stage", compile_bytecode=False)
    install.compile_site_packages(tmp_path / "stage", TARGET)
    assert install._started == started
    site = tmp_path / "stage/opt/venv/lib/python3.11/site-packages"
    assert len(list(site.rglob("*.pyc"))) == 2 * install.COMPILE_CHUNK


def test_installer_processes_started_ahead_are_the_ones_used(tmp_path, monkeypatch):
    """A build that will install big wheels starts their installer processes while it plans (one per
    core at most); the installs then use those and start no other."""
    from lamina.oci.compress import workers
    from lamina.python import install

    install.stop_installers()
    install.warm_installers(workers() + 3)
    started = list(install._all_installers)
    assert len(started) == workers() and all(s.process.poll() is None for s in started)
    install.warm_installers(1)  # already there: nothing more
    assert install._all_installers == started
    monkeypatch.setattr(install, "IN_PROCESS_BELOW", 0)  # every wheel counts as big
    install.install_wheels([(make_wheel(tmp_path), "demo")], TARGET, tmp_path / "stage")
    assert install._all_installers == started
    assert (tmp_path / "stage/opt/venv/lib/python3.11/site-packages/demo/__init__.py").exists()
    install.stop_installers()
    assert all(s.process.poll() is not None for s in started)


def test_a_layer_fetches_the_wheel_its_caller_did_not(tmp_path):
    """Downloads can happen in the layer jobs, overlapping other layers' work: a wheel not handed to
    PythonLayers is fetched (and verified) into the store by the layer that needs it."""
    import hashlib

    from lamina.oci.store import BlobStore
    from lamina.python.layers import PythonLayers

    wheel = make_wheel(tmp_path)
    locked = LockedDist("demo", "1.0", wheel.as_uri(), hashlib.sha256(wheel.read_bytes()).hexdigest(), wheel.stat().st_size)
    store = BlobStore(tmp_path / "store")
    layers = PythonLayers(TARGET, {}, store.tmp_dir, store=store)
    try:
        paths = {e.path for e in layers.spec([locked]).entries()}
    finally:
        layers.cleanup()
    assert "opt/venv/lib/python3.11/site-packages/demo/__init__.py" in paths
    assert store.has(f"sha256:{locked.sha256}")


def test_venv_is_made_by_hand():
    entries = {e.path: e for e in venv_entries(TARGET)}
    cfg = entries["opt/venv/pyvenv.cfg"].data.decode()
    assert "home = /usr/bin\n" in cfg and "version = 3.11.2\n" in cfg
    assert entries["opt/venv/bin/python"].target == "/usr/bin/python3.11"


def test_wheel_modules_come_from_its_file_list(tmp_path):
    assert wheel_modules(make_wheel(tmp_path)) == {"demo", "demo_cli"}


def test_check_reports_missing_duplicate_conflicting_and_unused(tmp_path):
    code = tmp_path / "apps" / "svc"
    code.mkdir(parents=True)
    (code / "main.py").write_text("import os\nimport fastapi\nfrom sklearn import svm\nfrom apps.svc import x\n")
    (code / "requirements.txt").write_text("fastapi>=0.100\nnumpy==1.0\nrequests\n")
    declared = read_requirements(code / "requirements.txt")
    findings = check_service(
        "svc", [tmp_path / "apps"], declared,
        provided={"fastapi": "fastapi", "numpy": "numpy", "requests": "requests"},
        base_name="base-runtime:1", base_pins={"fastapi": "0.115.6", "numpy": "2.2.1"},
        own_dists={"requests": "requests"}, family={"sklearn": ("scikit-learn", "base-ml")},
    )
    by_code = {f.code: f for f in findings}
    missing = by_code["missing-import"]
    assert missing.level == ERROR and missing.where.endswith("main.py:3") and "scikit-learn" in missing.hint
    assert by_code["duplicate-requirement"].level == WARNING and by_code["duplicate-requirement"].where.endswith(":1")
    conflict = by_code["conflicting-pin"]
    assert conflict.level == ERROR and conflict.where.endswith(":2") and "numpy==2.2.1" in conflict.message
    assert by_code["unused-requirement"].level == NOTE and by_code["unused-requirement"].where.endswith(":3")
    assert len(findings) == 4


def test_imports_ignore_relative_and_find_nested(tmp_path):
    (tmp_path / "m.py").write_text("from . import x\ndef f():\n    import yaml.loader\n")
    assert [(s.module, s.line) for s in imports_in([tmp_path])] == [("yaml", 3)]


def test_a_local_wheel_weighs_what_its_file_does(tmp_path):
    """uv lists no size for find-links wheels: the file gives it, so layers do not depend on the index."""
    wheel = make_wheel(tmp_path)
    text = f"""
lock-version = "1.0"
[[packages]]
name = "demo"
version = "1.0"
wheels = [{{ url = "{wheel.as_uri()}", hashes = {{ sha256 = "ab" }} }}]
"""
    (only,) = parse_pylock(text, "test", TARGET)
    assert only.size == wheel.stat().st_size


@pytest.mark.parametrize("in_process_below", [0, 1 << 30], ids=["installer process", "in process"])
def test_installer_processes_install_as_lamina_does_and_send_errors_back(tmp_path, monkeypatch, in_process_below):
    """Big wheels go to installer processes, small ones are installed in lamina's process: the same tree
    either way, and a bad wheel fails with lamina's own error naming it."""
    import zipfile

    from lamina.errors import LaminaError
    from lamina.python import install

    monkeypatch.setattr(install, "IN_PROCESS_BELOW", in_process_below)
    staging = tmp_path / "stage"
    install.install_wheels([(make_wheel(tmp_path), "demo")], TARGET, staging)
    site = staging / "opt/venv/lib/python3.11/site-packages"
    assert (site / "demo/__init__.py").read_text() == "VALUE = 1\n"
    assert (site / "demo-1.0.dist-info/INSTALLER").read_text() == "lamina\n"

    bad = tmp_path / "bad" / "demo-1.0-py3-none-any.whl"
    bad.parent.mkdir()
    with zipfile.ZipFile(make_wheel(tmp_path)) as good, zipfile.ZipFile(bad, "w") as out:
        for item in good.infolist():
            data = good.read(item)
            out.writestr(item, b"VALUE = 2\n" if item.filename == "demo/__init__.py" else data)
    with pytest.raises(LaminaError, match="demo-1.0-py3-none-any.whl"):
        install.install_wheels([(bad, "demo")], TARGET, tmp_path / "stage2")
    install.stop_installers()


def deflated(wheel: Path, out: Path) -> Path:
    """``wheel`` with every member deflated (the helpers write stored members, as tests need nothing else)."""
    import zipfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item)
            item.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(item, data)
    return out


def test_isal_inflate_reads_what_zlib_reads_in_any_pieces(tmp_path, monkeypatch):
    """Installer processes unzip with ISA-L's inflate (:class:`IsalInflate`): the same bytes as zlib's,
    read whole or in small pieces (zipfile asks for at most N bytes at a time, and keeps the rest)."""
    import random
    import zipfile

    from isal import isal_zlib

    from lamina.python.install import IsalInflate

    rng = random.Random(7)
    big = "".join(f"def f{i}(x):\n    return x * {rng.randrange(10**6)}\n" for i in range(120_000)).encode()
    path = tmp_path / "w.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.py", big)
        zf.writestr("empty.py", b"")
    monkeypatch.setattr(zipfile, "zlib", IsalInflate())
    assert isinstance(zipfile.zlib.decompressobj(-15), type(isal_zlib.decompressobj(-15)))
    assert zipfile.zlib.Z_DEFAULT_COMPRESSION == -1  # the rest is zlib's
    with zipfile.ZipFile(path) as zf:
        assert zf.read("big.py") == big and zf.read("empty.py") == b""
        with zf.open("big.py") as member:
            pieces = iter(lambda: member.read(rng.choice([1, 100, 4096, 65536])), b"")
            assert b"".join(pieces) == big


def test_an_installer_process_writes_a_deflated_wheel_as_lamina_s_process_does(tmp_path, monkeypatch):
    """The same tree, byte for byte, from an installer process (ISA-L's inflate) and from lamina's own."""
    from lamina.python import install

    wheel = deflated(make_wheel(tmp_path), tmp_path / "deflated" / "demo-1.0-py3-none-any.whl")
    trees = []
    for below in (1 << 30, 0):
        monkeypatch.setattr(install, "IN_PROCESS_BELOW", below)
        staging = tmp_path / f"stage-{below}"
        install.install_wheels([(wheel, "demo")], TARGET, staging)
        trees.append({p.relative_to(staging).as_posix(): p.read_bytes() for p in sorted(staging.rglob("*"))
                      if p.is_file()})
    install.stop_installers()
    assert trees[0] == trees[1] and "opt/venv/lib/python3.11/site-packages/demo/__init__.py" in trees[0]


@pytest.mark.parametrize("made, wrong", [
    ("etc/cron.d/evil", "installing wrote /etc"),
    ("opt/other/x.py", "installing wrote /opt/other"),
    ("opt/venvx/x.py", "installing wrote /opt/venvx"),
    ("link", "installing made a symlink /opt/venv/lib/link"),
    ("dirlink", "installing made a symlink /opt/venv/dirlink"),
])
def test_what_an_install_staged_must_be_under_the_venv_and_no_symlink(tmp_path, made, wrong):
    """:func:`check_staged`, after every install: the venv and the folders above it, nothing else; no
    symlink anywhere (a symlinked folder is refused, not followed)."""
    import os

    from lamina.errors import UnsafePathError
    from lamina.python.safety import check_staged

    staging = tmp_path / "stage"
    site = staging / "opt/venv/lib/python3.11/site-packages/demo"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    check_staged(staging, "/opt/venv", "demo.whl")  # a clean install passes
    if made == "link":
        os.symlink("/etc/passwd", staging / "opt/venv/lib/link")
    elif made == "dirlink":
        os.symlink(tmp_path, staging / "opt/venv/dirlink")
    else:
        (staging / made).parent.mkdir(parents=True, exist_ok=True)
        (staging / made).write_text("x")
    with pytest.raises(UnsafePathError, match=f"demo.whl: {wrong}"):
        check_staged(staging, "/opt/venv", "demo.whl")
