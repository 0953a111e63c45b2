"""Automated base updates: outdated, update (and base versions), the rebuild graph, rebase, the CI export.

The family here is the seed's shape on a static busybox with its wheels in a local find-links folder
(tests/update_project.py): every test but the Debian one runs offline, against a real loopback registry.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import archives_unreachable
from helpers import lamina
from registry_servers import unique_repo
from projects import make_hello_project
from update_project import ML_SERVICES, make_update_project, make_wheel

from lamina.errors import ConfigError
from lamina.updates.versions import next_version, set_key


# -- versions and the lamina.toml line edit ------------------------------------------------------------


@pytest.mark.parametrize(("current", "scheme", "expected"), [
    ("v1.0.1", "patch", "v1.0.2"), ("v1.0.9", "patch", "v1.0.10"), ("v1.0.1", "minor", "v1.1.0"),
    ("v1.4.1", "major", "v2.0.0"), ("1.2", "patch", "1.2.1"), ("v1.0.1-rc1", "patch", "v1.0.2"),
    ("v2026.01.02", "date", "v2026.11.29"), ("v2026.11.29", "date", "v2026.11.29.1"),
    ("v2026.11.29.1", "date", "v2026.11.29.2"),
])
def test_next_version_follows_the_scheme(current, scheme, expected):
    assert next_version(current, scheme, today=dt.date(2026, 11, 29)) == expected


def test_next_version_refuses_a_version_without_a_number():
    with pytest.raises(ConfigError, match="no number"):
        next_version("latest")


TOML = """\
# top comment
[project]
base_version = "v1.0.1"   # BASE_VERSION: keep this comment

[images.base-ml]   # the ML base
from = "base-runtime"
requirements = [
    "libs/requirements-ml.txt",
]

# the services
[services]
glob = "apps/svc_*"
"""


def test_set_key_rewrites_only_the_value_and_keeps_every_comment():
    text = set_key(TOML, "project", "base_version", "v1.0.2")
    assert text == TOML.replace('"v1.0.1"', '"v1.0.2"')


def test_set_key_adds_a_line_at_the_end_of_the_table_and_nothing_else():
    text = set_key(TOML, "images.base-ml", "base_version", "v1.0.2")
    added = [line for line in text.splitlines() if line not in TOML.splitlines()]
    assert added == ['base_version = "v1.0.2"']
    assert text.index('base_version = "v1.0.2"') < text.index("# the services")
    assert text.replace('base_version = "v1.0.2"\n', "", 1) == TOML


def test_set_key_appends_a_missing_table_and_keeps_crlf():
    text = set_key(TOML.replace("\n", "\r\n"), "images.base-runtime", "base_version", "v1.0.2")
    assert text.endswith('[images.base-runtime]\nbase_version = "v1.0.2"\n')
    changed = set_key(TOML.replace("\n", "\r\n"), "project", "base_version", "v1.0.2")
    assert changed == TOML.replace("\n", "\r\n").replace('"v1.0.1"', '"v1.0.2"')


def test_set_key_refuses_a_form_it_does_not_edit():
    inline = '[images]\nbase-ml = { from = "base-runtime" }\n'
    with pytest.raises(ConfigError, match="by hand"):
        set_key(inline, "images.base-ml", "base_version", "v1.0.2")


# -- the family: outdated → update → plan → build → push ------------------------------------------------


def storage_blobs(registry) -> dict[str, int]:
    """Every blob in the registry's storage directory (layers, configs and manifests) and its size."""
    root = registry.storage / "docker/registry/v2/blobs/sha256"
    return {p.parent.name: p.stat().st_size for p in root.glob("*/*/data")} if root.is_dir() else {}


def digests(summary: dict) -> dict[str, str]:
    return {i["name"]: i["digest"] for i in summary["images"]}


def run_json(root: Path, store: Path, *args: str) -> dict:
    return json.loads(lamina(root, store, *args, "--json").stdout)


