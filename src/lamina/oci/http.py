"""HTTP for everything lamina downloads: one client factory, one retry policy, one verified download.

The registry client, the Debian archive and wheel fetching all go through here, so a flaky network is
handled the same way everywhere:

* :class:`RetryPolicy` — how often and how long to wait. Connection errors (except "connection refused",
  which is final), time-outs and 408/429/5xx answers are retried with deterministic exponential backoff
  (no jitter: a test can count attempts), honouring ``Retry-After`` (seconds or an HTTP date, capped).
  A TLS certificate failure is never retried: it will not heal by itself.
* :func:`make_client` — an ``httpx.Client`` that trusts the system CA bundle (``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` when set, as behind a TLS-inspecting proxy), with time-outs and ``lamina/<version>``
  as its user agent.
* :func:`download` — streams a URL into a writer, resumes a broken transfer with ``Range`` where the
  server allows it (else starts over in a fresh writer), checks the size and sha256, and raises named
  errors (:class:`~lamina.errors.DownloadError`, :class:`~lamina.errors.CertificateError`,
  :class:`~lamina.errors.DigestMismatchError`) that say the URL, what happened and what to do.
"""

from __future__ import annotations

import email.utils
import errno
import functools
import hashlib
import logging
import os
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypeVar

import httpx

from lamina.errors import CertificateError, DigestMismatchError, DownloadError
from lamina.oci.pool import hold_assigned

if TYPE_CHECKING:
    from lamina.oci.store import BlobStore

log = logging.getLogger("lamina.http")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0


def retry_after_seconds(value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, min(when.timestamp() - current, cap))


def refused(exc: BaseException) -> bool:
    """True when the connection was refused: nothing listens there, so retrying is pointless."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return True
        seen = seen.__cause__ or seen.__context__
    return "connection refused" in str(exc).lower()


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc``, if that is what it is."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def describe(exc: BaseException) -> str:
    """One line saying what went wrong with a transfer (the first line of the error, or its type)."""
    if (cert := certificate_failure(exc)) is not None:
        return f"TLS certificate verification failed: {cert.verify_message or cert}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to try a request and how long to wait in between.

    ``attempts`` counts every try (1 = no retry). The wait after the n-th failure is
    ``backoff * 2**(n-1)`` seconds, capped at ``max_delay``, unless the server said ``Retry-After``.
    """

    attempts: int = 4
    backoff: float = 0.5
    max_delay: float = MAX_RETRY_AFTER
    statuses: frozenset[int] = RETRY_STATUSES
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)

    def retries_status(self, status: int) -> bool:
        return status in self.statuses

    def retries_error(self, exc: BaseException) -> bool:
        """Transport errors worth another try: not a refused connection, not a bad certificate."""
        return isinstance(exc, httpx.TransportError) and not refused(exc) and certificate_failure(exc) is None

    def delay(self, failures: int, retry_after: str | None = None) -> float:
        told = retry_after_seconds(retry_after, cap=self.max_delay)
        if told is not None:
            return told
        return min(self.backoff * 2 ** max(0, failures - 1), self.max_delay)

    def wait(self, failures: int, retry_after: str | None = None) -> None:
        delay = self.delay(failures, retry_after)
        log.debug("retrying in %.2fs", delay)
        self.sleep(delay)


DEFAULT_POLICY = RetryPolicy()


