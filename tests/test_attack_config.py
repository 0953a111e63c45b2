"""Configs that used to be silently wrong (issue 10, item 8) and shipped symlinks (item 2): each a clear error
naming the file, the line and the key, before any network."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_lamina
from lamina.config import load_config
from lamina.errors import ConfigError

pytestmark = pytest.mark.attack

SERVICES = """\
[project]
version = "1"
[images.base-runtime]
from = "scratch"
symlinks = {{ "/bin/sh" = "busybox" }}
[services]
glob = "apps/svc_*"
base = "base-runtime"
{extra}
"""


def service_project(root: Path, extra: str = "", folders: tuple[str, ...] = ("svc_forms",)) -> Path:
    for folder in folders:
        (root / "apps" / folder).mkdir(parents=True, exist_ok=True)
        (root / "apps" / folder / "main.py").write_text("app = None\n")
    (root / "libs").mkdir(exist_ok=True)
    (root / "libs" / "util.py").write_text("X = 1\n")
    path = root / "lamina.toml"
    path.write_text(SERVICES.format(extra=extra))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value)


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_two_service_folders_for_one_image_name_name_both(tmp_path):
    path = service_project(tmp_path, folders=("svc_forms", "svc-forms"))
    path.write_text(path.read_text().replace('glob = "apps/svc_*"', 'glob = "apps/svc*"'))
    message = error_of(path)
    assert "apps/svc-forms and apps/svc_forms both make the image 'svc-forms'" in message


def test_a_float_version_says_to_quote_it(tmp_path):
    path = service_project(tmp_path)
    path.write_text(path.read_text().replace('version = "1"', "version = 1.10"))
    message = error_of(path)
    assert f"lamina.toml:{line_of(path, 'version = 1.10')}: project.version" in message
    assert "1.10 reads as 1.1" in message and 'version = "1.10"' in message


def test_a_typo_in_from_names_the_key_and_the_close_image(tmp_path):
    path = tmp_path / "lamina.toml"
    path.write_text('[images.busybox]\nfrom = "scratch"\nsymlinks = { "/bin/sh" = "busybox" }\n'
                    '[images.hello]\nfrom = "busyboxx"\nsymlinks = { "/x" = "y" }\n')
    message = error_of(path)
    assert f"lamina.toml:{line_of(path, 'busyboxx')}: images.hello.from" in message
    assert "did you mean 'busybox'?" in message


def test_a_typo_in_a_service_base_names_the_key(tmp_path):
    path = service_project(tmp_path)
    path.write_text(path.read_text().replace('base = "base-runtime"', 'base = "base-runtme"'))
    message = error_of(path)
    assert "services.base" in message and "did you mean 'base-runtime'?" in message


def test_a_registry_image_with_a_tag_is_not_taken_for_a_typo(tmp_path):
    path = tmp_path / "lamina.toml"
    path.write_text('[images.python]\nfrom = "scratch"\nsymlinks = { "/x" = "y" }\n'
                    '[images.app]\nfrom = "python:3.12-slim"\nsymlinks = { "/x" = "y" }\n')
    assert load_config(path).images["app"].base == "python:3.12-slim"


def test_a_glob_matching_nothing_names_the_glob(tmp_path):
    path = service_project(tmp_path)
    path.write_text(path.read_text().replace('glob = "apps/svc_*"', 'glob = ["apps/svc_*", "services/*"]'))
    message = error_of(path)
    assert "'services/*' matches no folder" in message and "services.glob" in message


def test_an_unknown_table_is_reported_at_its_line(tmp_path):
    path = service_project(tmp_path, extra="\n\n[imgaes.api]\nfrom = \"scratch\"\n")
    message = error_of(path)
    assert f"lamina.toml:{line_of(path, '[imgaes.api]')}: imgaes: unknown key" in message
    assert "did you mean 'images'?" in message


def test_an_unknown_sub_table_of_an_image_is_reported_at_its_line(tmp_path):
    path = tmp_path / "lamina.toml"
    path.write_text('[images.a]\nfrom = "scratch"\n\n[images.a.healthchek]\ntest = "true"\n')
    message = error_of(path)
    assert f"lamina.toml:{line_of(path, 'healthchek')}: images.a.healthchek: unknown key" in message


def test_ship_with_an_absolute_path_is_a_config_error(tmp_path):
    path = service_project(tmp_path, extra='ship = ["/etc"]')
    message = error_of(path)
    assert "services.ship" in message and "'/etc' is an absolute path" in message


@pytest.mark.parametrize("target", ["/etc/shadow", "/etc/ssh"])
def test_a_shipped_symlink_to_a_host_path_is_refused(tmp_path, target):
    path = service_project(tmp_path, extra='ship = ["libs", "secrets"]')
    (tmp_path / "secrets").symlink_to(target)
    message = error_of(path)
    assert f"lamina.toml:{line_of(path, 'ship =')}: services.ship" in message
    assert f"is outside the project {tmp_path} (a symlink to {target})" in message


def test_a_service_folder_that_is_a_symlink_outside_the_project_is_refused(tmp_path):
    outside = tmp_path / "elsewhere" / "svc_leak"
    outside.mkdir(parents=True)
    (outside / "main.py").write_text("app = None\n")
    root = tmp_path / "proj"
    root.mkdir()
    path = service_project(root)
    (root / "apps" / "svc_leak").symlink_to(outside)
    assert "service folder" in error_of(path) and "outside the project" in error_of(path)


def test_a_copy_src_in_the_project_that_links_outside_is_refused(tmp_path):
    (tmp_path / "conf").symlink_to("/etc")
    path = tmp_path / "lamina.toml"
    path.write_text('[images.a]\nfrom = "scratch"\n[[images.a.copy]]\nsrc = "conf"\ndest = "/etc/app"\n')
    message = error_of(path)
    assert "images.a.copy.src" in message and "outside the project" in message


def test_a_symlink_inside_a_shipped_folder_is_kept_as_a_link_never_followed(tmp_path):
    from lamina.oci.tar import tree_entries

    path = service_project(tmp_path, extra='ship = ["libs"]')
    (tmp_path / "libs" / "shadow").symlink_to("/etc/shadow")
    spec = load_config(path).images["svc-forms"]
    libs = next(c for c in spec.copies if c.src.name == "libs")
    entries = {e.path: e for e in tree_entries(libs.src, libs.dest, exclude=libs.exclude)}
    link = entries["app/libs/shadow"]
    assert (link.kind, link.target, link.source) == ("symlink", "/etc/shadow", None)


def test_the_layer_budget_counts_every_step(tmp_path):
    """130 copy entries: refused naming the image, before anything is built (the Python step's budget
    alone let a 132-layer image through)."""
    (tmp_path / "files").mkdir()
    copies = []
    for i in range(130):
        (tmp_path / "files" / f"f{i}").write_text(str(i))
        copies.append(f'[[images.many.copy]]\nsrc = "files/f{i}"\ndest = "/f{i}"\n')
    (tmp_path / "lamina.toml").write_text('[images.many]\nfrom = "scratch"\n' + "".join(copies))
    result = run_lamina("build", "-o", f"oci:{tmp_path / 'out'}", cwd=tmp_path,
                        env={"LAMINA_STORE": str(tmp_path / "store")}, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "image 'many' would have 130 layers" in result.stderr and "budget of 100" in result.stderr
    assert not (tmp_path / "out").exists()
