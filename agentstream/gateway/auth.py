"""Bearer authentication with a key cache that revocations clear at once.

A Postgres lookup per request would cap the gateway far below its target, so
looked-up keys are cached (by their hash, never the key itself) for
``key_cache_s``. Revocation must still bite at once: ``tenants revoke``
notifies ``agentstream_api_keys`` and every gateway listening clears its
cache. Should the listening connection drop, the cache TTL still bounds how
long a revoked key keeps working. Unknown keys are cached briefly too
(1 s), so a client hammering with a wrong key costs one query a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg

from agentstream.gateway.errors import unauthorized
from agentstream.gateway.tenants import NOTIFY_CHANNEL, Tenant, TenantStore, hash_key
from projections.db import libpq_url

log = logging.getLogger(__name__)

MAX_CACHED = 100_000
NEGATIVE_TTL_S = 1.0


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; 401 otherwise."""
    if not header:
        raise unauthorized("missing Authorization: Bearer <API key>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <API key>'")
    return token.strip()


class Authenticator:
    """Turns an Authorization header into a :class:`Tenant`, or raises 401."""

    def __init__(self, store: TenantStore, *, cache_s: float = 30.0) -> None:
        self.store = store
        self.cache_s = cache_s
        self._good: dict[bytes, tuple[Tenant, float]] = {}
        self._bad: dict[bytes, float] = {}
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while revocations are being listened for."""

    def clear(self) -> None:
        """Forget every cached key (a revocation happened somewhere)."""
        self._good.clear()
        self._bad.clear()

    def cached(self, header: str | None) -> Tenant | None:
        """The tenant of a key seen recently, without any I/O; None means ask
        :meth:`authenticate` (which also produces the 401s)."""
        if header is None or not header.startswith("Bearer "):
            return None
        entry = self._good.get(hash_key(header[7:].strip()))
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        return None

    async def authenticate(self, header: str | None) -> Tenant:
        token = bearer_token(header)
        digest = hash_key(token)
        now = time.monotonic()
        cached = self._good.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        if self._bad.get(digest, 0.0) > now:
            raise unauthorized("invalid or revoked API key")
        tenant = await self.store.lookup(token)
        if len(self._good) >= MAX_CACHED or len(self._bad) >= MAX_CACHED:
            self.clear()
        if tenant is None:
            self._bad[digest] = now + NEGATIVE_TTL_S
            raise unauthorized("invalid or revoked API key")
        self._good[digest] = (tenant, now + self.cache_s)
        return tenant

    async def listen(self, database_url: str) -> None:
        """Start clearing the cache on every revocation (LISTEN agentstream_api_keys)."""
        self._listen_task = asyncio.create_task(self._listen(libpq_url(database_url)))

    async def _listen(self, url: str) -> None:
        def on_notify(*_: Any) -> None:
            self.clear()

        while True:
            try:
                self._listener = await asyncpg.connect(url)
                await self._listener.add_listener(NOTIFY_CHANNEL, on_notify)
                self.clear()  # revocations while we were not listening
                self.listening.set()
                closed = asyncio.Event()
                self._listener.add_termination_listener(lambda *_, done=closed: done.set())
                await closed.wait()
                self.listening.clear()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Postgres away: the TTL still bounds staleness
                self.listening.clear()
                log.warning("key revocation listener: %s; retrying", error)
            await asyncio.sleep(2.0)

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listen_task
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close()