@functools.cache
def user_agent() -> str:
    """``lamina/<version>``, read from the installed distribution (importing lamina itself is not needed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"lamina/{version('lamina')}"
    except PackageNotFoundError:
        return "lamina/0+unknown"


#: A private CA trusted in addition to the default ones (``--ca-file``, ``ca_file`` in [project]): see :func:`trust`.
_extra_ca: str | None = None


def trust(ca_file: str | os.PathLike[str] | None) -> None:
    """Trust ``ca_file`` (PEM) too, in every client :func:`make_client` makes from now on (None: stop)."""
    global _extra_ca
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=os.fspath(ca_file))
        except (OSError, ssl.SSLError) as e:
            raise CertificateError(f"cannot use CA file {ca_file}: {e}", url=str(ca_file),
                                   reason="bad CA file", hint="give a PEM file of CA certificates") from None
    _extra_ca = os.fspath(ca_file) if ca_file is not None else None


def ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """Trust ``cafile`` only, else ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set (else the system CA store)
    plus the CA given to :func:`trust`. Made once per set of inputs: loading a CA bundle takes ~50 ms."""
    return _context(cafile, os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None,
                    _extra_ca)


@functools.lru_cache(maxsize=8)
def _context(cafile: str | None, cert_file: str | None, cert_dir: str | None, extra: str | None) -> ssl.SSLContext:
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    context = ssl.create_default_context(cafile=cert_file, capath=cert_dir)
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


class LazyTLSTransport(httpx.BaseTransport):
    """One connection pool per URL scheme and proxy, made on first use: a client that only ever speaks
    plain HTTP (a loopback registry) never loads a CA bundle, and one that does loads it once per process.

    Proxies are read from the environment as curl and httpx read them (``https_proxy``, ``http_proxy``,
    ``all_proxy``, ``no_proxy``; lower or upper case) and chosen per request."""

    def __init__(self, verify: bool | str, limits: httpx.Limits, proxies: Mapping[str, str] | None = None) -> None:
        self._verify = verify
        self._limits = limits
        self._proxies = dict(urllib.request.getproxies() if proxies is None else proxies)
        self._pools: dict[tuple[str, str | None], httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy a request to ``url`` goes through, if any (``no_proxy`` honoured)."""
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy:
            return None
        host = f"{url.host}:{url.port}" if url.port else url.host
        if urllib.request.proxy_bypass_environment(host, self._proxies):
            return None
        return proxy if "://" in proxy else f"http://{proxy}"

    def _pool(self, scheme: str, proxy: str | None) -> httpx.HTTPTransport:
        with self._lock:
            if (scheme, proxy) not in self._pools:
                tls = (scheme == "https" or (proxy or "").startswith("https:")) and self._verify
                context = ssl_context(self._verify if isinstance(self._verify, str) else None) if tls else False
                self._pools[scheme, proxy] = hold_assigned(httpx.HTTPTransport(
                    verify=context, limits=self._limits, proxy=httpx.Proxy(proxy) if proxy else None))
            return self._pools[scheme, proxy]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool(request.url.scheme, self.proxy_for(request.url)).handle_request(request)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def make_client(
    *,
    timeout: float = 60.0,
    connect_timeout: float = 15.0,
    verify: bool | str = True,
    max_connections: int = 8,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: Mapping[str, list[Callable[..., object]]] | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` as lamina uses it everywhere (``verify``: True, False or a CA bundle path).
    Proxies and CA bundles are the transport's business (:class:`LazyTLSTransport`), so httpx is told not
    to read the environment: it would make a TLS context for every proxy up front."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.Client(
        auth=auth,
        timeout=httpx.Timeout(timeout, connect=min(timeout, connect_timeout)),
        follow_redirects=True,
        limits=limits,
        transport=transport or LazyTLSTransport(verify, limits),
        trust_env=False,
        event_hooks=dict(event_hooks or {}),
        headers={"User-Agent": user_agent()},
    )


class Sink(Protocol):
    """Where a download goes: a store's blob writer, a buffer. ``abort`` throws away what was written."""

    def write(self, data: bytes, /) -> object: ...

    def abort(self) -> None: ...


S = TypeVar("S", bound=Sink)


class Buffer:
    """A :class:`Sink` in memory, for small files (an ``InRelease``)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(data)
        return len(data)

    def abort(self) -> None:
        self.parts.clear()

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Transfer:
    """The state of one download across attempts: the sink, the hash and the bytes received so far."""

    def __init__(self, open_sink: Callable[[], S]) -> None:
        self.open_sink = open_sink
        self.sink = open_sink()
        self.hash = hashlib.sha256()
        self.received = 0

    def restart(self) -> None:
        self.sink.abort()
        self.sink = self.open_sink()
        self.hash = hashlib.sha256()
        self.received = 0

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)
        self.hash.update(chunk)
        self.received += len(chunk)


def download(
    client: httpx.Client,
    url: str,
    open_sink: Callable[[], S],
    *,
    expected_digest: str | None = None,
    size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str | None = None,
) -> S:
    """Stream ``url`` into a sink from ``open_sink`` and return it, complete and verified (the caller commits it).

    A transfer broken after some bytes is resumed with ``Range: bytes=N-``; a server that answers 200
    to that gets a fresh sink (the first one is aborted). ``on_progress`` gets the byte count of each
    chunk written (a restart reports the repeated bytes again). With ``expected_digest``
    (``sha256:<hex>``) and ``size``, anything else is refused: the sink is aborted and nothing is kept.
    """
    what = what or url
    transfer = _Transfer(open_sink)
    failures = 0
    try:
        while True:
            # identity: a Range must count the bytes we store, not those of a compressed encoding
            headers = {"Accept-Encoding": "identity"}
            if transfer.received:
                headers["Range"] = f"bytes={transfer.received}-"
            retry_after: str | None = None
            last_status: int | None = None
            try:
                with client.stream("GET", url, headers=headers) as response:
                    status = response.status_code
                    log.debug("GET %s (from byte %d) -> %d", url, transfer.received, status)
                    if status == 200 and transfer.received:
                        log.debug("%s ignored the Range request; starting over", url)
                        transfer.restart()
                    if status == 200 or (status == 206 and _resumes_at(response, transfer.received)):
                        for chunk in response.iter_bytes():  # as they come: a break keeps what arrived
                            transfer.write(chunk)
                            if on_progress is not None:
                                on_progress(len(chunk))
                            if size is not None and transfer.received > size:
                                raise _too_large(what, url, size)
                        if size is None or transfer.received == size:
                            break
                        problem = f"the transfer ended after {transfer.received} of {size} bytes"
                    elif status == 206:
                        transfer.restart()  # a range we did not ask for: start over
                        problem = "the server answered a range we did not ask for"
                    elif policy.retries_status(status):
                        retry_after = response.headers.get("Retry-After")
                        last_status = status
                        problem = f"HTTP {status} {response.reason_phrase}"
                    else:
                        raise _refused_status(what, url, status, response.reason_phrase)
            except httpx.TransportError as exc:
                log.debug("GET %s -> %s", url, describe(exc))
                failures += 1
                if not policy.retries_error(exc) or failures >= policy.attempts:
                    raise _unreachable(what, url, exc, failures) from None
                policy.wait(failures)
                continue
            failures += 1
            if failures >= policy.attempts:
                raise DownloadError(
                    f"downloading {what} failed: {problem} (gave up after {failures} attempts)",
                    url=url, status=last_status, reason=f"{problem} (gave up after {failures} attempts)",
                    hint=f"{_host(url)} is failing or overloaded; try again later",
                )
            policy.wait(failures, retry_after)
        _verify(transfer, what, url, expected_digest, size)
    except BaseException:
        transfer.sink.abort()
        raise
    return transfer.sink  # type: ignore[return-value]


def download_blob(
    client: httpx.Client,
    url: str,
    store: BlobStore,
    digest: str,
    *,
    size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    what: str | None = None,
) -> int:
    """Download ``url`` into ``store`` as the blob ``digest`` (verified on the way); returns its size."""
    writer = download(client, url, store.writer, expected_digest=digest, size=size, on_progress=on_progress,
                      policy=policy, what=what)
    writer.commit(digest)
    return writer.size


def fetch_bytes(client: httpx.Client, url: str, *, policy: RetryPolicy = DEFAULT_POLICY,
                what: str | None = None) -> bytes:
    """The body of ``url``, with the retries of :func:`download` (for small, later-verified files)."""
    return download(client, url, Buffer, policy=policy, what=what).getvalue()


def _resumes_at(response: httpx.Response, offset: int) -> bool:
    return response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


def _host(url: str) -> str:
    return httpx.URL(url).host or url


def _verify(transfer: _Transfer, what: str, url: str, expected_digest: str | None, size: int | None) -> None:
    got = "sha256:" + transfer.hash.hexdigest()
    if size is not None and transfer.received != size:
        raise DigestMismatchError(f"{what} from {url} is {transfer.received} bytes, expected {size}",
                                  hint="the server sent other data than expected; nothing was kept")
    if expected_digest is not None and got != expected_digest:
        error = DigestMismatchError(
            f"{what} from {url} does not match its digest: expected {expected_digest}, got {got}",
            hint="the server sent corrupt or other data; nothing was kept. Try again, or check the source",
        )
        error.actual = got  # type: ignore[attr-defined]
        raise error


def _too_large(what: str, url: str, size: int) -> DigestMismatchError:
    return DigestMismatchError(f"{what} from {url} is larger than the expected {size} bytes",
                               hint="the server sent other data than expected; nothing was kept")


def _refused_status(what: str, url: str, status: int, reason: str) -> DownloadError:
    if status == 404:
        hint = "the file is not there (any more): check the URL"
    elif status in (401, 403):
        hint = "the server wants credentials or refuses them: check the URL and any proxy"
    else:
        hint = f"check the URL and that {_host(url)} serves it"
    said = f"HTTP {status} {reason}".rstrip()
    return DownloadError(f"downloading {what} failed: {url} answered {said}", url=url, status=status, reason=said,
                         hint=hint)


def _unreachable(what: str, url: str, exc: BaseException, failures: int) -> DownloadError:
    tries = f" (after {failures} attempts)" if failures > 1 else ""
    if (cert := certificate_failure(exc)) is not None:
        return CertificateError(
            f"downloading {what} failed: the TLS certificate of {_host(url)} did not verify: "
            f"{cert.verify_message or cert}",
            url=url, reason=describe(exc),
            hint="behind a TLS-inspecting proxy, point SSL_CERT_FILE at a CA bundle that holds its CA; "
            "otherwise the server is not who it claims to be",
        )
    return DownloadError(
        f"downloading {what} failed: {describe(exc)}{tries}",
        url=url, reason=f"{describe(exc)}{tries}",
        hint=f"check the network (and proxy) to {_host(url)}, and the URL",
    )
