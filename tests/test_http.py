"""lamina.oci.http: the one download helper, against a real HTTP server on loopback that misbehaves on cue.

The server fails the first requests as scripted (503, 429 with Retry-After, a reset connection, a body cut
short), then serves the file, honouring ``Range`` unless told not to. The retry policy records its waits
instead of sleeping, so a test can count attempts and check the delays without waiting.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import ssl
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lamina.errors import CertificateError, DigestMismatchError, DownloadError
from lamina.oci.http import RetryPolicy, download, download_blob, fetch_bytes, make_client, user_agent
from lamina.oci.store import BlobStore

BODY = bytes(range(256)) * 4096  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(BODY).hexdigest()


@dataclass
class Script:
    faults: list[str] = field(default_factory=list)
    ranges: bool = True
    requests: list[dict[str, str]] = field(default_factory=list)


class FaultyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.script.requests.append(dict(self.headers.items()))
        fault = self.script.faults.pop(0) if self.script.faults else ""
        if fault == "503":
            return self._status(503)
        if fault.startswith("429"):
            return self._status(429, {"Retry-After": fault.split(":", 1)[1]})
        if fault == "404":
            return self._status(404)
        if fault == "reset":
            # headers promise the whole body, then the connection is reset after a part of it
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 3])
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return None
        body, start = BODY, 0
        if fault == "corrupt":
            body = BODY[:-1] + b"\x00"
        range_header = self.headers.get("Range")
        if range_header and self.script.ranges:
            start = int(range_header.removeprefix("bytes=").split("-", 1)[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if fault == "truncate":  # promise everything, send half, close cleanly
            self.wfile.write(part[: len(part) // 2])
            self.close_connection = True
            return None
        self.wfile.write(part)
        return None

    def _status(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Handler", (FaultyHandler,), {"script": script})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", script
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def policy(waits: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=4, backoff=0.5, sleep=waits.append)


def _leftovers(store: BlobStore) -> list[Path]:
    return list(store.tmp_dir.iterdir()) + list(store.blobs_dir.iterdir())


@pytest.mark.parametrize(
    ("faults", "expected_waits"),
    [
        ([], []),
        (["503", "503"], [0.5, 1.0]),
        (["429:2"], [2.0]),
        (["503", "429:0", "503"], [0.5, 0.0, 2.0]),
    ],
)
def test_download_retries_failed_answers_then_converges(
    server: tuple[str, Script], policy: RetryPolicy, waits: list[float], tmp_path: Path,
    faults: list[str], expected_waits: list[float],
) -> None:
    url, script = server
    script.faults[:] = faults
    store = BlobStore(tmp_path / "store")
    with make_client() as client:
        size = download_blob(client, url, store, DIGEST, size=len(BODY), policy=policy)
    assert size == len(BODY)
    assert store.read_bytes(DIGEST) == BODY
    assert len(script.requests) == len(faults) + 1
    assert waits == expected_waits
    assert list(store.tmp_dir.iterdir()) == []


def test_a_reset_connection_is_retried(server: tuple[str, Script], policy: RetryPolicy, waits: list[float],
                                       tmp_path: Path) -> None:
    url, script = server
    script.faults[:] = ["reset"]
    store = BlobStore(tmp_path / "store")
    with make_client() as client:
        download_blob(client, url, store, DIGEST, size=len(BODY), policy=policy)
    assert store.read_bytes(DIGEST) == BODY
    assert len(script.requests) == 2 and waits == [0.5]
    assert list(store.tmp_dir.iterdir()) == []


def test_a_truncated_body_resumes_with_range(server: tuple[str, Script], policy: RetryPolicy, tmp_path: Path) -> None:
    url, script = server
    script.faults[:] = ["truncate"]
    store = BlobStore(tmp_path / "store")
    progress: list[int] = []
    with make_client() as client:
        download_blob(client, url, store, DIGEST, size=len(BODY), policy=policy, on_progress=progress.append)
    assert store.read_bytes(DIGEST) == BODY
    assert len(script.requests) == 2
    assert "Range" not in script.requests[0]
    assert script.requests[1]["Range"] == f"bytes={len(BODY) // 2}-"
    assert sum(progress) == len(BODY)  # nothing was fetched twice


def test_a_server_without_ranges_restarts_in_a_fresh_writer(
    server: tuple[str, Script], policy: RetryPolicy, tmp_path: Path
) -> None:
    url, script = server
    script.faults[:] = ["truncate"]
    script.ranges = False
    store = BlobStore(tmp_path / "store")
    with make_client() as client:
        download_blob(client, url, store, DIGEST, size=len(BODY), policy=policy)
    assert store.read_bytes(DIGEST) == BODY
    assert len(script.requests) == 2 and "Range" in script.requests[1]
    assert list(store.tmp_dir.iterdir()) == []  # the first, partial writer was removed


def test_a_wrong_digest_is_refused_and_nothing_is_stored(
    server: tuple[str, Script], policy: RetryPolicy, tmp_path: Path
) -> None:
    url, script = server
    script.faults[:] = ["corrupt"]
    store = BlobStore(tmp_path / "store")
    with make_client() as client, pytest.raises(DigestMismatchError) as caught:
        download_blob(client, url, store, DIGEST, size=len(BODY), policy=policy, what="file.bin")
    assert url in str(caught.value) and DIGEST in str(caught.value)
    assert _leftovers(store) == []
    assert len(script.requests) == 1  # corrupt data is not retried: the source is wrong, not the network


def test_a_wrong_size_is_refused(server: tuple[str, Script], policy: RetryPolicy, tmp_path: Path) -> None:
    url, _ = server
    store = BlobStore(tmp_path / "store")
    with make_client() as client, pytest.raises(DigestMismatchError, match="larger than the expected 1000"):
        download_blob(client, url, store, DIGEST, size=1000, policy=policy)
    assert _leftovers(store) == []


def test_retries_give_up_after_the_policy_attempts(
    server: tuple[str, Script], policy: RetryPolicy, waits: list[float], tmp_path: Path
) -> None:
    url, script = server
    script.faults[:] = ["503"] * 10
    store = BlobStore(tmp_path / "store")
    with make_client() as client, pytest.raises(DownloadError) as caught:
        download_blob(client, url, store, DIGEST, policy=policy, what="the test file")
    error = caught.value
    assert len(script.requests) == 4 and waits == [0.5, 1.0, 2.0]
    assert error.url == url and error.status == 503
    assert "the test file" in error.message and "503" in error.message and "gave up after 4 attempts" in error.message
    assert error.hint
    assert _leftovers(store) == []


def test_a_final_status_is_not_retried(server: tuple[str, Script], policy: RetryPolicy) -> None:
    url, script = server
    script.faults[:] = ["404"]
    with make_client() as client, pytest.raises(DownloadError) as caught:
        fetch_bytes(client, url, policy=policy)
    assert caught.value.status == 404 and url in caught.value.message
    assert len(script.requests) == 1


def test_a_refused_connection_is_final(policy: RetryPolicy, waits: list[float]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with make_client() as client, pytest.raises(DownloadError) as caught:
            fetch_bytes(client, f"http://127.0.0.1:{port}/x", policy=policy)
    assert waits == [] and caught.value.status is None
    assert f"127.0.0.1:{port}" in caught.value.url


def test_the_client_says_who_it_is(server: tuple[str, Script]) -> None:
    url, script = server
    with make_client() as client:
        assert fetch_bytes(client, url) == BODY
    assert script.requests[0]["User-Agent"] == user_agent()
    assert user_agent().startswith("lamina/") and user_agent() != "lamina/"


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(backoff=1.0, max_delay=10.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.delay(1, "7") == 7.0
    assert policy.delay(1, "3600") == 10.0
    assert policy.delay(3, "soon") == 4.0


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server with a self-signed certificate that no CA bundle trusts."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    handler = type("Handler", (FaultyHandler,), {"script": Script()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}/file.bin"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_bad_certificate_is_reported_as_such(tls_server: str, policy: RetryPolicy, waits: list[float]) -> None:
    with make_client() as client, pytest.raises(CertificateError) as caught:
        fetch_bytes(client, tls_server, policy=policy)
    assert "TLS certificate" in caught.value.message and "127.0.0.1" in caught.value.message
    assert "SSL_CERT_FILE" in (caught.value.hint or "")
    assert waits == []  # not retried


def test_a_trusted_certificate_is_accepted(tls_server: str, tmp_path: Path) -> None:
    with make_client(verify=str(tmp_path / "cert.pem")) as client:
        assert fetch_bytes(client, tls_server) == BODY


def test_transport_errors_count_against_the_attempts(server: tuple[str, Script], policy: RetryPolicy,
                                                     waits: list[float]) -> None:
    url, script = server
    script.faults[:] = ["reset"] * 10
    script.ranges = False  # every attempt starts over and is cut again
    with make_client() as client, pytest.raises(DownloadError) as caught:
        fetch_bytes(client, url, policy=policy)
    assert len(script.requests) == 4 and waits == [0.5, 1.0, 2.0]
    assert "after 4 attempts" in caught.value.message
    assert caught.value.__cause__ is None  # the message stands alone: no httpx traceback


def test_requests_go_through_the_environments_proxy_unless_no_proxy_names_the_host(
        server: tuple[str, Script], monkeypatch: pytest.MonkeyPatch) -> None:
    url, script = server
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", url.rsplit("/", 1)[0])  # the loopback server plays a forward proxy
    with make_client() as client:
        assert fetch_bytes(client, "http://files.example.invalid/file.bin") == BODY
    assert [r["Host"] for r in script.requests] == ["files.example.invalid"]  # asked of the proxy
    monkeypatch.setenv("NO_PROXY", ".example.invalid,localhost")
    with make_client() as client, pytest.raises(DownloadError):
        fetch_bytes(client, "http://files.example.invalid/file.bin", policy=RetryPolicy(attempts=1))
    assert len(script.requests) == 1  # went straight to the (unresolvable) host, not to the proxy