@pytest.mark.slow
def test_update_moves_base_ml_and_the_ml_services_only_and_the_plan_is_what_the_build_does(tmp_path, registry):
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    make_update_project(root, registry=registry.host, owner=unique_repo("harkon"))
    first = run_json(root, store, "build", "--push", "-o", "oci:build/oci")
    original_toml = (root / "lamina.toml").read_text()

    # a newer version in the index: one the specifier allows, one it does not
    make_wheel(root / "wheels", "mllib", "1.1")
    make_wheel(root / "wheels", "mllib", "2.0")
    outdated = run_json(root, store, "outdated")["outdated"]
    assert [(o["image"], o["name"], o["current"], o["wanted"], o["latest"]) for o in outdated] == [
        ("base-ml", "mllib", "1.0", "1.1", "2.0")]

    update = run_json(root, store, "update")
    assert [(m["image"], m["name"], m["old"], m["new"]) for m in update["moved"]] == [("base-ml", "mllib", "1.0", "1.1")]
    assert update["changed"] == ["base-ml", *ML_SERVICES]
    assert [(v["table"], v["old"], v["new"]) for v in update["versions"]] == [("images.base-ml", None, "v1.0.2")]
    toml = (root / "lamina.toml").read_text()
    assert [line for line in toml.splitlines() if line not in original_toml.splitlines()] == ['base_version = "v1.0.2"']
    assert "# BASE_VERSION: the bases' tag" in toml  # comments kept
    assert 'name = "mllib", version = "1.1"' in (root / "lamina.lock").read_text()

    # the rebuild graph, before any work: one layer, for the reason the update gave
    plan = run_json(root, store, "build", "--dry-run")
    assert plan["layers_to_build"] == 1
    changes = {i["name"]: i["changes"] for i in plan["images"]}
    assert sorted(n for n, c in changes.items() if c) == sorted(["base-ml", *ML_SERVICES])
    [layer] = [layer for i in plan["images"] for layer in i["layers"] if layer["build"]]
    assert layer["why"] == ["mllib 1.0 → 1.1"]

    # what the build then does: exactly that layer; the other images keep their digests
    built = run_json(root, store, "build", "-o", "oci:build/oci")
    assert sum(i["built_layers"] for i in built["images"]) == 1
    before, after = digests(first), digests(built)
    unchanged = {n for n in before if before[n] == after[n]}
    assert unchanged == {"python", "base-runtime", "svc-forms", "svc-ingestion"}
    assert {i["name"]: i["digest"] for i in plan["images"] if i["digest"]} == {n: after[n] for n in unchanged}

    # the push the plan predicts, byte for byte, against the registry's storage
    push_plan = run_json(root, store, "plan", "--push")["push"]
    assert push_plan["exact"]
    assert {t["image"]: t["digest"] for t in push_plan["targets"]} == after
    stored = storage_blobs(registry)
    # the plan counts images, not what a push attaches (SBOMs) or the layer cache's index it updates
    pushed = run_json(root, store, "build", "--push", "--no-sbom", "--no-remote-cache")
    grown = {d: size for d, size in storage_blobs(registry).items() if d not in stored}
    assert sum(grown.values()) == push_plan["upload_bytes"] + push_plan["manifest_bytes"]
    assert sum(p["bytes_uploaded"] for p in pushed["pushed"]) == push_plan["upload_bytes"]
    predicted = {d: o for t in push_plan["targets"] for d, o in t["blobs"].items() if o == "uploaded"}
    actual = {d: o for p in pushed["pushed"] for d, o in p["blobs"].items() if o == "uploaded"}
    assert predicted == actual
    targets = {p["target"].rsplit("/", 1)[-1]: p for p in pushed["pushed"]}
    assert targets["base-ml:v1.0.2"]["digest"] == after["base-ml"]
    for service in ("svc-forms", "svc-ingestion"):  # the same manifest: nothing sent
        assert set(targets[f"{service}:1.0.0"]["blobs"].values()) == {"exists"}


