"""Registry authentication as an ``httpx.Auth`` flow: Basic, and Docker's Bearer token protocol.

On a 401 the flow reads ``WWW-Authenticate``. ``Basic`` → resend with the credential. ``Bearer
realm=..,service=..,scope=..`` → ask the realm for a token for those scopes (plus ``pull`` on the source
repository of a cross-repository mount), with Basic credentials if we have some, anonymously otherwise,
or by ``grant_type=refresh_token`` for an identity token; then resend with the token. Tokens are cached
per scope set, and each repository remembers its last scope set so later requests carry the token
up front (no 401 round trip, and streamed upload bodies need not be replayed).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

import httpx

from lamina.errors import AuthError, RegistryError
from lamina.oci.registry.credentials import Credential

log = logging.getLogger("lamina.registry")

_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:blobs|manifests|tags|referrers)/")
_EXPIRY_MARGIN = 10.0
_DEFAULT_EXPIRES_IN = 60


class BodyNotReplayable(httpx.StreamConsumed):
    """A request with a streamed body got a 401: send it again with a fresh body (the token is cached now)."""


@dataclass(frozen=True)
class Challenge:
    """One parsed ``WWW-Authenticate`` challenge."""

    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def parse_challenges(values: list[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (quoted values may contain commas)."""
    challenges: list[Challenge] = []
    for value in values:
        for part in _split_unquoted_commas(value):
            head, _, rest = part.partition(" ")
            if "=" not in head:  # "Bearer realm=..." or a bare "Basic" starts a new challenge
                challenges.append(Challenge(head.lower(), {}))
                part = rest.strip()
            if challenges and part:
                for key, raw in _PARAM_RE.findall(part):
                    challenges[-1].params[key.lower()] = _unquote(raw)
    return challenges


