"""A lying or failing registry: documents refused clearly, faults either converged or reported in one line.

* a fake registry (a small http.server) answering non-JSON, missing fields, oversized and mismatched manifests;
* a registry behind the fault-injecting proxy (500/502/503, 429 + Retry-After, resets before and after the
  registry did the work, truncated answers; seeded, bounded): every push converges or fails clearly, and
  every tag reported pushed copies cleanly with ``skopeo copy`` (which verifies digests);
* a registry with a certificate nobody trusts, then trusted with ``--ca-file``/``ca_file``;
* SIGKILL of ``lamina build --push`` at several points: the rerun pushes the reference digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import random
import ssl
import subprocess
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from attack_project import kill_after, make_project, run
from conftest import require_tool
from helpers import assert_one_line_error
from lamina.errors import DocumentError, LaminaError, RegistryUnreachableError
from lamina.oci import http as lamina_http
from lamina.oci import mediatypes as mt
from lamina.oci.registry.client import RegistryClient
from registry_servers import unique_repo

pytestmark = pytest.mark.attack

# -- a registry that lies ---------------------------------------------------------------------------

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()


def manifest(**changes: object) -> bytes:
    obj: dict[str, object] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                              "config": {"mediaType": mt.OCI_CONFIG, "digest": CONFIG_DIGEST, "size": len(CONFIG)},
                              "layers": []}
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


#: repository → (body, extra headers, what the error must say)
LIES: dict[str, tuple[bytes, dict[str, str], str]] = {
    "not-json": (b"<html><body>502 Bad Gateway</body></html>", {}, "is not JSON"),
    "no-config": (manifest(config=None), {}, "has no 'config'"),
    "no-layers": (manifest(layers=None), {}, "has no 'layers'"),
    "bad-digest": (manifest(layers=[{"mediaType": mt.OCI_LAYER_GZIP, "digest": "md5:abc", "size": 1}]), {},
                   "is not a sha256 digest"),
    "json-list": (b"[1, 2, 3]", {}, "not an object"),
    "oversized": (b" " * (5 << 20) + manifest(), {}, "is over 4 MiB"),
    "mismatched": (manifest(), {"Docker-Content-Digest": "sha256:" + "0" * 64}, "but the bytes hash to"),
    "config-mismatch": (manifest(layers=[{"mediaType": mt.OCI_LAYER_GZIP, "digest": "sha256:" + "1" * 64,
                                          "size": 10}]), {}, "0 diff_ids for 1 layers"),
}
STREAMED = 64 << 20  # the "endless" manifest: chunked, no Content-Length


class LyingRegistry:
    def __init__(self) -> None:
        self.sent = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                parts = self.path.split("/")
                if self.path == "/v2/":
                    return self._send(200, b"{}", {})
                if len(parts) >= 5 and parts[-2] == "blobs" and parts[-1] == CONFIG_DIGEST:
                    return self._send(200, CONFIG, {"Content-Type": "application/octet-stream"})
                if len(parts) >= 5 and parts[-2] == "manifests":
                    repo = "/".join(parts[2:-2]).split("/")[-1]
                    if repo == "endless":
                        return self._endless()
                    body, headers, _ = LIES[repo]
                    return self._send(200, body, {"Content-Type": mt.OCI_MANIFEST, **headers})
                self._send(404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}', {})

            do_HEAD = do_GET

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _endless(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", mt.OCI_MANIFEST)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b" " * (1 << 20)
                try:
                    while outer.sent < STREAMED:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                        outer.sent += len(block)
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def liar() -> Iterator[LyingRegistry]:
    server = LyingRegistry()
    yield server
    server.stop()


@pytest.mark.parametrize("repo", sorted(LIES))
def test_a_lying_registry_is_refused_clearly_by_the_build(repo, liar, tmp_path):
    (tmp_path / "lamina.toml").write_text(f'[images.app]\nfrom = "{liar.host}/lib/{repo}:1"\n'
                                          'symlinks = {{ "/x" = "y" }}\n'.replace("{{", "{").replace("}}", "}"))
    result = run(tmp_path, tmp_path / "store", "build", "-o", "oci:out")
    assert_one_line_error(result, LIES[repo][2])
    assert not (tmp_path / "out").exists()


def test_an_endless_manifest_is_cut_off_at_the_cap(liar):
    with RegistryClient(liar.host, retries=0) as client, pytest.raises(DocumentError, match="is over 4 MiB"):
        client.get_manifest("lib/endless", "1")
    assert liar.sent < STREAMED // 2  # reading stopped near the cap, not at the end


# -- faults on the way to a real registry -------------------------------------------------------------

MENU = [(500, {}), (502, {}), (503, {}), (429, {"Retry-After": "1"}), ("reset", {}), ("reset-after", {}),
        ("truncate", {})]
PUSHES = 8


def skopeo_copy(registry_host: str, ref: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{registry_host}/{ref}",
                           f"oci:{dest}"], capture_output=True, text=True, timeout=300)


def test_pushes_through_random_faults_converge_or_fail_clearly(registry, fault_proxy, tmp_path):
    require_tool("skopeo")
    root = make_project(tmp_path / "proj", megabytes=1, files=1)
    store = root / "store"
    assert run(root, store, "build", "app", "-o", "oci:out", "--no-check").returncode == 0
    outcomes = {"converged": 0, "failed clearly": 0}
    injected = 0
    for seed in range(PUSHES):
        proxy = fault_proxy(registry.host, rate=0.3, seed=seed, menu=MENU, budget=12)
        owner = unique_repo(f"faults{seed}")
        result = run(root, store, "build", "app", "--push", "--registry", proxy.host, "--owner", owner,
                     "--no-check")
        injected += proxy.injected
        if result.returncode == 0:
            outcomes["converged"] += 1
            assert f"{owner}/app:1" in result.stdout + result.stderr  # reported pushed
            copied = skopeo_copy(registry.host, f"{owner}/app:1", tmp_path / f"copy-{seed}")
            assert copied.returncode == 0, copied.stderr
        else:
            outcomes["failed clearly"] += 1
            assert_one_line_error(result)
        proxy.stop()
    hopeless = fault_proxy(registry.host, [(503, {})] * 200)  # a registry that never recovers: one clear line
    result = run(root, store, "build", "app", "--push", "--registry", hopeless.host, "--owner",
                 unique_repo("down"), "--no-check")
    injected += hopeless.injected
    assert_one_line_error(result, "503", "gave up after")
    outcomes["failed clearly"] += 1
    print(f"\nregistry faults: {PUSHES + 1} pushes, {injected} faults injected, {outcomes}")
    assert injected >= PUSHES  # the faults did happen
    assert outcomes["converged"] >= PUSHES // 2  # retries absorb most of them


def test_a_reset_after_a_committed_upload_counts_as_uploaded(registry, fault_proxy):
    """The registry stored the blob, the answer was lost: the retried PUT gets BLOB_UPLOAD_UNKNOWN, and lamina
    checks the blob is there instead of failing with an unrelated hint."""
    import io

    proxy = fault_proxy(registry.host, [("reset-after", {})], match=lambda m, p: m == "PUT" and "digest=" in p)
    data = random.Random(5).randbytes(50_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    repo = unique_repo("committed")
    with RegistryClient(proxy.host, backoff=0.01) as client:
        assert client.push_blob(repo, digest, len(data), lambda: io.BytesIO(data)) == "uploaded"
    assert proxy.injected == 1
    with RegistryClient(registry.host) as direct:
        assert direct.blob_size(repo, digest) == len(data)


def test_a_mid_push_reset_is_reported_as_a_broken_connection(registry, fault_proxy):
    import io

    proxy = fault_proxy(registry.host, [("reset", {})] * 20, match=lambda m, p: m == "PUT")
    data = b"x" * 10_000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with RegistryClient(proxy.host, backoff=0.01) as client, pytest.raises(RegistryUnreachableError) as raised:
        client.push_blob(unique_repo("reset"), digest, len(data), lambda: io.BytesIO(data))
    message = str(raised.value)
    assert "broke during upload of blob" in message and "is unreachable" not in message


# -- TLS ------------------------------------------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lamina test registry")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_registry(tmp_path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed(tmp_path)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()
    lamina_http.trust(None)


def test_an_untrusted_certificate_is_reported_as_such_even_on_loopback(tls_registry):
    host, _ = tls_registry
    with RegistryClient(host, retries=0) as client, pytest.raises(RegistryUnreachableError) as raised:
        client.ping()
    assert "certificate verification failed" in raised.value.message
    assert "--ca-file" in (raised.value.hint or "")


def test_a_private_ca_given_with_ca_file_is_trusted(tls_registry, tmp_path):
    from lamina.session import Session

    host, cert = tls_registry
    (tmp_path / "lamina.toml").write_text(f'[project]\nca_file = "{cert}"\n[images.a]\nfrom = "scratch"\n'
                                          'symlinks = { "/x" = "y" }\n')
    with Session.open(tmp_path / "lamina.toml", store_root=tmp_path / "store") as session:
        session.registries.client(host).ping()  # trusted now (by every client lamina makes)
    lamina_http.trust(None)
    with RegistryClient(host, retries=0) as client, pytest.raises(RegistryUnreachableError):
        client.ping()


def test_a_missing_ca_file_is_a_clear_error(tmp_path):
    (tmp_path / "lamina.toml").write_text('[project]\nca_file = "nope.pem"\n')
    result = run(tmp_path, tmp_path / "store", "build")
    assert_one_line_error(result, "project.ca_file", "nope.pem does not exist")


# -- SIGKILL of a push ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_several_points_of_a_push(registry, tmp_path):
    """Each kill: the store verifies, the rerun pushes, and what it pushed is what a clean store pushes to the
    same place (the reference digest; the owner is in the base's name, so each target has its own)."""
    require_tool("skopeo")
    root = make_project(tmp_path / "proj", megabytes=6, files=2)
    store, clean = root / "store", root / "clean-store"
    rng = random.Random(7)
    for i, delay in enumerate(sorted(rng.uniform(0.5, 4.0) for _ in range(4))):
        target = unique_repo("kills")
        push = ("build", "app", "--push", "--registry", registry.host, "--owner", target, "--no-check")
        shutil.rmtree(store, ignore_errors=True)  # a fresh store each time: layers to make and upload
        kill_after(root, store, delay, *push)
        assert run(root, store, "store", "verify").returncode == 0
        again = run(root, store, *push)
        assert again.returncode == 0, again.stderr
        pushed = _remote_digest(registry.host, f"{target}/app:1")
        copied = skopeo_copy(registry.host, f"{target}/app:1", tmp_path / f"copy-{i}")
        assert copied.returncode == 0, copied.stderr
        shutil.rmtree(clean, ignore_errors=True)
        assert run(root, clean, *push).returncode == 0
        assert _remote_digest(registry.host, f"{target}/app:1") == pushed


def _remote_digest(host: str, ref: str) -> str:
    with RegistryClient(host) as client:
        repo, tag = ref.rsplit(":", 1)
        found = client.head_manifest(repo, tag)
    assert found is not None
    return found[0]


def test_errors_are_lamina_errors():
    assert issubclass(DocumentError, LaminaError)


def test_a_missing_ca_file_flag_is_a_clear_error(tmp_path):
    (tmp_path / "lamina.toml").write_text('[images.a]\nfrom = "scratch"\nsymlinks = { "/x" = "y" }\n')
    result = run(tmp_path, tmp_path / "store", "build", "--push", "--registry", "127.0.0.1:1", "--ca-file",
                 str(tmp_path / "nope.pem"))
    assert_one_line_error(result, "--ca-file", "nope.pem does not exist")