def test_update_of_a_package_moves_only_it_and_a_pin_holds(tmp_path):
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    make_update_project(root, ml_requirement="mllib>=1.0,<2\nextralib>=1.0")
    make_wheel(root / "wheels", "extralib", "1.0")
    lamina(root, store, "lock")
    for name in ("corelib", "mllib", "extralib"):  # requirements-base.txt pins corelib==1.0
        make_wheel(root / "wheels", name, "1.1")
    outdated = run_json(root, store, "outdated")["outdated"]
    assert sorted((o["name"], o["wanted"], o["latest"]) for o in outdated) == [
        ("corelib", None, "1.1"), ("extralib", "1.1", "1.1"), ("mllib", "1.1", "1.1")]
    update = run_json(root, store, "update", "corelib")
    assert update["asked"] == ["base-runtime"] and update["moved"] == [] and update["versions"] == []
    update = run_json(root, store, "update", "mllib")
    assert update["asked"] == ["base-ml"]
    assert [(m["name"], m["old"], m["new"]) for m in update["moved"]] == [("mllib", "1.0", "1.1")]  # not extralib
    assert [(v["table"], v["new"]) for v in update["versions"]] == [("images.base-ml", "v1.0.2")]


# -- Debian ---------------------------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.slow
def test_an_older_debian_version_in_the_lock_is_reported_against_the_real_suite(tmp_path):
    if (problem := archives_unreachable()) is not None:
        pytest.skip(f"the Debian archive cannot be reached ({problem})")
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    (root / "lamina.toml").write_text('[project]\nversion = "1"\n\n[images.os]\nfrom = "debian:bookworm"\n'
                                      'packages = ["tzdata"]\n')
    lamina(root, store, "lock")
    lock = (root / "lamina.lock").read_text()
    current = json.loads(lamina(root, store, "outdated", "--kind", "debian", "--json").stdout)
    assert current["outdated"] == []
    assert current["releases"]["bookworm"].startswith("12.")
    locked = next(line for line in lock.splitlines() if 'name = "tzdata"' in line)
    version = locked.split('version = "', 1)[1].split('"', 1)[0]
    (root / "lamina.lock").write_text(lock.replace(f'version = "{version}"', 'version = "2021a-1+deb11u1"', 1))
    report = json.loads(lamina(root, store, "outdated", "--kind", "debian", "--json").stdout)
    [item] = report["outdated"]
    assert (item["image"], item["name"], item["current"]) == ("os", "tzdata", "2021a-1+deb11u1")
    assert item["latest"] == item["wanted"] or item["note"]
    assert item["suite"].startswith("bookworm") and item["security"] == item["suite"].endswith("-security")
    text = lamina(root, store, "outdated", "--kind", "debian").stderr
    assert "tzdata" in text and "Debian bookworm is at 12." in text


# -- rebase ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rebase_gives_the_digest_of_a_full_rebuild_and_refuses_another_python_minor(tmp_path, registry):
    owner = unique_repo("harkon")
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    make_update_project(root, registry=registry.host, owner=owner, base_requirement="corelib>=1.0")
    lamina(root, store, "build", "--push")
    make_wheel(root / "wheels", "corelib", "1.1")
    update = run_json(root, store, "update", "base-runtime")
    assert {v["table"]: v["new"] for v in update["versions"]} == {"images.base-runtime": "v1.0.2",
                                                                   "images.base-ml": "v1.0.2"}
    lamina(root, store, "build", "--push", "base-runtime")
    mark = registry.mark()
    rebased = run_json(root, store, "rebase", "svc-forms", "--onto", "base-runtime", "--tag", "1.0.0-rebased")
    assert rebased["new_base"] == f"{registry.host}/{owner}/base-runtime:v1.0.2"
    assert rebased["python"] == "3.11"
    uploads = registry.count(mark, "PUT", r"/blobs/uploads/")
    assert uploads == 1  # the new config only: the layers are mounted or already there
    rebuilt = digests(run_json(root, store, "build", "--push", "svc-forms"))
    assert rebased["digest"] == rebuilt["svc-forms"]

    other_root = tmp_path / "py312"
    other_root.mkdir()
    other = unique_repo("py312")
    make_update_project(other_root, registry=registry.host, owner=other, python="3.12.1")
    lamina(other_root, store, "build", "--push", "base-runtime")
    refused = lamina(root, store, "rebase", "svc-forms", "--onto", f"{registry.host}/{other}/base-runtime:v1.0.1",
                     check=False)
    assert refused.returncode != 0
    assert "runs Python 3.12, but the image was built for Python 3.11" in refused.stderr


