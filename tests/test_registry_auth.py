"""Basic (htpasswd) and Bearer (token server) authentication against real registries."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest
from registry_servers import BasicRegistry, RegistryServer, unique_repo

from lamina.errors import AuthError
from lamina.oci.digest import sha256_digest
from lamina.oci.registry import MOUNTED, UPLOADED, Credential, RegistryClient
from lamina.oci.registry.auth import merge_scopes, parse_challenges


def blob(text: str) -> tuple[bytes, str]:
    data = text.encode() * 50
    return data, sha256_digest(data)


def push(client: RegistryClient, repo: str, text: str, **kwargs) -> str:
    data, digest = blob(text)
    return client.push_blob(repo, digest, len(data), lambda: io.BytesIO(data), **kwargs)


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where every credential source is empty."""
    for name in ("LAMINA_REGISTRY_USERNAME", "LAMINA_REGISTRY_PASSWORD", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


# --- Basic -----------------------------------------------------------------------------------------


def test_basic_auth(basic_registry: BasicRegistry, caplog: pytest.LogCaptureFixture) -> None:
    credential = Credential(basic_registry.username, basic_registry.password, "test flags")
    with caplog.at_level(logging.DEBUG):
        with RegistryClient(basic_registry.host, credential=credential) as client:
            client.ping()
            assert push(client, unique_repo(), "basic") == UPLOADED
    secret_forms = (
        basic_registry.password,
        base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode(),
    )
    assert not any(form in all_log_text(caplog) for form in secret_forms)


def test_basic_wrong_password(basic_registry: BasicRegistry) -> None:
    wrong = "not-the-Pa55word"
    with RegistryClient(basic_registry.host, credential=Credential(basic_registry.username, wrong, "test flags")) as c:
        with pytest.raises(AuthError) as caught:
            push(c, unique_repo(), "refused")
    message = str(caught.value)
    assert basic_registry.host in message and "test flags" in message and "refused" in message
    assert wrong not in message


def test_basic_without_credentials(basic_registry: BasicRegistry, no_credentials: None, tmp_path: Path) -> None:
    with RegistryClient(basic_registry.host) as c:
        with pytest.raises(AuthError) as caught:
            c.ping()
    message = str(caught.value)
    assert "requires authentication" in message and "no credentials were found" in message
    assert "LAMINA_REGISTRY_USERNAME" in message and str(tmp_path / ".docker" / "config.json") in message


def test_basic_from_docker_config(
    basic_registry: BasicRegistry, no_credentials: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))

    def write(password: str) -> None:
        auth = base64.b64encode(f"{basic_registry.username}:{password}".encode()).decode()
        config.write_text(json.dumps({"auths": {f"http://{basic_registry.host}": {"auth": auth}}}))

    write(basic_registry.password)
    with RegistryClient(basic_registry.host) as c:
        assert push(c, unique_repo(), "from config") == UPLOADED
    write("stale-Pa55word")
    with RegistryClient(basic_registry.host) as c:
        with pytest.raises(AuthError) as caught:
            c.ping()
    assert str(config) in str(caught.value) and "stale-Pa55word" not in str(caught.value)


# --- Bearer ----------------------------------------------------------------------------------------


def token_credential(server: RegistryServer) -> Credential:
    user, password = next(iter(server.tokens.users.items()))
    return Credential(user, password, "test flags")


def test_bearer_push_pull_and_scopes(token_registry: RegistryServer) -> None:
    tokens = token_registry.tokens
    repo = unique_repo("bearer")
    before = len(tokens.requests)
    with RegistryClient(token_registry.host, credential=token_credential(token_registry)) as c:
        assert push(c, repo, "bearer") == UPLOADED
        asked = tokens.requests[before:]
        assert all(r.user == "tokenuser" and r.status == 200 for r in asked)
        assert (f"repository:{repo}:pull,push",) in [r.scopes for r in asked]

        # Tokens are cached per scope set: another blob in the same repository needs no new token.
        count = len(tokens.requests)
        assert push(c, repo, "bearer two") == UPLOADED
        assert len(tokens.requests) == count

        data, digest = blob("bearer")
        sink = io.BytesIO()
        c.fetch_blob(repo, digest, sink)
        assert sink.getvalue() == data


