"""HTTP to one registry: scheme choice, retries with backoff, request logging and error mapping.

* Scheme: https always. Plain http only for a host marked insecure or a loopback host (127.0.0.0/8,
  ``localhost``, ``::1``), as Docker does: try https first, fall back to http when TLS or the connection
  fails, and remember the answer.
* Retries: lamina's one :class:`~lamina.oci.http.RetryPolicy` (connection errors except "connection
  refused" and bad certificates, 408, 429 and 5xx answers; exponential backoff; ``Retry-After``).
  The client comes from :func:`~lamina.oci.http.make_client`; only the auth flow is the registry's own.
* Logging: ``lamina.registry`` at DEBUG, one line per request (method, URL with upload state and
  unknown query values elided, status). Headers, and so credentials and tokens, are never logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections.abc import Callable, Iterable

import httpx

from lamina.errors import AuthError, NotFoundError, RegistryError, RegistryUnreachableError
from lamina.oci.http import (
    RETRY_STATUSES,
    RetryPolicy,
    certificate_failure,
    describe,
    make_client,
    retry_after_seconds,
)
from lamina.oci.registry.auth import BodyNotReplayable

__all__ = ["Body", "Session", "error_codes", "error_text", "is_loopback", "redact", "retry_after_seconds"]

log = logging.getLogger("lamina.registry")

_LOGGED_PARAMS = {"digest", "mount", "from", "n", "last", "service", "scope"}

#: A request body: bytes, or a factory making a fresh byte iterator for each attempt.
Body = bytes | Callable[[], Iterable[bytes]] | None


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``, with or without a port."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def redact(url: httpx.URL) -> str:
    """The URL for a log line: query values we do not know to be harmless are elided."""
    if not url.query:
        return str(url)
    params = [(k, v if k in _LOGGED_PARAMS else "...") for k, v in url.params.multi_items()]
    return str(url.copy_with(query=None)) + "?" + "&".join(f"{k}={v}" for k, v in params)


def error_text(response: httpx.Response) -> str:
    """The registry's own words for an error: ``CODE: message`` from its JSON body, or the start of the body."""
    try:
        errors = json.loads(response.content).get("errors") or []
        parts = [f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        pass
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        text = ""
    return text[:200] or response.reason_phrase


def error_codes(response: httpx.Response) -> set[str]:
    """The ``errors[].code`` values of a registry error body."""
    try:
        return {e.get("code") for e in json.loads(response.content).get("errors") or [] if isinstance(e, dict)}
    except (ValueError, AttributeError, httpx.ResponseNotRead):
        return set()


class Session:
    """Sends requests to one registry with retries; maps failures to lamina errors."""

    def __init__(
        self,
        registry: str,
        *,
        host: str | None = None,
        auth: httpx.Auth | None,
        insecure: bool = False,
        retries: int = 3,
        timeout: float = 60,
        backoff: float = 0.5,
        max_connections: int = 8,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        on_request: Callable[[httpx.Request], None] | None = None,
    ) -> None:
        self.registry = registry
        self.host = host or registry
        self.retry = RetryPolicy(attempts=max(0, retries) + 1, backoff=backoff)
        self._allow_http = insecure or is_loopback(self.host)
        self._scheme: str | None = None if self._allow_http else "https"
        self._scheme_lock = threading.Lock()
        hooks: dict[str, list[Callable[..., object]]] = {"request": [on_request]} if on_request else {}
        self.http = make_client(auth=auth, timeout=timeout, max_connections=max_connections, transport=transport,
                                verify=verify, event_hooks=hooks)

    def close(self) -> None:
        self.http.close()

    # --- URLs -----------------------------------------------------------------------------------

    def url(self, path: str) -> httpx.URL:
        """The absolute URL of an API ``path`` such as ``/v2/``."""
        return httpx.URL(f"{self.scheme}://{self.host}{path}")

    @property
    def scheme(self) -> str:
        """``https``, or ``http`` for an insecure/loopback registry that does not speak TLS (probed once)."""
        if self._scheme is None:
            with self._scheme_lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return self._scheme

    def _probe_scheme(self) -> str:
        if is_loopback(self.host) and self._answers_plain_http():
            return "http"
        try:
            self.http.get(f"https://{self.host}/v2/", auth=None).close()
            return "https"
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            if certificate_failure(exc) is not None:  # it speaks TLS, with a certificate we do not trust:
                raise self._unreachable(exc, attempts=1) from None  # falling back to http would hide that
            log.debug("https to %s failed (%s); using http", self.host, describe(exc))
            return "http"
        except httpx.TimeoutException:
            return "http"

    def _answers_plain_http(self) -> bool:
        """A loopback registry (traffic that never leaves the machine) that answers plain HTTP. Asked
        first, it spares the TLS attempt (and loading the CA bundle) that almost every loopback registry
        refuses. A TLS server answers such a request with 400 "...HTTP request to an HTTPS server" (Go's
        and nginx's words), or not at all: then TLS is tried as for any other host."""
        try:
            response = self.http.get(f"http://{self.host}/v2/", auth=None)
        except httpx.TransportError:
            return False
        try:
            return response.status_code != 400 or b"https" not in response.content[:512].lower()
        finally:
            response.close()

    # --- requests -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        expect: Iterable[int] = (200,),
        what: str = "",
        headers: dict[str, str] | None = None,
        content: Body = None,
        stream: bool = False,
    ) -> httpx.Response:
        """Send with retries; return the response if its status is in ``expect``, else raise.

        ``url`` is a URL, or a path (``/v2/...``) on this registry. ``what`` names the object for errors.
        With ``stream=True`` the caller must close the response.
        """
        expected = set(expect)
        target = self.url(url) if isinstance(url, str) else url
        what = what or f"{method} {target.path}"
        attempts, attempt, resent = self.retry.attempts, 0, False
        while True:
            body = content() if callable(content) else content
            try:
                request = self.http.build_request(method, target, headers=headers, content=body)
                response = self.http.send(request, stream=stream)
            except BodyNotReplayable:
                if resent:
                    raise
                resent = True  # the auth flow now holds a token: send once more with a fresh body
                continue
            except httpx.TransportError as exc:
                log.debug("%s %s -> %s", method, redact(target), describe(exc))
                attempt += 1
                if not self.retry.retries_error(exc) or attempt >= attempts:
                    raise self._unreachable(exc, attempts=attempt, what=what) from None
                self.retry.wait(attempt)
                continue
            log.debug("%s %s -> %d", method, redact(target), response.status_code)
            attempt += 1
            if response.status_code in expected:
                return response
            if self.retry.retries_status(response.status_code) and attempt < attempts:
                response.close()
                self.retry.wait(attempt, response.headers.get("Retry-After"))
                continue
            raise self._failure(response, what, attempts=attempt)

    def _unreachable(self, exc: BaseException, *, attempts: int, what: str = "") -> RegistryUnreachableError:
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        if certificate_failure(exc) is not None:
            return RegistryUnreachableError(
                f"registry {self.registry}: {describe(exc)}",
                hint="trust the registry's CA with --ca-file PATH or ca_file in [project] (or SSL_CERT_FILE); "
                     "docs/registries.md",
            )
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) or not what:
            return RegistryUnreachableError(
                f"registry {self.registry} is unreachable{tries}: {describe(exc)}",
                hint="check the host name and port, your network, and that the registry is running",
            )
        return RegistryUnreachableError(
            f"the connection to registry {self.registry} broke during {what}{tries}: {describe(exc)}",
            hint="the registry (or a proxy) reset the connection; run again: what was sent is kept",
        )

    def _failure(self, response: httpx.Response, what: str, *, attempts: int) -> RegistryError:
        try:
            response.read()
        finally:
            response.close()
        status = f"{response.status_code} {response.reason_phrase}"
        said = error_text(response)
        error: RegistryError
        if response.status_code == 404:
            error = NotFoundError(
                f"{what} not found in registry {self.registry} ({said})",
                hint="check the repository name and tag or digest, and that it was pushed",
            )
        elif response.status_code in (401, 403):
            error = AuthError(f"registry {self.registry} denied {what}: {status} ({said})")
        else:
            gave_up = f"; gave up after {attempts} attempts" if response.status_code in RETRY_STATUSES else ""
            error = RegistryError(f"registry {self.registry} answered {status} to {what}: {said}{gave_up}")
        error.status = response.status_code  # type: ignore[attr-defined]
        error.codes = error_codes(response)  # type: ignore[attr-defined]
        return error