# -- the CI export ------------------------------------------------------------------------------------------


SCHEMAS = {".github/workflows/lamina-update.yml": "vendor.github-workflows",
           ".gitlab/lamina-update.gitlab-ci.yml": "vendor.gitlab-ci", "renovate.json": "vendor.renovate"}


def check_jsonschema(path: Path, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True)


def test_export_ci_writes_files_that_pass_their_schemas(tmp_path):
    root, store = tmp_path / "repo", tmp_path / "store"
    (root / ".git").mkdir(parents=True)  # the repository's root; the project is in a folder of it
    make_update_project(root / "deploy")
    lamina(root / "deploy", store, "export", "ci")
    for rel, schema in SCHEMAS.items():
        result = check_jsonschema(root / rel, schema)
        assert result.returncode == 0, f"{rel}: {result.stdout}{result.stderr}"
    from ruamel.yaml import YAML  # check-jsonschema's YAML parser

    workflow = YAML(typ="safe").load((root / ".github/workflows/lamina-update.yml").read_text())
    assert workflow["on"]["schedule"] == [{"cron": "17 3 * * *"}]
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["update"]["steps"])
    order = ["lamina outdated", "lamina update", "lamina plan", "--locked\n", "lamina test", "--locked --push",
             "pr create"]
    assert [runs.index(word) for word in order] == sorted(runs.index(word) for word in order)
    assert "deploy/lamina.toml" in runs or "LAMINA_CONFIG" in runs
    assert workflow["jobs"]["update"]["env"]["LAMINA_CONFIG"] == "deploy/lamina.toml"
    job = YAML(typ="safe").load((root / ".gitlab/lamina-update.gitlab-ci.yml").read_text())["lamina-update"]
    assert job["rules"][0]["if"] == '$CI_PIPELINE_SOURCE == "schedule"'
    renovate = json.loads((root / "renovate.json").read_text())
    assert renovate["postUpgradeTasks"]["commands"] == ["lamina lock --config deploy/lamina.toml"]
    assert lamina(root / "deploy", store, "export", "ci", "--check").returncode == 0


def test_the_schema_check_fails_on_a_broken_workflow(tmp_path):
    root, store = tmp_path / "repo", tmp_path / "store"
    root.mkdir()
    make_update_project(root)
    lamina(root, store, "export", "ci")
    workflow = root / ".github/workflows/lamina-update.yml"
    workflow.write_text(workflow.read_text().replace("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"))
    assert check_jsonschema(workflow, SCHEMAS[".github/workflows/lamina-update.yml"]).returncode != 0
    renovate = root / "renovate.json"
    renovate.write_text(renovate.read_text().replace('"enabled": true', '"enabled": "yes"'))
    assert check_jsonschema(renovate, "vendor.renovate").returncode != 0
    stale = lamina(root, store, "export", "ci", "--check", check=False)
    assert stale.returncode == 1 and "stale" in stale.stderr



def test_outdated_names_a_pulled_base_whose_tag_moved(tmp_path, registry):
    owner = unique_repo("bases")
    base_root, app_root, store = tmp_path / "base", tmp_path / "app", tmp_path / "store"
    base_root.mkdir(), app_root.mkdir()
    make_hello_project(base_root)
    push = ("--push", "--registry", registry.host, "--owner", owner)
    first = run_json(base_root, store, "build", "busybox", *push)["pushed"][0]["digest"]
    make_hello_project(app_root, base=f"{registry.host}/{owner}/busybox:1.0")
    lamina(app_root, store, "build", "hello")
    assert run_json(app_root, store, "outdated", "--kind", "base")["outdated"] == []
    (base_root / "rootfs" / "etc").mkdir()
    (base_root / "rootfs" / "etc" / "motd").write_text("a new base\n")
    second = run_json(base_root, store, "build", "busybox", *push)["pushed"][0]["digest"]
    assert second != first
    [item] = run_json(app_root, store, "outdated", "--kind", "base")["outdated"]
    assert (item["image"], item["name"], item["current"], item["wanted"]) == (
        "hello", f"{registry.host}/{owner}/busybox:1.0", first, second)


