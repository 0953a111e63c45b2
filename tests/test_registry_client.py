"""RegistryClient against a real docker-registry on loopback; wire counts come from the registry's log."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import pytest
from registry_servers import FaultProxy, RegistryServer, free_port, unique_repo

from lamina.errors import DigestMismatchError, NotFoundError, RegistryError, RegistryUnreachableError
from lamina.oci import mediatypes as mt
from lamina.oci.digest import file_digest, sha256_digest
from lamina.oci.registry import EXISTS, MOUNTED, UPLOADED, RegistryClient
from lamina.oci.registry.session import is_loopback, redact, retry_after_seconds

UPLOADS = r"/blobs/uploads/"


def opener_for(data: bytes):
    return lambda: io.BytesIO(data)


def blob(text: str) -> tuple[bytes, str]:
    data = text.encode() * 100
    return data, sha256_digest(data)


@pytest.fixture
def client(registry: RegistryServer):
    with RegistryClient(registry.host, backoff=0.05) as c:
        yield c


# --- blobs ----------------------------------------------------------------------------------------


def test_ping_falls_back_to_http_on_loopback(registry: RegistryServer) -> None:
    with RegistryClient(registry.host) as c:
        c.ping()
        assert c._session.scheme == "http"


def test_push_blob_monolithic(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo()
    data, digest = blob("monolithic")
    mark = registry.mark()
    assert client.push_blob(repo, digest, len(data), opener_for(data)) == UPLOADED
    assert registry.count(mark, "POST", UPLOADS) == 1
    assert registry.count(mark, "PUT", UPLOADS) == 1
    assert registry.count(mark, "PATCH") == 0
    assert client.blob_size(repo, digest) == len(data)
    sink = io.BytesIO()
    assert client.fetch_blob(repo, digest, sink) == len(data)
    assert sink.getvalue() == data
    assert client.stats.blobs_uploaded == 1 and client.stats.bytes_uploaded == len(data)
    assert client.stats.blobs_downloaded == 1 and client.stats.bytes_downloaded == len(data)


def test_chunked_upload_of_a_large_blob(registry: RegistryServer, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(10 * 1024 * 1024 + 12345))
    with path.open("rb") as f:
        digest, size = file_digest(f)
    repo = unique_repo("chunked")
    mark = registry.mark()
    with RegistryClient(registry.host, chunk_size=4 * 1024 * 1024) as c:
        c.upload_blob(repo, digest, size, lambda: path.open("rb"))
        assert registry.count(mark, "POST", UPLOADS) == 1
        assert registry.count(mark, "PATCH", UPLOADS) == 3
        assert registry.count(mark, "PUT", UPLOADS) == 1
        out = tmp_path / "back.bin"
        with out.open("wb") as sink:
            assert c.fetch_blob(repo, digest, sink) == size
    with out.open("rb") as f:
        assert file_digest(f) == (digest, size)


def test_second_push_only_heads(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo("skip")
    blobs = [blob(f"layer {i}") for i in range(5)]
    entries = [(digest, len(data), opener_for(data)) for data, digest in blobs]
    first = client.push_blobs(repo, entries)
    assert set(first.values()) == {UPLOADED}

    mark = registry.mark()
    done: list[tuple[str, str]] = []
    second = client.push_blobs(repo, entries, on_done=lambda d, o: done.append((d, o)))
    assert second == {digest: EXISTS for _, digest in blobs}
    assert sorted(done) == sorted(second.items())
    wire = registry.requests(mark)
    assert [r for r in wire if UPLOADS in r.path] == []
    assert sum(r.method == "HEAD" for r in wire) == 5
    assert client.stats.blobs_skipped == 5 and client.stats.blobs_uploaded == 5


def test_cross_repository_mount(registry: RegistryServer, client: RegistryClient) -> None:
    source, target = unique_repo("src"), unique_repo("dst")
    data, digest = blob("mount me")
    client.push_blob(source, digest, len(data), opener_for(data))
    mark = registry.mark()
    outcome = client.push_blob(target, digest, len(data), opener_for(data), mount_from=["elsewhere", source])
    assert outcome == MOUNTED
    posts = [r for r in registry.requests(mark) if r.method == "POST"]
    assert [(f"from={source}" in r.query, r.status) for r in posts] == [(False, 202), (True, 201)]
    assert registry.count(mark, "PATCH") == 0
    assert registry.count(mark, "PUT") == 0
    assert client.blob_size(target, digest) == len(data)
    assert client.stats.blobs_mounted == 1


def test_failed_mount_returns_false_and_cancels(registry: RegistryServer, client: RegistryClient) -> None:
    data, digest = blob("nowhere")
    mark = registry.mark()
    assert client.mount_blob(unique_repo(), digest, unique_repo("empty")) is False
    assert registry.count(mark, "DELETE", UPLOADS) == 1


def test_upload_of_content_that_does_not_match_its_digest(registry: RegistryServer, client: RegistryClient) -> None:
    data, _ = blob("real")
    _, wrong = blob("claimed")
    repo = unique_repo()
    with pytest.raises(DigestMismatchError, match="local content"):
        client.upload_blob(repo, wrong, len(data), opener_for(data))
    assert client.blob_size(repo, wrong) is None


def test_fetch_blob_detects_corruption(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo()
    data, digest = blob("pristine")
    client.push_blob(repo, digest, len(data), opener_for(data))
    stored = registry.blob_data_path(digest)
    stored.write_bytes(b"X" + stored.read_bytes()[1:])  # same size, different bytes
    with pytest.raises(DigestMismatchError, match=digest):
        client.fetch_blob(repo, digest, io.BytesIO())


def test_missing_blob(registry: RegistryServer, client: RegistryClient) -> None:
    _, digest = blob("absent")
    repo = unique_repo()
    assert client.blob_size(repo, digest) is None
    with pytest.raises(NotFoundError, match=f"{registry.host}/{repo}@{digest}"):
        client.fetch_blob(repo, digest, io.BytesIO())


# --- manifests ------------------------------------------------------------------------------------


def push_image(client: RegistryClient, repo: str, *, docker: bool = False) -> tuple[bytes, str]:
    """Push a config and a layer; return the manifest bytes and media type (not yet pushed)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer, layer_digest = blob(f"layer of {repo}")
    for data in (config, layer):
        client.push_blob(repo, sha256_digest(data), len(data), opener_for(data))
    media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP,
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
        "annotations": {"org.example.note": "aaaaaaaa"} if not docker else None,
    }
    manifest = {k: v for k, v in manifest.items() if v is not None}
    return json.dumps(manifest, indent=2).encode(), media_type


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker-schema2"])
def test_put_and_get_manifest(registry: RegistryServer, client: RegistryClient, docker: bool) -> None:
    repo = unique_repo("manifest")
    data, media_type = push_image(client, repo, docker=docker)
    digest = client.put_manifest(repo, "v1", data, media_type)
    assert digest == sha256_digest(data)

    by_tag = client.get_manifest(repo, "v1")
    assert (by_tag.data, by_tag.media_type, by_tag.digest) == (data, media_type, digest)
    by_digest = client.get_manifest(repo, digest, accept=media_type)
    assert by_digest.data == data
    assert client.head_manifest(repo, "v1") == (digest, media_type, len(data))
    assert client.head_manifest(repo, "v2") is None


