"""Real registries on loopback for tests: ``docker-registry`` (distribution 2.8) processes, a token server
and a fault-injecting proxy.

Loaded with ``pytest_plugins = ["registry_servers"]``. Fixtures (session scoped, each test should use
its own repository names, see :func:`unique_repo`):

* ``registry`` – anonymous, plain http.
* ``basic_registry`` – htpasswd (bcrypt) auth; ``.username`` / ``.password``.
* ``token_registry`` – Docker token auth through ``token_server`` (ES256 JWTs with an ``x5c`` header);
  ``token_server.requests`` records every token request (user, grant type, scopes).
* ``fault_proxy`` – a factory: ``fault_proxy(upstream_host, faults=[(503, {}), (429, {"Retry-After": "1"})])``
  answers the first requests with those statuses, then forwards to the upstream registry. A fault may also be
  ``"reset"`` (the connection drops before an answer), ``"reset-after"`` (forwarded, then the answer is lost)
  or ``"truncate"`` (forwarded, half the answer's body sent); ``match=`` limits faults to some requests, and
  ``rate=``/``seed=``/``menu=``/``budget=`` draw further faults at random, repeatably.

Wire counts come from the registry's own access log (Apache combined format on its stdout):
``mark = server.mark()`` … ``server.count(mark, "PATCH", r"/blobs/uploads/")``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

REGISTRY_BINARY = "docker-registry"
REGISTRY_FIXTURES = {"registry", "basic_registry", "token_registry", "token_server", "fault_proxy"}
_ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_SYNC_PATH = "/lamina-test-sync/"


def unique_repo(prefix: str = "test") -> str:
    """A repository name no other test uses (the session-scoped registries are shared)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_registry_binary() -> str:
    path = shutil.which(REGISTRY_BINARY)
    if path is None:
        pytest.skip("docker-registry not installed: apt-get install docker-registry")
    return path


@dataclass(frozen=True)
class WireRequest:
    """One request as the registry logged it."""

    method: str
    path: str
    query: str
    status: int


# --- the registry process ------------------------------------------------------------------------