def test_a_python_update_is_a_security_update_when_its_version_fixes_an_advisory():
    from lamina.updates.outdated import _fixed

    advisories = [{"id": "GHSA-1", "fixed_in": ["3.1.6"]}, {"id": "PYSEC-2", "fixed_in": ["4.0.0"]}]
    assert _fixed(advisories, "3.1.6") == ["GHSA-1"]
    assert _fixed(advisories, "4.1") == ["GHSA-1", "PYSEC-2"]
    assert _fixed(advisories, "3.1.5") == [] and _fixed(advisories, None) == []


def test_update_of_a_name_that_is_neither_an_image_nor_a_locked_package_fails(tmp_path):
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    make_update_project(root)
    lamina(root, store, "lock")
    result = lamina(root, store, "update", "mlib", check=False)
    assert result.returncode == 2 and "no image is named 'mlib'" in result.stderr


def test_the_plan_names_the_files_that_changed_and_the_build_builds_only_that_layer(tmp_path):
    root, store = tmp_path / "project", tmp_path / "store"
    root.mkdir()
    make_update_project(root)
    before = digests(run_json(root, store, "build"))
    app = root / "apps" / "svc_forms" / "app.py"
    app.write_text(app.read_text() + "# changed\n")
    (root / "apps" / "svc_forms" / "forms.py").write_text("FORMS = []\n")
    plan = run_json(root, store, "plan")
    assert [i["name"] for i in plan["images"] if i["changes"]] == ["svc-forms"]
    [layer] = [layer for i in plan["images"] for layer in i["layers"] if layer["build"]]
    assert layer["why"] == ["files of apps/svc_forms: app/apps/svc_forms/app.py changed, +app/apps/svc_forms/forms.py"]
    after = run_json(root, store, "build")
    assert sum(i["built_layers"] for i in after["images"]) == plan["layers_to_build"] == 1
    assert {n for n, d in digests(after).items() if d != before[n]} == {"svc-forms"}


def test_update_moves_a_pinned_base_to_the_digest_its_tag_names_now(tmp_path, registry):
    owner = unique_repo("bases")
    base_root, app_root, store = tmp_path / "base", tmp_path / "app", tmp_path / "store"
    base_root.mkdir(), app_root.mkdir()
    make_hello_project(base_root)
    push = ("--push", "--registry", registry.host, "--owner", owner)
    first = run_json(base_root, store, "build", "busybox", *push)["pushed"][0]["digest"]
    make_hello_project(app_root, base=f"{registry.host}/{owner}/busybox:1.0@{first}")
    (base_root / "rootfs" / "etc").mkdir()
    (base_root / "rootfs" / "etc" / "motd").write_text("a new base\n")
    second = run_json(base_root, store, "build", "busybox", *push)["pushed"][0]["digest"]
    toml = (app_root / "lamina.toml").read_text()
    update = run_json(app_root, store, "update", "hello")
    assert [(m["image"], m["kind"], m["old"], m["new"]) for m in update["moved"]] == [("hello", "base", first, second)]
    new_toml = (app_root / "lamina.toml").read_text()
    added = [line for line in new_toml.splitlines() if line not in toml.splitlines()]
    assert added == [f'from = "{registry.host}/{owner}/busybox:1.0@{second}"', 'base_version = "1.0.1"']
    assert len(new_toml.splitlines()) == len(toml.splitlines()) + 1
    assert [(v["table"], v["new"]) for v in update["versions"]] == [("images.hello", "1.0.1")]  # hello is no service
    assert run_json(app_root, store, "outdated", "--kind", "base")["outdated"] == []
