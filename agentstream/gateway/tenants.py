"""Tenants and their API keys in Postgres.

A key looks like ``ask_<key id>_<secret>``: the key id (12 hex digits) is
public and names the key in ``agentstream tenants list`` and ``revoke``; the
secret is 32 random bytes (``secrets.token_urlsafe``). Only the SHA-256 of the
whole key is stored: with 256 bits of entropy a fast hash is enough (a slow
password hash protects low-entropy secrets, which these are not), and it keeps
the lookup one indexed equality.

Revoking sends ``NOTIFY agentstream_api_keys`` in the same transaction, so a
running gateway drops its key cache at once (:mod:`agentstream.gateway.auth`).

A tenant's limits live in its row: its command rate and burst (every gateway
reads them with the key, so a change reaches them within ``key_cache_s``) and
its LLM requests and tokens per minute (every LLM executor re-reads them, see
:mod:`processors.executors.pool.tenant_limits`). Each is the limit of the whole
deployment; NULL means the deployment's default.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.errors import AgentstreamError
from projections.db import raw_connection

KEY_PREFIX = "ask_"
NOTIFY_CHANNEL = "agentstream_api_keys"
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEY_PATTERN = re.compile(r"^ask_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$")


class TenantError(AgentstreamError, ValueError):
    """A tenant operation that cannot be done (bad name, exists, unknown)."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who a request is from, as its API key says."""

    tenant_id: str
    """The tenant; every command's ``tenant_id`` comes from here, never from a body."""
    key_id: str
    """The key used (public part)."""
    rate_per_s: float | None = None
    """This tenant's command rate; None for the gateway's default."""
    burst: int | None = None
    """This tenant's bucket size; None for the gateway's default."""


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's own limits (None: the deployment's default)."""

    rate_per_s: float | None = None
    burst: int | None = None
    llm_rpm: int | None = None
    llm_tpm: int | None = None


LIMIT_FIELDS = ("rate_per_s", "burst", "llm_rpm", "llm_tpm")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One API key as ``tenants list`` shows it (never the secret)."""

    key_id: str
    tenant_id: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None


def hash_key(key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def new_key() -> tuple[str, str]:
    """(key id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def check_tenant_name(name: str) -> str:
    if not TENANT_PATTERN.match(name):
        raise TenantError(
            f"tenant name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


class TenantStore:
    """Create tenants, issue, revoke, list and look up keys."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self, name: str, *, rate_per_s: float | None = None, burst: int | None = None
    ) -> tuple[str, str]:
        """A new tenant and its first key: (key id, full key). The key is shown once."""
        check_tenant_name(name)
        async with raw_connection(self.engine) as connection, connection.transaction():
            inserted = await connection.fetchval(
                "INSERT INTO tenants (tenant_id, rate_per_s, burst) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING tenant_id",
                name,
                rate_per_s,
                burst,
            )
            if inserted is None:
                raise TenantError(f"tenant {name!r} exists (use `agentstream tenants key`)")
            return await self._issue(connection, name)

    async def issue_key(self, name: str) -> tuple[str, str]:
        """Another key for an existing tenant (for rotation): (key id, full key)."""
        async with raw_connection(self.engine) as connection, connection.transaction():
            exists = await connection.fetchval("SELECT 1 FROM tenants WHERE tenant_id = $1", name)
            if exists is None:
                raise TenantError(f"no tenant {name!r}")
            return await self._issue(connection, name)

    @staticmethod
    async def _issue(connection: Any, tenant: str) -> tuple[str, str]:
        key_id, key = new_key()
        await connection.execute(
            "INSERT INTO api_keys (key_id, tenant_id, key_hash) VALUES ($1, $2, $3)",
            key_id,
            tenant,
            hash_key(key),
        )
        return key_id, key

    async def revoke(self, name_or_key_id: str) -> list[str]:
        """Revoke every key of tenant ``name_or_key_id``, or the key with that id.

        Returns the key ids revoked now (empty if nothing matched or all were revoked).
        """
        async with raw_connection(self.engine) as connection, connection.transaction():
            rows = await connection.fetch(
                "UPDATE api_keys SET revoked_at = now() "
                "WHERE (tenant_id = $1 OR key_id = $1) AND revoked_at IS NULL RETURNING key_id",
                name_or_key_id,
            )
            revoked = sorted(str(r["key_id"]) for r in rows)
            if revoked:
                await connection.execute(
                    "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, ",".join(revoked)
                )
            return revoked

    async def limits(self, name: str) -> TenantLimits:
        """The tenant's limits; TenantError if there is no such tenant."""
        async with raw_connection(self.engine) as connection:
            row = await connection.fetchrow(
                "SELECT rate_per_s, burst, llm_rpm, llm_tpm FROM tenants WHERE tenant_id = $1", name
            )
        if row is None:
            raise TenantError(f"no tenant {name!r}")
        return TenantLimits(*(row[f] for f in LIMIT_FIELDS))

    async def set_limits(self, name: str, changes: dict[str, float | int | None]) -> TenantLimits:
        """Change some of the tenant's limits (None clears one); returns them all."""
        unknown = set(changes) - set(LIMIT_FIELDS)
        if unknown:
            raise TenantError(f"unknown limit(s) {', '.join(sorted(unknown))}")
        for field, value in changes.items():
            if value is not None and value <= 0:
                raise TenantError(f"{field} must be above 0 (or none to clear), got {value}")
        if changes:
            names = sorted(changes)
            assignments = ", ".join(f"{n} = ${i + 2}" for i, n in enumerate(names))
            async with raw_connection(self.engine) as connection:
                done = await connection.execute(
                    f"UPDATE tenants SET {assignments} WHERE tenant_id = $1",  # names checked above
                    name,
                    *(changes[n] for n in names),
                )
            if done == "UPDATE 0":
                raise TenantError(f"no tenant {name!r}")
        return await self.limits(name)

    async def list(self) -> list[tuple[str, float | None, int | None, list[KeyInfo]]]:
        """Every tenant with its rate override and keys, by name."""
        async with raw_connection(self.engine) as connection:
            tenants = await connection.fetch(
                "SELECT tenant_id, rate_per_s, burst FROM tenants ORDER BY tenant_id"
            )
            keys = await connection.fetch(
                "SELECT key_id, tenant_id, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at, key_id"
            )
        by_tenant: dict[str, list[KeyInfo]] = {}
        for k in keys:
            info = KeyInfo(k["key_id"], k["tenant_id"], k["created_at"], k["revoked_at"])
            by_tenant.setdefault(info.tenant_id, []).append(info)
        return [
            (t["tenant_id"], t["rate_per_s"], t["burst"], by_tenant.get(t["tenant_id"], []))
            for t in tenants
        ]

    async def lookup(self, key: str) -> Tenant | None:
        """The tenant of a valid, unrevoked key; None otherwise."""
        match = KEY_PATTERN.match(key)
        if match is None:
            return None
        async with raw_connection(self.engine) as connection:
            row = await connection.fetchrow(
                "SELECT k.key_id, k.tenant_id, t.rate_per_s, t.burst "
                "FROM api_keys k JOIN tenants t USING (tenant_id) "
                "WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
                hash_key(key),
            )
        if row is None or row["key_id"] != match.group(1):
            return None
        return Tenant(row["tenant_id"], row["key_id"], row["rate_per_s"], row["burst"])