class RegistryServer:
    """A ``docker-registry serve`` process with filesystem storage under ``workdir``."""

    def __init__(self, workdir: Path, *, auth: dict | None = None) -> None:
        self.workdir = workdir
        self.storage = workdir / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.access_log = workdir / "access.log"
        self.app_log = workdir / "registry.log"
        self._auth = auth
        self._process: subprocess.Popen | None = None
        self._sync_count = 0
        self._sync_lock = threading.Lock()

    def start(self) -> RegistryServer:
        binary = require_registry_binary()
        self.storage.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": secrets.token_hex(16)},
        }
        if self._auth:
            config["auth"] = self._auth
        config_path = self.workdir / "config.yml"
        config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        with open(self.access_log, "wb") as out, open(self.app_log, "wb") as err:
            self._process = subprocess.Popen([binary, "serve", str(config_path)], stdout=out, stderr=err, env=env)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited at start:\n{self.app_log.read_text()[-2000:]}")
            try:
                self._get("/v2/")
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} within {timeout}s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _get(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    # --- the access log -------------------------------------------------------------------------

    def _sync(self) -> list[str]:
        """Make a marker request and wait until it is logged, so every earlier request is too."""
        with self._sync_lock:
            self._sync_count += 1
            marker = f"{_SYNC_PATH}{self._sync_count}"
        self._get(marker)
        deadline = time.monotonic() + 5
        while True:
            lines = self.access_log.read_text(errors="replace").splitlines()
            if any(f" {marker} " in line for line in lines) or time.monotonic() > deadline:
                time.sleep(0.02)  # a request finishing just before the marker logs microseconds later
                return self.access_log.read_text(errors="replace").splitlines()
            time.sleep(0.01)

    def mark(self) -> int:
        """A position in the access log; pass it to :meth:`requests` or :meth:`count`."""
        return len(self._sync())

    def requests(self, since: int = 0) -> list[WireRequest]:
        """Requests the registry served since ``mark`` (marker requests left out)."""
        found = []
        for line in self._sync()[since:]:
            match = _ACCESS_RE.search(line)
            if not match or match["target"].startswith(_SYNC_PATH):
                continue
            path, _, query = match["target"].partition("?")
            found.append(WireRequest(match["method"], path, query, int(match["status"])))
        return found

    def count(self, since: int = 0, method: str | None = None, path: str | None = None) -> int:
        """How many requests since ``mark`` had ``method`` and a path matching regex ``path``."""
        return sum(
            1
            for r in self.requests(since)
            if (method is None or r.method == method) and (path is None or re.search(path, r.path))
        )

    def blob_data_path(self, digest: str) -> Path:
        """Where the registry stores blob ``digest`` on disk (to corrupt it in tests)."""
        hex_ = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


class BasicRegistry(RegistryServer):
    """A registry with htpasswd (bcrypt) auth for one user."""

    def __init__(self, workdir: Path, username: str = "lamina", password: str = "s3cret-Pa55word") -> None:
        import bcrypt

        self.username, self.password = username, password
        htpasswd = workdir / "htpasswd"
        workdir.mkdir(parents=True, exist_ok=True)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        htpasswd.write_text(f"{username}:{hashed}\n")
        super().__init__(workdir, auth={"htpasswd": {"realm": "lamina-test", "path": str(htpasswd)}})


# --- the token server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered."""

    method: str
    user: str | None  # None: anonymous
    grant_type: str | None
    scopes: tuple[str, ...]
    status: int


@dataclass
class TokenServer:
    """Docker token auth: issues ES256 JWTs (with ``x5c``) for the registry that trusts :attr:`bundle`.

    Valid users get every action they ask for; anonymous callers get ``pull`` only if ``anonymous_pull``.
    ``refresh_tokens`` maps identity tokens to users (``grant_type=refresh_token``).
    """

    workdir: Path
    users: dict[str, str] = field(default_factory=lambda: {"tokenuser": "t0ken-Pa55word"})
    service: str = "lamina-test-registry"
    issuer: str = "lamina-test-issuer"
    anonymous_pull: bool = False
    requests: list[TokenRequest] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.workdir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lamina test token issuer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.bundle = self.workdir / "token-ca.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.refresh_tokens.setdefault("identity-" + secrets.token_hex(8), next(iter(self.users)))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
        self._server.token_server = self  # type: ignore[attr-defined]
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._lock = threading.Lock()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def identity_token(self) -> str:
        return next(iter(self.refresh_tokens))

    def registry_auth(self) -> dict:
        """The ``auth`` section of a registry config that trusts this server."""
        return {
            "token": {
                "realm": self.realm,
                "service": self.service,
                "issuer": self.issuer,
                "rootcertbundle": str(self.bundle),
            }
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def scopes_requested(self) -> list[tuple[str, ...]]:
        with self._lock:
            return [r.scopes for r in self.requests]

    def issue(self, user: str | None, scopes: Sequence[str]) -> str:
        import jwt

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if user else (["pull"] if self.anonymous_pull and "pull" in wanted else [])
            if granted:
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        return jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})

    def record(self, entry: TokenRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    @property
    def tokens(self) -> TokenServer:
        return self.server.token_server  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        user, ok = self._basic_user()
        self._answer("GET", user, ok, None, scopes)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        grant = form.get("grant_type", [""])[0]
        scopes = tuple(" ".join(form.get("scope", [])).split())
        if grant == "refresh_token":
            user = self.tokens.refresh_tokens.get(form.get("refresh_token", [""])[0])
            ok = user is not None
        elif grant == "password":
            user = form.get("username", [""])[0]
            ok = self.tokens.users.get(user) == form.get("password", [None])[0]
        else:
            user, ok = None, False
        self._answer("POST", user, ok, grant, scopes)

    def _basic_user(self) -> tuple[str | None, bool]:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None, True
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, self.tokens.users.get(user) == password

    def _answer(self, method: str, user: str | None, ok: bool, grant: str | None, scopes: tuple[str, ...]) -> None:
        status = 200 if ok else 401
        self.tokens.record(TokenRequest(method, user, grant, scopes, status))
        if ok:
            token = self.tokens.issue(user, scopes)
            body = {"token": token, "access_token": token, "expires_in": 300}
        else:
            body = {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# --- the fault-injecting proxy ---------------------------------------------------------------------


class FaultProxy:
    """Answers the first requests with canned error statuses, then forwards to ``upstream`` unchanged.

    ``faults`` is a list of ``(status, headers)``; each request consumes one until none are left. The
    ``Host`` header is forwarded as sent, so the registry's ``Location`` URLs point back at the proxy.
    """

    def __init__(self, upstream: str, faults: Sequence[tuple[int | str, dict[str, str]]] = (), *,
                 match: Callable[[str, str], bool] | None = None, rate: float = 0.0, seed: int = 0,
                 menu: Sequence[tuple[int | str, dict[str, str]]] = (), budget: int = 0) -> None:
        self.upstream = upstream
        self.faults = list(faults)
        #: Only requests ``match(method, path)`` accepts consume a fault (default: every request).
        self.match = match
        #: Random faults after the listed ones: each request draws one of ``menu`` with probability ``rate``
        #: (a seeded generator, so a run is repeatable), at most ``budget`` in all.
        import random

        self._random = random.Random(seed)
        self.rate, self.menu, self.budget = rate, list(menu), budget
        self.log: list[tuple[str, str, int, bool]] = []  # (method, path, status, injected)
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self  # type: ignore[attr-defined]
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def injected(self) -> int:
        with self._lock:
            return sum(1 for entry in self.log if entry[3])

    def next_fault(self, method: str = "", path: str = "") -> tuple[int | str, dict[str, str]] | None:
        with self._lock:
            if self.match is not None and not self.match(method, path):
                return None
            if self.faults:
                return self.faults.pop(0)
            if self.budget > 0 and self.menu and self._random.random() < self.rate:
                self.budget -= 1
                return self._random.choice(self.menu)
            return None

    def record(self, method: str, path: str, status: int, injected: bool) -> None:
        with self._lock:
            self.log.append((method, path, status, injected))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _handle(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        body = self._read_body()
        fault = proxy.next_fault(self.command, self.path)
        if fault is not None and fault[0] == "reset":  # the connection drops before any answer
            proxy.record(self.command, self.path, 0, True)
            self._reset()
            return
        forward_then = fault[0] if fault is not None and fault[0] in ("reset-after", "truncate") else None
        if fault is not None and forward_then is None:
            status, headers = fault
            proxy.record(self.command, self.path, status, True)  # before answering: the client may look at once
            data = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "injected fault"}]}).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            conn.request(
                self.command,
                self.path,
                body=body if body or self.command in ("POST", "PUT", "PATCH") else None,
                headers=headers,
            )
            response = conn.getresponse()
            data = response.read()
            proxy.record(self.command, self.path, response.status, forward_then is not None)
            if forward_then == "reset-after":  # the upstream did the work; its answer is lost
                self._reset()
                return
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in _HOP_HEADERS | {"content-length", "date", "server"}:
                    self.send_header(key, value)
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                if forward_then == "truncate" and len(data) > 1:
                    self.wfile.write(data[: len(data) // 2])
                    self._reset()
                    return
                self.wfile.write(data)
        finally:
            conn.close()

    def _reset(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), as a crashing proxy would."""
        import socket
        import struct

        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(length) if length else b""

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# --- fixtures --------------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a real registry get the ``registry`` mark (``-m "not registry"`` skips them)."""
    for item in items:
        if REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.registry)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """An anonymous plain-http registry."""
    require_registry_binary()
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BasicRegistry]:
    """A registry with htpasswd auth; ``.username`` and ``.password`` log in."""
    require_registry_binary()
    server = BasicRegistry(tmp_path_factory.mktemp("basic-registry"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """The token server behind ``token_registry``."""
    server = TokenServer(tmp_path_factory.mktemp("token-server"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer) -> Iterator[RegistryServer]:
    """A registry with Docker token auth; ``.tokens`` is its :class:`TokenServer`."""
    require_registry_binary()
    server = RegistryServer(tmp_path_factory.mktemp("token-registry"), auth=token_server.registry_auth())
    server.tokens = token_server  # type: ignore[attr-defined]
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``fault_proxy(upstream_host, faults)`` starts a :class:`FaultProxy` (stopped after the test)."""
    started: list[FaultProxy] = []

    def start(upstream: str, faults: Sequence[tuple[int | str, dict[str, str]]] = (), **kwargs: object) -> FaultProxy:
        proxy = FaultProxy(upstream, faults, **kwargs)  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
