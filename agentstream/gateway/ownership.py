"""Which tenant owns a session: what this gateway started, else the read model.

Commands and reads for a session must answer 404 to every tenant but its
owner, without saying whether the session exists. The owner of a session this
process just started is known at once (a bounded LRU, filled on produce); any
other session's owner comes from the projection's ``sessions`` table, and is
cached once found (a session's tenant never changes). A session started by
another gateway is therefore unknown here until its first event is projected
(typically milliseconds); commands to it answer 404 in that window.
"""

from __future__ import annotations

from collections import OrderedDict

from projections.queries import QueryService

MAX_REMEMBERED = 200_000


class SessionDirectory:
    """session id -> tenant id, from local starts and the read model."""

    def __init__(self, queries: QueryService, *, size: int = MAX_REMEMBERED) -> None:
        self.queries = queries
        self.size = size
        self._owners: OrderedDict[str, str] = OrderedDict()

    def started(self, session_id: str, tenant: str) -> None:
        """Remember a session this gateway produced a StartSession for."""
        owners = self._owners
        owners[session_id] = tenant
        if len(owners) > self.size:
            owners.popitem(last=False)

    def known(self, session_id: str) -> str | None:
        """The owner if remembered, without asking Postgres."""
        return self._owners.get(session_id)

    async def owner(self, session_id: str) -> str | None:
        tenant = self._owners.get(session_id)
        if tenant is None:
            tenant = await self.queries.owner(session_id)
            if tenant is not None:
                self.started(session_id, tenant)
        return tenant

    async def owned_by(self, session_id: str, tenant: str) -> bool:
        return await self.owner(session_id) == tenant
