"""Connection pools that never close a connection they have already handed to a request.

httpcore's pool (1.0.9, the latest release; `encode/httpcore#1110`_) decides under its lock which idle
connections to close: those whose keep-alive has run out, surplus idle ones, or one idle connection to make
room for another origin. It closes them after releasing the lock. A connection counts as idle until the
thread it was handed to starts its request on it. So when one thread is handed a connection just as its
keep-alive expires, another thread's pass can decide to close it, and the close can land after the first
thread has sent its request. On Linux the close does not wake the ``poll()`` that waits for the answer,
and the request hangs until its read time-out (60 s for a registry), or fails with ``EBADF``.

lamina pushes with up to 16 threads on one client, while other threads compress and hash, so a woken thread
is often late: one cold build in about a hundred waited 59 s for a blob ``HEAD`` this way.

:func:`hold_assigned` fixes a transport's pool in place: each pass over the pool leaves out the
connections that requests hold (handed over or in use), so only connections nobody holds are expired or
closed, and the pool's limits still count the held ones. When httpcore fixes the race, this goes.

.. _encode/httpcore#1110: https://github.com/encode/httpcore/issues/1110
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import httpx

log = logging.getLogger("lamina.http")

_INTERNALS = ("_requests", "_connections", "_max_connections", "_max_keepalive_connections")


class _HoldAssigned:
    """Mixin for httpcore's ``ConnectionPool`` (and its proxy subclasses): see the module's docstring."""

    _requests: list[Any]
    _connections: list[Any]
    _max_connections: int
    _max_keepalive_connections: int

    def _assign_requests_to_connections(self) -> list[Any]:
        held = {request.connection for request in self._requests if request.connection is not None}
        kept = [connection for connection in self._connections if connection in held]
        limits = self._max_connections, self._max_keepalive_connections
        self._connections = [connection for connection in self._connections if connection not in held]
        self._max_connections -= len(kept)
        self._max_keepalive_connections -= len(kept)
        try:
            return super()._assign_requests_to_connections()  # type: ignore[misc]
        finally:
            self._connections = kept + self._connections  # what the pass kept or made, after the held ones
            self._max_connections, self._max_keepalive_connections = limits


@functools.cache
def _holding(cls: type) -> type:
    return type(f"Holding{cls.__name__}", (_HoldAssigned, cls), {})


def hold_assigned(transport: httpx.HTTPTransport) -> httpx.HTTPTransport:
    """Give ``transport``'s connection pool the fix above (left as it is if httpcore's pool has changed)."""
    pool = getattr(transport, "_pool", None)
    if pool is None or not all(hasattr(pool, name) for name in _INTERNALS):
        log.debug("httpcore's pool has changed shape; its connections are pooled as httpcore does it")
        return transport
    if not isinstance(pool, _HoldAssigned):
        pool.__class__ = _holding(type(pool))
    return transport