def test_put_and_get_index(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo("index")
    data, media_type = push_image(client, repo)
    digest = client.put_manifest(repo, sha256_digest(data), data, media_type)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": media_type,
                    "digest": digest,
                    "size": len(data),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    index_digest = client.put_manifest(repo, "multi", index, mt.OCI_INDEX)
    fetched = client.get_manifest(repo, "multi")
    assert (fetched.media_type, fetched.digest) == (mt.OCI_INDEX, index_digest)


def test_manifest_by_digest_is_verified(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo("tamper")
    data, media_type = push_image(client, repo)
    digest = client.put_manifest(repo, "v1", data, media_type)
    stored = registry.blob_data_path(digest)
    stored.write_bytes(stored.read_bytes().replace(b"aaaaaaaa", b"bbbbbbbb"))
    with pytest.raises(DigestMismatchError, match=digest):
        client.get_manifest(repo, digest)


def test_missing_manifest_names_the_reference(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo("missing")
    with pytest.raises(NotFoundError) as caught:
        client.get_manifest(repo, "nope")
    message = str(caught.value)
    assert f"{registry.host}/{repo}:nope" in message
    assert "MANIFEST_UNKNOWN" in message


def test_manifest_with_missing_blobs_is_refused(registry: RegistryServer, client: RegistryClient) -> None:
    repo = unique_repo()
    data, media_type = push_image(client, repo)
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN|BLOB_UNKNOWN"):
        client.put_manifest(unique_repo("other"), "v1", data, media_type)


# --- retries, reachability, logging -----------------------------------------------------------------


def test_retries_then_succeeds(registry: RegistryServer, fault_proxy) -> None:
    proxy: FaultProxy = fault_proxy(
        registry.host, [(503, {}), (429, {"Retry-After": "1"}), (502, {}), (503, {"Retry-After": "0"})]
    )
    repo = unique_repo("flaky")
    data, digest = blob("flaky")
    started = time.monotonic()
    with RegistryClient(proxy.host, backoff=0.05, retries=4) as c:
        assert c.push_blob(repo, digest, len(data), opener_for(data)) == UPLOADED
        sink = io.BytesIO()
        c.fetch_blob(repo, digest, sink)
    assert sink.getvalue() == data
    assert proxy.injected == 4
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured


def test_retries_give_up_after_the_bound(registry: RegistryServer, fault_proxy) -> None:
    proxy: FaultProxy = fault_proxy(registry.host, [(503, {})] * 10)
    with RegistryClient(proxy.host, backoff=0.05, retries=2) as c:
        with pytest.raises(RegistryError) as caught:
            c.ping()
    message = str(caught.value)
    assert "503" in message and "gave up after 3 attempts" in message and proxy.host in message
    assert proxy.injected == 4  # the probe that found plain HTTP on this loopback host, then 3 attempts


def test_unreachable_registry_fails_fast() -> None:
    host = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with RegistryClient(host) as c:
        with pytest.raises(RegistryUnreachableError) as caught:
            c.ping()
    assert time.monotonic() - started < 3
    assert host in str(caught.value) and "refused" in str(caught.value).lower()


def test_debug_log_has_request_lines_without_upload_state(
    registry: RegistryServer, client: RegistryClient, caplog: pytest.LogCaptureFixture
) -> None:
    data, digest = blob("logged")
    with caplog.at_level(logging.DEBUG, logger="lamina.registry"):
        client.push_blob(unique_repo(), digest, len(data), opener_for(data))
    lines = [r.getMessage() for r in caplog.records if r.name == "lamina.registry"]
    assert any(line.startswith("PUT ") and line.endswith("-> 201") and "_state=..." in line for line in lines)
    assert not any("_state=" in line and "_state=..." not in line for line in lines)


# --- pure helpers -----------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3
    assert retry_after_seconds("3600") == 30  # capped
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:05 GMT", now=1445412480) == pytest.approx(5)
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490) == 0


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1:5000", True),
        ("127.8.9.1", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("192.0.2.2:5000", False),
        ("ghcr.io", False),
        ("localhost.example.com:5000", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_registry_is_https_only() -> None:
    from lamina.oci.registry.session import Session

    assert Session("192.0.2.2:5000", auth=None).scheme == "https"
    assert Session("192.0.2.2:5000", auth=None, insecure=True)._scheme is None  # probed on first use


def test_redact() -> None:
    import httpx

    url = httpx.URL("http://h/v2/r/blobs/uploads/u?_state=SECRETISH&digest=sha256:ab")
    assert redact(url) == "http://h/v2/r/blobs/uploads/u?_state=...&digest=sha256:ab"
