"""lamina.oci.pool: no connection is closed under a request that was handed it (encode/httpcore#1110).

The race needs a connection's keep-alive to run out just as it is handed to a thread that is slow to wake.
With a keep-alive of 2 ms, 16 threads and 8 connections it comes up several times a second on loopback:
httpcore's own pool then fails requests with ``EBADF`` or leaves them waiting for their read time-out.
"""

from __future__ import annotations

import http.server
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lamina.oci.http import LazyTLSTransport, make_client
from lamina.oci.pool import _HoldAssigned


class _Empty(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # the churn opens hundreds of connections; a full backlog would look like a stall


@pytest.fixture
def loopback() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Empty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_connections_handed_to_requests_are_never_closed_under_them(loopback: str) -> None:
    keepalive = 0.002
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8, keepalive_expiry=keepalive)
    client = httpx.Client(transport=LazyTLSTransport(False, limits, proxies={}), timeout=httpx.Timeout(10.0))
    failures: Counter[str] = Counter()
    lock = threading.Lock()

    def requests(seed: int) -> None:
        pauses = random.Random(seed)
        for _ in range(150):
            time.sleep(pauses.random() * keepalive * 2)  # about half the idle connections expire before reuse
            try:
                client.head(loopback).raise_for_status()
            except httpx.HTTPError as exc:
                with lock:
                    failures[f"{type(exc).__name__}: {exc}"] += 1

    with client, ThreadPoolExecutor(16) as pool:
        list(pool.map(requests, range(16)))
    assert not failures, f"requests failed on connections the pool closed under them: {dict(failures)}"


@pytest.mark.parametrize("proxies", [{}, {"http": "http://127.0.0.1:9"}])
def test_every_pool_lamina_makes_holds_assigned_connections(proxies: dict[str, str]) -> None:
    transport = LazyTLSTransport(False, httpx.Limits(max_connections=2), proxies=proxies)
    pool = transport._pool("http", transport.proxy_for(httpx.URL("http://registry.test/v2/")))._pool
    assert isinstance(pool, _HoldAssigned)
    with make_client() as client:
        assert isinstance(client._transport, LazyTLSTransport)