def _split_unquoted_commas(value: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def merge_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """One scope per resource with its actions united and sorted (``repository:a:push,pull`` + ``..:pull``)."""
    actions: dict[str, set[str]] = {}
    for scope in scopes:
        resource, sep, wanted = scope.rpartition(":")
        if not sep or not resource:
            actions.setdefault(scope, set())
            continue
        actions.setdefault(resource, set()).update(a for a in wanted.split(",") if a)
    return frozenset(f"{resource}:{','.join(sorted(acts))}" if acts else resource for resource, acts in actions.items())


def request_scopes(request: httpx.Request) -> tuple[str, ...]:
    """Scopes we add ourselves: ``pull`` on the source repository of a cross-repository mount."""
    source = request.url.params.get("from")
    if request.method == "POST" and source and request.url.params.get("mount"):
        return (f"repository:{source}:pull",)
    return ()


def _cache_key(request: httpx.Request) -> str:
    match = _REPO_PATH_RE.match(request.url.path)
    repo = match.group(1) if match else ""
    return f"{repo} {request_scopes(request)}"


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Answers a registry's 401 challenges for one registry; thread-safe; never logs secrets."""

    def __init__(self, registry: str, credential: Credential | None, *, searched: str = "") -> None:
        self.registry = registry
        self.credential = credential
        self.searched = searched
        self._lock = threading.Lock()
        self._tokens: dict[frozenset[str], _Token] = {}
        self._scopes_for: dict[str, frozenset[str]] = {}
        self._basic = False

    # --- the flow -------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._authorize_upfront(request)
        response = yield request
        if response.status_code != 401:
            return
        challenges = parse_challenges(response.headers.get_list("www-authenticate"))
        bearer = next((c for c in challenges if c.scheme == "bearer"), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            scopes = merge_scopes(bearer.scopes + request_scopes(request))
            token = yield from self._fetch_token(bearer, scopes)
            with self._lock:
                self._scopes_for[_cache_key(request)] = scopes
            request.headers["Authorization"] = f"Bearer {token}"
            what = " ".join(sorted(scopes)) or None
        elif basic is not None:
            request.headers["Authorization"] = self._basic_header()
            self._basic = True
            what = None
        else:
            raise AuthError(
                f"registry {self.registry} asked for an authentication scheme lamina does not speak: "
                f"{response.headers.get('www-authenticate', '(none)')!r}"
            )
        if not isinstance(request.stream, httpx.ByteStream):
            raise BodyNotReplayable()  # a streamed body is gone; the caller re-opens it, now with the token
        response = yield request
        if response.status_code == 401:
            raise self._refused(what)

    def _authorize_upfront(self, request: httpx.Request) -> None:
        if "Authorization" in request.headers:
            return
        with self._lock:
            scopes = self._scopes_for.get(_cache_key(request))
            token = self._tokens.get(scopes) if scopes is not None else None
            basic = self._basic
        if token is not None and token.expires_at > time.monotonic():
            request.headers["Authorization"] = f"Bearer {token.value}"
        elif basic and self.credential is not None:
            request.headers["Authorization"] = self._basic_header()

    # --- Basic ----------------------------------------------------------------------------------

    def _basic_header(self) -> str:
        credential = self._require_credential()
        if credential.is_identity_token:
            raise AuthError(
                f"registry {self.registry} wants a username and password, but {credential.source} holds an "
                "identity token",
                hint=f"log in to {self.registry} with a username and password",
            )
        raw = f"{credential.username}:{credential.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    # --- Bearer ---------------------------------------------------------------------------------

    def _fetch_token(
        self, challenge: Challenge, scopes: frozenset[str]
    ) -> Generator[httpx.Request, httpx.Response, str]:
        with self._lock:
            cached = self._tokens.get(scopes)
        if cached is not None and cached.expires_at > time.monotonic():
            return cached.value
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"registry {self.registry} sent a Bearer challenge without a realm")
        token_request = self._token_request(realm, challenge.params.get("service"), sorted(scopes))
        started = time.monotonic()
        response = yield token_request
        response.read()
        log.debug("%s %s -> %d", token_request.method, realm, response.status_code)
        if response.status_code in (401, 403):
            raise self._refused(f"{' '.join(sorted(scopes)) or 'a token'} (token server {realm})")
        if response.status_code != 200:
            raise RegistryError(
                f"token server {realm} for registry {self.registry} answered {response.status_code} "
                f"{response.reason_phrase}",
                hint="the registry's authentication service is failing; try again later",
            )
        token, expires_in = _read_token(response, realm)
        with self._lock:
            self._tokens[scopes] = _Token(token, started + expires_in - _EXPIRY_MARGIN)
        return token

    def _token_request(self, realm: str, service: str | None, scopes: list[str]) -> httpx.Request:
        credential = self.credential
        if credential is not None and credential.is_identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": credential.password, "client_id": "lamina"}
            if service:
                form["service"] = service
            if scopes:
                form["scope"] = " ".join(scopes)
            return httpx.Request("POST", realm, data=form)
        params: list[tuple[str, str]] = []
        if service:
            params.append(("service", service))
        params.extend(("scope", scope) for scope in scopes)
        url = httpx.URL(realm)
        for key, value in params:
            url = url.copy_add_param(key, value)
        headers = {}
        if credential is not None:
            headers["Authorization"] = self._basic_header()
            url = url.copy_add_param("account", credential.username)
        return httpx.Request("GET", url, headers=headers)

    # --- errors ---------------------------------------------------------------------------------

    def _require_credential(self) -> Credential:
        if self.credential is None:
            raise self._refused(None)
        return self.credential

    def _refused(self, scope: str | None) -> AuthError:
        """The error for a 401 we cannot answer; ``scope`` says what we asked for (never a secret)."""
        scope_text = f" for {scope}" if scope else ""
        if self.credential is None:
            return AuthError(
                f"registry {self.registry} requires authentication{scope_text} and no credentials were found; "
                f"tried: {self.searched or 'flags, environment, Docker and Podman config'}",
                hint=f"run `docker login {self.registry}`, or set LAMINA_REGISTRY_USERNAME and "
                "LAMINA_REGISTRY_PASSWORD",
            )
        return AuthError(
            f"registry {self.registry} refused credentials from {self.credential.source}{scope_text}",
            hint="check the username and password (or token) and that the account may access this repository",
        )


def _read_token(response: httpx.Response, realm: str) -> tuple[str, float]:
    try:
        body = response.json()
        token = body.get("token") or body.get("access_token")
        expires_in = float(body.get("expires_in") or _DEFAULT_EXPIRES_IN)
    except (ValueError, AttributeError, TypeError):
        token, expires_in = None, 0.0
    if not token:
        raise RegistryError(f"token server {realm} answered without a token")
    return token, max(expires_in, _EXPIRY_MARGIN + 1)
