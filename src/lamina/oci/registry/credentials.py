"""Where registry credentials come from, in order: flags, environment, Docker config, Podman auth file.

Docker config (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``): ``credHelpers[registry]``
beats ``credsStore`` beats ``auths[registry]``. Credential helpers speak Docker's protocol: run
``docker-credential-NAME get``, write the server URL to its stdin, read ``{"Username", "Secret"}``.
A username of ``<token>`` means the secret is an identity (refresh) token.

Secrets never appear in a repr, a log line or an error message; :attr:`Credential.source` says where a
credential came from so errors can point at it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lamina.errors import AuthError

ENV_USERNAME = "LAMINA_REGISTRY_USERNAME"
ENV_PASSWORD = "LAMINA_REGISTRY_PASSWORD"
ENV_HOST = "LAMINA_REGISTRY_HOST"
IDENTITY_TOKEN_USER = "<token>"
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credential:
    """A username and secret for one registry; ``source`` describes where it came from (never the secret)."""

    username: str
    password: str = field(repr=False)
    source: str = "explicit"

    @property
    def is_identity_token(self) -> bool:
        """True if ``password`` is an identity (refresh) token rather than a password."""
        return self.username == IDENTITY_TOKEN_USER

    def __repr__(self) -> str:
        return f"Credential(username={self.username!r}, password='***', source={self.source!r})"


def find_credential(
    registry: str,
    *,
    explicit: Credential | None = None,
    env: Mapping[str, str] = os.environ,
) -> Credential | None:
    """The first credential for ``registry`` (``host[:port]`` or ``docker.io``) from the sources in order."""
    if explicit is not None:
        return explicit
    for lookup in (_from_env, _from_docker_config, _from_podman_auth):
        credential = lookup(registry, env)
        if credential is not None:
            return credential
    return None


def search_description(env: Mapping[str, str] = os.environ) -> str:
    """The sources :func:`find_credential` tries, for an error message."""
    places = ["flags (--username/--password)", f"environment {ENV_USERNAME}/{ENV_PASSWORD}"]
    places.append(str(docker_config_path(env)))
    places.extend(str(p) for p in podman_auth_paths(env))
    return ", ".join(places)


def server_url(registry: str) -> str:
    """The server address Docker uses as a key and hands to credential helpers."""
    return DOCKER_HUB_SERVER if registry in _HUB_HOSTS else registry


def normalize_key(key: str) -> str:
    """The host of a config key written as ``host``, ``https://host`` or ``https://host/v1/``."""
    key = key.strip()
    if "://" in key:
        key = key.split("://", 1)[1]
    host = key.split("/", 1)[0]
    return "docker.io" if host in _HUB_HOSTS else host


def _matches(key: str, registry: str) -> bool:
    return normalize_key(key) == normalize_key(registry)


# --- environment -------------------------------------------------------------------------------


def _from_env(registry: str, env: Mapping[str, str]) -> Credential | None:
    username, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if not username or not password:
        return None
    scope = env.get(ENV_HOST)
    if scope and not _matches(scope, registry):
        return None
    return Credential(username, password, f"environment {ENV_USERNAME}/{ENV_PASSWORD}")


# --- Docker config -----------------------------------------------------------------------------


def docker_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]) / "config.json"
    return _home(env) / ".docker" / "config.json"


def _home(env: Mapping[str, str]) -> Path:
    return Path(env["HOME"]) if env.get("HOME") else Path.home()


def _load_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read registry credentials from {path}: {exc}") from None
    return data if isinstance(data, dict) else None


def _from_docker_config(registry: str, env: Mapping[str, str]) -> Credential | None:
    path = docker_config_path(env)
    config = _load_json(path)
    if config is None:
        return None
    helpers = config.get("credHelpers") or {}
    for key, helper in helpers.items():
        if _matches(key, registry):
            return run_helper(helper, registry, env, f"{path} (credHelpers: docker-credential-{helper})")
    if config.get("credsStore"):
        helper = config["credsStore"]
        found = run_helper(helper, registry, env, f"{path} (credsStore: docker-credential-{helper})")
        if found is not None:
            return found
    return _from_auths(config.get("auths") or {}, registry, f"{path} (auths)")


def _from_auths(auths: Mapping[str, object], registry: str, source: str) -> Credential | None:
    for key, entry in _matching_entries(auths, registry):
        if not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credential(IDENTITY_TOKEN_USER, entry["identitytoken"], f"{source}[{key}] identitytoken")
        if entry.get("auth"):
            username, password = _decode_auth(entry["auth"], source, key)
            return Credential(username, password, f"{source}[{key}]")
        if entry.get("username") and entry.get("password"):
            return Credential(entry["username"], entry["password"], f"{source}[{key}]")
    return None


def _matching_entries(auths: Mapping[str, object], registry: str) -> Iterator[tuple[str, object]]:
    """Exact keys first, then keys that differ only by scheme or a ``/v1/`` suffix."""
    exact = server_url(registry)
    if exact in auths:
        yield exact, auths[exact]
    for key, entry in auths.items():
        if key != exact and _matches(key, registry):
            yield key, entry


def _decode_auth(value: str, source: str, key: str) -> tuple[str, str]:
    try:
        username, sep, password = base64.b64decode(value, validate=False).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep or not username:
        raise AuthError(
            f"the 'auth' entry for {key} in {source} is not base64 of 'username:password'",
            hint=f"run `docker login {key}` again or fix the entry",
        )
    return username, password


# --- Podman / containers auth.json ---------------------------------------------------------------


def podman_auth_paths(env: Mapping[str, str]) -> list[Path]:
    """``$REGISTRY_AUTH_FILE``; else ``$XDG_RUNTIME_DIR/containers/auth.json``, ``~/.config/containers/auth.json``."""
    if env.get("REGISTRY_AUTH_FILE"):
        return [Path(env["REGISTRY_AUTH_FILE"])]
    paths = []
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(Path(env["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    paths.append(_home(env) / ".config" / "containers" / "auth.json")
    return paths


def _from_podman_auth(registry: str, env: Mapping[str, str]) -> Credential | None:
    for path in podman_auth_paths(env):
        data = _load_json(path)
        if data is None:
            continue
        found = _from_auths(data.get("auths") or {}, registry, f"{path} (auths)")
        if found is not None:
            return found
    return None


# --- credential helpers ------------------------------------------------------------------------


def run_helper(name: str, registry: str, env: Mapping[str, str], source: str) -> Credential | None:
    """Ask ``docker-credential-<name>`` for ``registry``; None if it has nothing stored."""
    program = f"docker-credential-{name}"
    path = shutil.which(program, path=env.get("PATH"))
    if path is None:
        raise AuthError(
            f"credential helper {program} (configured in {source}) is not on PATH",
            hint=f"install {program} or remove it from your Docker config",
        )
    try:
        done = subprocess.run(
            [path, "get"],
            input=server_url(registry),
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"credential helper {program} failed for {registry}: {type(exc).__name__}") from None
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None
        # The helper's stderr is its error message; stdout could hold a secret, so it is never shown.
        reason = done.stderr.strip().splitlines()[-1][:200] if done.stderr.strip() else f"exit {done.returncode}"
        raise AuthError(f"credential helper {program} failed for {registry}: {reason}")
    try:
        reply = json.loads(done.stdout)
        username, secret = reply["Username"], reply["Secret"]
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"credential helper {program} gave an unreadable answer for {registry}") from None
    if not secret:
        return None
    return Credential(username, secret, source)
