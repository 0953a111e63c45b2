"""Credential sources and their order: flags, environment, Docker config (helpers, store, auths), Podman."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

from lamina.errors import AuthError
from lamina.oci.registry.credentials import Credential, find_credential, search_description

HELPER = f"""#!{sys.executable}
# A docker credential helper speaking the real protocol, backed by store.json next to it.
import json, pathlib, sys
here = pathlib.Path(__file__).resolve().parent
if sys.argv[1:] != ["get"]:
    sys.exit("unsupported: " + " ".join(sys.argv[1:]))
server = sys.stdin.read().strip()
with open(here / "calls.log", "a") as log:
    log.write(server + "\\n")
if server == "broken.example":
    sys.stderr.write("keychain is locked\\n")
    sys.exit(1)
store = json.loads((here / "store.json").read_text())
if server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
username, secret = store[server]
print(json.dumps({{"ServerURL": server, "Username": username, "Secret": secret}}))
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture
def helper_dir(tmp_path: Path) -> Path:
    """A directory on PATH with ``docker-credential-lamina-test`` and its store."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker-credential-lamina-test"
    script.write_text(HELPER)
    script.chmod(0o755)
    (bin_dir / "store.json").write_text(
        json.dumps(
            {
                "ghcr.io": ["helper-user", "helper-secret"],
                "https://index.docker.io/v1/": ["hub-user", "hub-secret"],
                "id.example": ["<token>", "identity-token-value"],
            }
        )
    )
    return bin_dir


def make_env(home: Path, helper_dir: Path | None = None, **extra: str) -> dict[str, str]:
    path = os.environ.get("PATH", "")
    if helper_dir is not None:
        path = f"{helper_dir}{os.pathsep}{path}"
    return {"HOME": str(home), "PATH": path, **extra}


def write_docker_config(home: Path, config: dict) -> Path:
    path = home / ".docker" / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def test_nothing_found(home: Path) -> None:
    assert find_credential("ghcr.io", env=make_env(home)) is None


def test_auths_base64(home: Path) -> None:
    path = write_docker_config(home, {"auths": {"ghcr.io": {"auth": b64("alice:pa:ss")}}})
    cred = find_credential("ghcr.io", env=make_env(home))
    assert (cred.username, cred.password) == ("alice", "pa:ss")
    assert str(path) in cred.source and "auths" in cred.source
    assert "pa:ss" not in cred.source


def test_auths_username_password_and_key_spellings(home: Path) -> None:
    write_docker_config(
        home,
        {
            "auths": {
                "https://quay.io/v1/": {"username": "q", "password": "qp"},
                "http://localhost:5000": {"auth": b64("l:lp")},
                "https://index.docker.io/v1/": {"auth": b64("hub:hp")},
            }
        },
    )
    env = make_env(home)
    assert find_credential("quay.io", env=env).username == "q"
    assert find_credential("localhost:5000", env=env).username == "l"
    assert find_credential("docker.io", env=env).username == "hub"
    assert find_credential("registry-1.docker.io", env=env).username == "hub"
    assert find_credential("localhost:5001", env=env) is None


def test_docker_config_env_var(tmp_path: Path, home: Path) -> None:
    config_dir = tmp_path / "elsewhere"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": b64("dc:dp")}}}))
    write_docker_config(home, {"auths": {"ghcr.io": {"auth": b64("home:hp")}}})
    cred = find_credential("ghcr.io", env=make_env(home, DOCKER_CONFIG=str(config_dir)))
    assert cred.username == "dc"


def test_bad_base64_auth_is_reported(home: Path) -> None:
    write_docker_config(home, {"auths": {"ghcr.io": {"auth": b64("no-colon")}}})
    with pytest.raises(AuthError, match="ghcr.io"):
        find_credential("ghcr.io", env=make_env(home))


def test_cred_helper(home: Path, helper_dir: Path) -> None:
    write_docker_config(home, {"credHelpers": {"ghcr.io": "lamina-test"}})
    cred = find_credential("ghcr.io", env=make_env(home, helper_dir))
    assert (cred.username, cred.password) == ("helper-user", "helper-secret")
    assert "credHelpers: docker-credential-lamina-test" in cred.source
    assert "helper-secret" not in cred.source


def test_creds_store_with_docker_hub_server_url(home: Path, helper_dir: Path) -> None:
    write_docker_config(home, {"credsStore": "lamina-test"})
    cred = find_credential("docker.io", env=make_env(home, helper_dir))
    assert (cred.username, cred.password) == ("hub-user", "hub-secret")
    assert "credsStore" in cred.source
    assert (helper_dir / "calls.log").read_text().splitlines() == ["https://index.docker.io/v1/"]


def test_helper_identity_token(home: Path, helper_dir: Path) -> None:
    write_docker_config(home, {"credsStore": "lamina-test"})
    cred = find_credential("id.example", env=make_env(home, helper_dir))
    assert cred.is_identity_token and cred.password == "identity-token-value"


def test_helper_not_found_falls_through_to_auths(home: Path, helper_dir: Path) -> None:
    write_docker_config(home, {"credsStore": "lamina-test", "auths": {"quay.io": {"auth": b64("a:b")}}})
    env = make_env(home, helper_dir)
    assert find_credential("quay.io", env=env).username == "a"
    assert find_credential("nothing.example", env=env) is None


def test_helper_failure_names_helper(home: Path, helper_dir: Path) -> None:
    write_docker_config(home, {"credHelpers": {"broken.example": "lamina-test"}})
    with pytest.raises(AuthError) as caught:
        find_credential("broken.example", env=make_env(home, helper_dir))
    assert "docker-credential-lamina-test" in str(caught.value)
    assert "keychain is locked" in str(caught.value)


def test_missing_helper(home: Path) -> None:
    write_docker_config(home, {"credHelpers": {"ghcr.io": "does-not-exist"}})
    with pytest.raises(AuthError, match="docker-credential-does-not-exist"):
        find_credential("ghcr.io", env=make_env(home))


def test_precedence(tmp_path: Path, home: Path, helper_dir: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"ghcr.io": {"auth": b64("podman:pp")}}}))
    env = make_env(home, helper_dir, REGISTRY_AUTH_FILE=str(auth_file))
    assert find_credential("ghcr.io", env=env).username == "podman"

    write_docker_config(home, {"auths": {"ghcr.io": {"auth": b64("auths:ap")}}})
    assert find_credential("ghcr.io", env=env).username == "auths"

    write_docker_config(home, {"credsStore": "lamina-test", "auths": {"ghcr.io": {"auth": b64("auths:ap")}}})
    assert find_credential("ghcr.io", env=env).username == "helper-user"
    assert "credsStore" in find_credential("ghcr.io", env=env).source

    write_docker_config(
        home,
        {"credHelpers": {"ghcr.io": "lamina-test"}, "credsStore": "missing-store", "auths": {}},
    )
    assert "credHelpers" in find_credential("ghcr.io", env=env).source

    env.update(LAMINA_REGISTRY_USERNAME="envuser", LAMINA_REGISTRY_PASSWORD="envpass")
    cred = find_credential("ghcr.io", env=env)
    assert cred.username == "envuser" and "LAMINA_REGISTRY_USERNAME" in cred.source

    explicit = Credential("flaguser", "flagpass", "flags")
    assert find_credential("ghcr.io", explicit=explicit, env=env) is explicit


def test_env_needs_both_and_can_be_scoped(home: Path) -> None:
    env = make_env(home, LAMINA_REGISTRY_USERNAME="u")
    assert find_credential("ghcr.io", env=env) is None
    env["LAMINA_REGISTRY_PASSWORD"] = "p"
    assert find_credential("ghcr.io", env=env).username == "u"
    env["LAMINA_REGISTRY_HOST"] = "quay.io"
    assert find_credential("ghcr.io", env=env) is None
    assert find_credential("quay.io", env=env).username == "u"


def test_podman_xdg_runtime_dir(tmp_path: Path, home: Path) -> None:
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    (runtime / "containers" / "auth.json").write_text(json.dumps({"auths": {"quay.io/acme": {"auth": b64("pod:pp")}}}))
    cred = find_credential("quay.io", env=make_env(home, XDG_RUNTIME_DIR=str(runtime)))
    assert cred.username == "pod" and "auth.json" in cred.source


def test_secret_never_in_repr() -> None:
    cred = Credential("alice", "hunter2-secret", "flags")
    assert "hunter2-secret" not in repr(cred)
    assert "hunter2-secret" not in str(cred)
    assert "alice" in repr(cred)


def test_search_description_lists_sources(home: Path) -> None:
    text = search_description(make_env(home, XDG_RUNTIME_DIR="/run/user/1"))
    assert "LAMINA_REGISTRY_USERNAME" in text
    assert str(home / ".docker" / "config.json") in text
    assert "/run/user/1/containers/auth.json" in text
