"""Real monorepos, the parts that need no network: requirement files as pip reads them (hashes,
continuations, includes, markers, URLs), pyproject/Poetry dependencies, service kinds and entry points,
lamina check's precision, init's inference for each layout, and the ld.so.cache format (read back by
the host's own ldconfig)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lamina.config import load_config
from lamina.config.services import health_probe
from lamina.debian.ldcache import cache_bytes, ld_cache, libcmp, parse_alternatives, search_dirs, system_state_entries
from lamina.errors import ConfigError, LaminaError
from lamina.init import discover
from lamina.oci.store import BlobStore
from lamina.python.check import ERROR, NOTE, check_service, image_modules, project_modules
from lamina.python.entry import find_entry
from lamina.python.image import check_hashes
from lamina.python.requirements import hashed_lock, read_requirements
from lamina.python.resolve import LockedDist
from lamina.python.sources import _poetry_version, pyproject_requirements

FIXTURES = Path(__file__).parent / "fixtures"
SHA_A, SHA_B = "a" * 64, "b" * 64


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest / name, ignore=shutil.ignore_patterns("build", "lamina.toml", "lamina.lock"))
    return dest / name


# -- requirement files ---------------------------------------------------------------------------------


def test_pip_compile_output_with_hashes_and_continuations_is_a_lock(tmp_path):
    (tmp_path / "base.txt").write_text("idna==3.10 \\\n    --hash=sha256:" + SHA_A + "\n")
    (tmp_path / "c.txt").write_text("certifi<2030\n")
    req = tmp_path / "requirements.txt"
    req.write_text(
        "#\n# pip-compile --generate-hashes\n#\n--index-url https://pypi.org/simple\n-r base.txt\n-c c.txt\n"
        "aiofile==3.11.1 \\\n    --hash=sha256:" + SHA_A + " \\\n    --hash=sha256:" + SHA_B + "\n    # via -r in\n"
        "tomli==2.2.1 ; python_version < \"3.11\" \\\n    --hash=sha256:" + SHA_B + "\n")
    reqs = read_requirements(req)
    by_name = {r.name: r for r in reqs}
    assert by_name["aiofile"].hashes == (SHA_A, SHA_B) and by_name["aiofile"].pinned == "3.11.1"
    assert by_name["aiofile"].line == 7 and by_name["idna"].file.name == "base.txt"
    assert by_name["certifi"].constraint and not by_name["idna"].constraint
    assert str(by_name["tomli"].requirement.marker) == 'python_version < "3.11"'
    lock = hashed_lock(req)
    assert lock is not None and {r.name for r in lock} == {"idna", "aiofile", "tomli"}


def test_direct_urls_and_per_line_options_are_read(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text("demo @ https://example.com/demo-1.0-py3-none-any.whl#sha256=" + SHA_A + "\n"
                   "flask>=3 --config-settings=x=y\n")
    names = [(r.name, str(r.requirement.url or r.requirement.specifier)) for r in read_requirements(req)]
    assert names == [("demo", "https://example.com/demo-1.0-py3-none-any.whl#sha256=" + SHA_A), ("flask", ">=3")]
    assert hashed_lock(req) is None


def test_a_file_with_some_hashes_missing_is_refused_as_pip_does(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text(f"a==1 --hash=sha256:{SHA_A}\nb==2\n")
    with pytest.raises(ConfigError, match=r"r.txt:2: b==2 has no --hash"):
        hashed_lock(req)


def test_a_wheel_whose_hash_the_file_does_not_list_is_an_error_naming_the_line(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text(f"demo==1.0 \\\n  --hash=sha256:{SHA_A}\n")
    lock = hashed_lock(req)
    good = LockedDist("demo", "1.0", "https://x/demo-1.0-py3-none-any.whl", SHA_A)
    check_hashes("svc", lock, [good], exact=True)
    with pytest.raises(LaminaError, match=r"r.txt:1: demo-1.0-py3-none-any.whl .* has sha256 b+, which is not among"):
        check_hashes("svc", lock, [LockedDist("demo", "1.0", good.url, SHA_B)], exact=True)
    with pytest.raises(LaminaError, match="extra==2 was added"):
        check_hashes("svc", lock, [good, LockedDist("extra", "2", "https://x/e.whl", SHA_B)], exact=True)


def test_pyproject_dependencies_with_extras_and_poetry_tables(tmp_path):
    pep621 = tmp_path / "pyproject.toml"
    pep621.write_text('[project]\nname = "svc"\ndependencies = ["flask>=3"]\n'
                      '[project.optional-dependencies]\nserver = ["gunicorn>=22"]\nall = ["svc[server]"]\n')
    assert pyproject_requirements(pep621, ("server", "all")) == ["flask>=3", "gunicorn>=22"]
    with pytest.raises(ConfigError, match="no extra 'nope'"):
        pyproject_requirements(pep621, ("nope",))
    poetry = FIXTURES / "layout-poetry" / "pyproject.toml"
    assert pyproject_requirements(poetry) == ["flask>=3.0,<4", "gunicorn>=22"]
    assert pyproject_requirements(poetry, ("cache",))[-1] == "redis>=5.0,<6"
    assert _poetry_version("^0.2.3") == ">=0.2.3,<0.3" and _poetry_version("~1.2") == ">=1.2,<1.3"


# -- services: kinds, entry points, health checks, config ------------------------------------------------


def test_each_service_kind_gets_its_command_and_health_check(tmp_path):
    root = copy_fixture("monorepo-kinds", tmp_path)
    (root / "lamina.toml").write_text('[project]\nversion = "1"\n[images.python]\nfrom = "debian:bookworm"\n'
                                      'packages = ["python3"]\n[services]\nglob = "services/*"\nbase = "python"\n'
                                      'ship = ["libs/shared_lib"]\n[services.tcp_echo]\nport = 9347\nhealth = "tcp"\n'
                                      '[services.web_flask]\nport = 8731\nworkdir = "services/web_flask"\n'
                                      'env = { MODE = "prod" }\nuser = "2000:2000"\n'
                                      '[[services.web_flask.copy]]\nsrc = "libs/shared_lib/pyproject.toml"\n'
                                      'dest = "/etc/shared.toml"\n')
    config = load_config(root / "lamina.toml")
    entries = {name: find_entry(spec.service) for name, spec in config.images.items() if spec.service}
    assert entries["web-flask"].command == ["python", "-m", "gunicorn", "--bind", "0.0.0.0:8731", "--access-logfile",
                                            "-", "web_flask:create_app()"]
    assert entries["grpc-echo"].kind == "grpc" and entries["grpc-echo"].health == "grpc"
    assert entries["grpc-echo"].command == ["python", "-m", "services.grpc_echo.server"]
    assert entries["worker"].command == ["python", "-m", "services.worker.worker"] and entries["worker"].health == "none"
    flask = config.images["web-flask"]
    assert flask.run.workdir == "/app/services/web_flask" and flask.run.env["MODE"] == "prod"
    assert flask.run.user == "2000:2000"
    assert flask.run.env["PYTHONPATH"] == "/app:/app/libs/shared_lib/src:/app/services/web_flask/src"
    assert [(c.src.name, c.dest) for c in flask.copies][-1] == ("pyproject.toml", "/etc/shared.toml")
    assert [s.kind for s in flask.sources] == ["pyproject"]
    assert config.images["tcp-echo"].run.healthcheck.test[-1] == health_probe("tcp", 9347)
    assert config.images["grpc-echo"].requirements[0].name == "requirements.txt"
    # the code layer leaves the tests out
    assert "tests" in flask.copies[1].exclude


def test_a_glob_never_matches_lamina_outputs(tmp_path):
    (tmp_path / "build" / "oci").mkdir(parents=True)
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / "lamina.toml").write_text('[images.py]\nfrom = "debian:bookworm"\n[services]\nglob = "*"\nbase = "py"\n')
    assert [n for n, s in load_config(tmp_path / "lamina.toml").images.items() if s.service] == ["svc"]


def test_an_exec_health_check_runs_the_command_and_none_declares_none(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "lamina.toml").write_text('[services]\nglob = ["a", "b"]\ncommand = ["python", "-m", "w"]\n'
                                          '[services.a]\nhealth = ["python", "-m", "w.ping"]\n[services.b]\nhealth = "none"\n')
    images = load_config(tmp_path / "lamina.toml").images
    assert images["a"].run.healthcheck.test == ["CMD", "python", "-m", "w.ping"]
    assert images["a"].run.labels["dev.lamina.health"] == 'exec ["python", "-m", "w.ping"]'
    assert images["b"].run.healthcheck.test == ["NONE"]


def test_health_settings_are_checked(tmp_path):
    (tmp_path / "svc").mkdir()
    (tmp_path / "lamina.toml").write_text('[services]\nglob = "svc"\nhealth = "udp"\n')
    with pytest.raises(ConfigError, match=r"lamina.toml:3: services.health: expected an HTTP path, \"tcp\""):
        load_config(tmp_path / "lamina.toml")


# -- lamina check ---------------------------------------------------------------------------------------


def _check(root: Path, config_text: str, name: str) -> list:
    (root / "lamina.toml").write_text(config_text)
    spec = load_config(root / "lamina.toml").images[name]
    service = spec.service
    return check_service(name, service.code, [], provided={"flask": "flask", "gunicorn": "gunicorn"}, base_name="b",
                         base_pins={}, own_dists={}, family={}, local=image_modules(service),
                         repo=project_modules(service.root, service.tests), skip=service.tests,
                         python_path=service.python_path)


def test_check_is_quiet_on_optional_and_type_checking_imports_and_tests(tmp_path):
    root = copy_fixture("monorepo-kinds", tmp_path)
    findings = _check(root, '[services]\nglob = "services/*"\nship = ["libs/shared_lib"]\n', "web-flask")
    assert [f.level for f in findings] == [NOTE]  # mypy_extensions under TYPE_CHECKING; pytest only in tests/
    assert findings[0].code == "optional-import"
    tcp = _check(root, '[services]\nglob = "services/*"\nship = ["libs/shared_lib"]\n', "tcp-echo")
    assert {f.message.split("'")[1] for f in tcp} == {"mypy_extensions", "uvloop"} and {f.level for f in tcp} == {NOTE}


def test_check_reports_first_party_code_the_image_cannot_import(tmp_path):
    root = copy_fixture("monorepo-kinds", tmp_path)
    # shared_lib not shipped: the import in web_flask is first-party code outside what the image has
    findings = [f for f in _check(root, '[services]\nglob = "services/*"\n', "web-flask") if f.level == ERROR]
    assert len(findings) == 1 and findings[0].code == "not-shipped"
    assert findings[0].where.endswith("services/web_flask/src/web_flask/__init__.py:6")
    assert "libs/shared_lib/src/shared_lib" in findings[0].message
    # shipped as libs/ (not its project folder): the src layout is not on sys.path, so the same error
    findings = [f for f in _check(root, '[services]\nglob = "services/*"\nship = ["libs"]\n', "web-flask")
                if f.level == ERROR]
    assert [f.code for f in findings] == ["not-shipped"] and "/app/libs" not in findings[0].message.split("sys.path")[0]


def test_one_finding_per_module_per_file(tmp_path):
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "main.py").write_text("import requests\nimport requests.adapters\nfrom requests import get\n")
    findings = _check(tmp_path, '[services]\nglob = "svc"\ncommand = ["python", "-m", "svc.main"]\n', "svc")
    assert [(f.code, f.where.rsplit("/", 1)[-1]) for f in findings] == [("missing-import", "main.py:1")]


# -- init -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture, kind, expected", [
    ("monorepo-kinds", "services/*", {
        "grpc_echo": ("grpc", "requirements.txt", 50651), "tcp_echo": ("command", None, 9347),
        "web_flask": ("wsgi", "pyproject.toml", 8731), "worker": ("command", None, None)}),
    ("layout-src", "src/*", {"api": ("asgi", "requirements.txt", 8741), "jobs": ("command", None, None)}),
    ("layout-toplevel", "top-level packages", {"api": ("wsgi", "requirements.txt", 8742), "mailer": ("command", None, None)}),
    ("layout-uv", "uv workspace", {"api": ("asgi", "uv.lock", 8743)}),
    ("layout-poetry", "Poetry project", {"layout-poetry": ("wsgi", "pyproject.toml", 8744)}),
])
def test_init_infers_each_layout(tmp_path, fixture, kind, expected):
    root = copy_fixture(fixture, tmp_path)
    layout = discover(root, store=BlobStore(tmp_path / "store"))
    assert layout.kind == kind
    found = {(s.folder.name if s.folder != root else fixture): (s.entry.kind, s.source, s.port) for s in layout.services}
    assert found == expected


def test_init_ships_shared_code_and_writes_a_config_that_reads(tmp_path):
    from lamina.init import init_project

    for fixture, ship in (("monorepo-kinds", ["libs/shared_lib"]), ("layout-toplevel", ["common"]),
                          ("layout-uv", ["packages/core"])):
        root = copy_fixture(fixture, tmp_path)
        path, layout = init_project(root, store=BlobStore(tmp_path / "store"))
        assert layout.ship == ship
        config = load_config(path)
        assert all(spec.service for name, spec in config.images.items() if name != "python")


def test_init_puts_what_every_service_shares_in_base_runtime_and_ml_stacks_on_base_ml(tmp_path):
    for name, reqs in (("api", "flask==3.1.0\nrequests==2.32.3\n"), ("jobs", "flask==3.1.0\nredis\n"),
                       ("ranker", "flask==3.1.0\ntorch==2.5.1\n")):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "requirements.txt").write_text(reqs)
        (tmp_path / "services" / name / "main.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    layout = discover(tmp_path, store=BlobStore(tmp_path / "store"))
    assert layout.shared == ["flask==3.1.0"]
    assert {s.folder.name: s.base for s in layout.services} == {"api": "base-runtime", "jobs": "base-runtime",
                                                                "ranker": "base-ml"}
    from lamina.init import render

    text = render(tmp_path, layout, registry=None, owner=None, version="1", base_version=None)
    (tmp_path / "lamina.toml").write_text(text)
    images = load_config(tmp_path / "lamina.toml").images
    assert images["base-runtime"].python_packages == ("flask==3.1.0",) and images["ranker"].base == "base-ml"


def test_init_writes_a_config_even_when_it_finds_no_service(tmp_path):
    from lamina.init import init_project

    (tmp_path / "notes.txt").write_text("no code here\n")
    path, layout = init_project(tmp_path, store=BlobStore(tmp_path / "store"))
    assert layout.services == [] and "no service folder found" in path.read_text()
    assert list(load_config(path).images) == ["python"]


# -- Debian: ld.so.cache and alternatives ------------------------------------------------------------------


def test_libcmp_orders_digits_numerically_and_after_letters():
    assert libcmp("libz.so.10", "libz.so.9") > 0 and libcmp("libz.so.1", "libz.so.a") > 0
    assert libcmp("liba.so", "liba.so.1") < 0 and libcmp("libc.so.6", "libc.so.6") == 0


@pytest.mark.skipif(not Path("/sbin/ldconfig").exists(), reason="needs the host's ldconfig to read the cache back")
def test_the_cache_is_read_by_glibcs_ldconfig(tmp_path):
    libraries = {
        "usr/lib/x86_64-linux-gnu/libssl.so.3": {"soname": "libssl.so.3", "machine": 62},
        "usr/lib/x86_64-linux-gnu/libz.so.1.2.13": {"soname": "libz.so.1", "machine": 62},
        "usr/lib/x86_64-linux-gnu/libz.so.1": {"link": "libz.so.1.2.13"},
        "usr/lib/x86_64-linux-gnu/blas/libblas.so.3": {"soname": "libblas.so.3", "machine": 62},
    }
    facts = [{"libraries": libraries, "conf": [], "present": [],
              "alternatives": parse_alternatives(LIBBLAS3_POSTINST)}]
    entries = {e.path: e for e in system_state_entries(facts, "amd64")}
    assert entries["usr/lib/x86_64-linux-gnu/libblas.so.3"].target == "/etc/alternatives/libblas.so.3-x86_64-linux-gnu"
    assert entries["etc/alternatives/libblas.so.3-x86_64-linux-gnu"].target == "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"
    cache = tmp_path / "ld.so.cache"
    cache.write_bytes(entries["etc/ld.so.cache"].data)
    out = subprocess.run(["/sbin/ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "3 libs found in cache `%s'" % cache
    assert "\tlibz.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libz.so.1" in out
    assert "\tlibblas.so.3 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libblas.so.3" in out
    arm = ld_cache({"usr/lib/aarch64-linux-gnu/libssl.so.3": {"soname": "libssl.so.3", "machine": 183}},
                   search_dirs({}, "arm64"))
    cache.write_bytes(arm)
    out = subprocess.run(["/sbin/ldconfig", "-p", "-C", str(cache)], capture_output=True, text=True, check=True).stdout
    assert "libssl.so.3 (libc6,AArch64) => /usr/lib/aarch64-linux-gnu/libssl.so.3" in out
    assert cache_bytes({}).startswith(b"glibc-ld.so.cache1.1")


LIBBLAS3_POSTINST = """#!/bin/sh
set -e
if [ "$1" = "configure" ]; then
  update-alternatives --install /usr/lib/x86_64-linux-gnu/libblas.so.3 \\
                      libblas.so.3-x86_64-linux-gnu \\
                      /usr/lib/x86_64-linux-gnu/blas/libblas.so.3 10
  update-alternatives --install /usr/bin/x x-name $DIR/x 5
fi
"""
