"""lamina.toml errors name the file, the line, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from lamina.config import load_config
from lamina.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    path = tmp_path / "lamina.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


def test_a_full_image_reads_into_specs(tmp_path):
    config = load_config(write(tmp_path, """
[project]
registry = "127.0.0.1:5000"
owner = "acme"
version = "2.1"

[images.api]
from = "docker.io/library/python:3.12-slim"
platform = "linux/arm64"
cmd = "serve"
expose = [8000, "53/udp"]
healthcheck = { test = "curl -f localhost:8000/healthz", interval = "10s", start_period = "1m" }
[[images.api.copy]]
src = "app"
dest = "/app"
mode = "0640"
owner = "1000"
"""))
    spec = config.image("api")
    assert str(spec.platform) == "linux/arm64"
    assert spec.run.cmd == ["serve"] and spec.run.exposed_ports == ["8000/tcp", "53/udp"]
    assert spec.run.healthcheck.test == ["CMD-SHELL", "curl -f localhost:8000/healthz"]
    assert spec.run.healthcheck.start_period_s == 60
    assert (spec.copies[0].mode, spec.copies[0].uid, spec.copies[0].gid) == (0o640, 1000, 1000)
    assert str(config.target(spec)) == "127.0.0.1:5000/acme/api:2.1"


def test_env_and_flags_override_registry_owner_version(tmp_path):
    config = load_config(write(tmp_path, '[project]\nregistry = "a.example"\nowner = "o"\n[images.x]\n'))
    env = {"LAMINA_REGISTRY": "b.example", "LAMINA_VERSION": "v9"}
    assert str(config.with_overrides(env).target(config.image("x"))) == "b.example/o/x:v9"
    assert str(config.with_overrides(env, registry="c.example").target(config.image("x"))) == "c.example/o/x:v9"


def test_unknown_key_names_line_and_suggests(tmp_path):
    message = error_of(tmp_path, '[project]\nversion = "1"\n\n[images.api]\nfrom = "scratch"\ncmmd = ["x"]\n')
    assert "lamina.toml:6: images.api.cmmd: unknown key" in message and "did you mean 'cmd'" in message


def test_wrong_type_says_what_was_expected(tmp_path):
    message = error_of(tmp_path, '[images.api]\nworkdir = 5\n')
    assert "lamina.toml:2: images.api.workdir: expected an absolute path, got 5" in message


def test_missing_copy_source_is_reported_at_its_line(tmp_path):
    message = error_of(tmp_path, '[images.api]\n[[images.api.copy]]\nsrc = "nope"\ndest = "/x"\n')
    assert "lamina.toml:3: images.api.copy.src:" in message and "does not exist" in message


def test_bad_toml_syntax_is_reported_with_position(tmp_path):
    message = error_of(tmp_path, '[images.api\nfrom = "x"\n')
    assert "not valid TOML" in message and "line 1" in message


def test_bad_mode_and_owner(tmp_path):
    assert "expected an octal mode" in error_of(tmp_path, '[images.a]\n[[images.a.copy]]\nsrc="app"\ndest="/a"\nmode="rwx"\n')
    assert "expected numeric" in error_of(tmp_path, '[images.a]\n[[images.a.copy]]\nsrc="app"\ndest="/a"\nowner="app"\n')


def test_unknown_image_suggests_a_close_name(tmp_path):
    config = load_config(write(tmp_path, "[images.hello]\n"))
    with pytest.raises(ConfigError, match="did you mean 'hello'"):
        config.image("helo")


def test_push_without_registry_says_how_to_set_one(tmp_path):
    config = load_config(write(tmp_path, "[images.hello]\n"))
    with pytest.raises(ConfigError, match="LAMINA_REGISTRY"):
        config.target(config.image("hello"))