def test_bearer_mount_asks_pull_on_the_source(token_registry: RegistryServer) -> None:
    tokens = token_registry.tokens
    source, target = unique_repo("src"), unique_repo("dst")
    with RegistryClient(token_registry.host, credential=token_credential(token_registry)) as c:
        push(c, source, "shared layer")
        before = len(tokens.requests)
        mark = token_registry.mark()
        assert push(c, target, "shared layer", mount_from=[source]) == MOUNTED
    scope_sets = [set(r.scopes) for r in tokens.requests[before:]]
    assert {f"repository:{source}:pull", f"repository:{target}:pull,push"} in scope_sets
    mounts = [r for r in token_registry.requests(mark) if r.method == "POST" and "mount=" in r.query]
    assert mounts[-1].status == 201
    assert token_registry.count(mark, "PATCH") == token_registry.count(mark, "PUT") == 0


def test_bearer_identity_token(token_registry: RegistryServer) -> None:
    tokens = token_registry.tokens
    before = len(tokens.requests)
    credential = Credential("<token>", tokens.identity_token, "test identity token")
    with RegistryClient(token_registry.host, credential=credential) as c:
        assert push(c, unique_repo("identity"), "identity") == UPLOADED
    asked = tokens.requests[before:]
    assert asked and all(r.method == "POST" and r.grant_type == "refresh_token" for r in asked)


def test_bearer_refused_credentials(token_registry: RegistryServer, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wr0ng-t0ken-pa55"
    with caplog.at_level(logging.DEBUG):
        with RegistryClient(token_registry.host, credential=Credential("tokenuser", wrong, "test flags")) as c:
            with pytest.raises(AuthError) as caught:
                push(c, unique_repo(), "refused")
    message = str(caught.value)
    assert token_registry.host in message and "refused credentials from test flags" in message
    assert wrong not in message and wrong not in all_log_text(caplog)
    assert token_registry.tokens.requests[-1].status == 401


def test_bearer_anonymous_is_refused(token_registry: RegistryServer, no_credentials: None) -> None:
    with RegistryClient(token_registry.host) as c:
        with pytest.raises(AuthError) as caught:
            push(c, unique_repo(), "anonymous")
    assert "no credentials were found" in str(caught.value)
    last = token_registry.tokens.requests[-1]
    assert last.user is None and last.status == 200  # the token server answered; the registry said no


# --- challenge parsing ------------------------------------------------------------------------------


def test_parse_bearer_challenge_with_commas_in_quotes() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="reg.example",'
        'scope="repository:a/b:pull,push repository:c:pull"'
    )
    [challenge] = parse_challenges([header])
    assert challenge.scheme == "bearer"
    assert challenge.params["realm"] == "https://auth.example/token"
    assert challenge.params["service"] == "reg.example"
    assert challenge.scopes == ("repository:a/b:pull,push", "repository:c:pull")


def test_parse_several_challenges() -> None:
    challenges = parse_challenges(['Basic realm="a, \\"quoted\\" b", Bearer realm=unquoted,error="insufficient_scope"'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params["realm"] == 'a, "quoted" b'
    assert challenges[1].params == {"realm": "unquoted", "error": "insufficient_scope"}
    assert parse_challenges(["Basic"])[0].scheme == "basic"


def test_bearer_401_on_a_streamed_upload(token_registry: RegistryServer) -> None:
    """A 401 on a streamed PUT cannot replay the body: the client re-opens the blob and sends it again."""
    repo = unique_repo("expiry")
    data, digest = blob("expiring")
    opened = []

    def opener() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(data)

    with RegistryClient(token_registry.host, credential=token_credential(token_registry)) as c:
        upfront = c._auth._authorize_upfront
        skipped = []

        def forget_token_once(request):  # as if the cached token had expired just before the PUT
            if request.method == "PUT" and not skipped:
                skipped.append(request)
                return
            upfront(request)

        c._auth._authorize_upfront = forget_token_once
        mark = token_registry.mark()
        c.upload_blob(repo, digest, len(data), opener)
        assert c.blob_size(repo, digest) == len(data)
    assert len(opened) == 2
    assert [r.status for r in token_registry.requests(mark) if r.method == "PUT"] == [401, 201]


def test_merge_scopes() -> None:
    merged = merge_scopes(["repository:a/b:push,pull", "repository:a/b:pull", "repository:c:pull", "registry:catalog:*"])
    assert merged == {"repository:a/b:pull,push", "repository:c:pull", "registry:catalog:*"}
