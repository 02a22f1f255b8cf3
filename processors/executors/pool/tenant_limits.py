"""Per-tenant LLM limits from configuration: the tenants table's ``llm_rpm`` and ``llm_tpm``.

Operators set them with ``agentstream tenants limits NAME --llm-rpm N --llm-tpm N``;
every LLM executor re-reads them every ``tenant_limits_s`` and hands them to its
pool (:meth:`~processors.executors.pool.pool.LLMPool.set_tenant_limits`), so a change
reaches the whole deployment within that interval, without a restart. Each
executor applies its share of them, like every other limit.

Postgres is not on the calls' path: a failed read keeps the limits of the last
good one, and an executor that never read any uses the variables' defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from processors.executors.pool.settings import TenantLimits

log = logging.getLogger(__name__)

QUERY = (
    "SELECT tenant_id, llm_rpm, llm_tpm FROM tenants "
    "WHERE llm_rpm IS NOT NULL OR llm_tpm IS NOT NULL"
)


async def read_tenant_limits(
    database_url: str, *, timeout_s: float = 5.0
) -> dict[str, TenantLimits]:
    """Every tenant with an LLM limit set, from the tenants table."""
    import asyncpg

    connection: Any = await asyncpg.connect(database_url, timeout=timeout_s)
    try:
        rows = await connection.fetch(QUERY, timeout=timeout_s)
    finally:
        await connection.close()
    return {
        str(row["tenant_id"]): TenantLimits(rpm=row["llm_rpm"], tpm=row["llm_tpm"]) for row in rows
    }


class TenantLimitsWatch:
    """Reads the limits now and every ``interval_s``, handing each result to ``apply``."""

    def __init__(
        self,
        database_url: str,
        apply: Callable[[Mapping[str, TenantLimits]], None],
        *,
        interval_s: float,
    ) -> None:
        self.database_url = database_url
        self.apply = apply
        self.interval_s = interval_s
        self.reads = 0
        """Successful reads so far."""
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Read once (a failure is logged, not raised), then keep reading in the background."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="tenant-limits")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def refresh(self) -> bool:
        try:
            found = await read_tenant_limits(self.database_url)
        except Exception as error:  # Postgres away or not migrated: keep what we have
            if not self._failing:
                log.warning("cannot read per-tenant LLM limits (keeping the last ones): %s", error)
            self._failing = True
            return False
        if self._failing:
            log.info("per-tenant LLM limits read again")
        self._failing = False
        self.reads += 1
        self.apply(found)
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()
