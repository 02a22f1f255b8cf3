"""``Idempotency-Key``: the same key (per tenant and stream) answers the same, once produced.

Scheme: Postgres is the truth, a bounded in-memory map a shortcut.

1. ``claim``: ``INSERT ... ON CONFLICT DO NOTHING`` a row (stream, tenant,
   key, fingerprint of the request) with no answer yet. Whoever inserts it
   owns the request and produces the command(s).
2. ``finish`` stores the answer (status and body) on the row; ``release``
   deletes the claim when producing failed, so a retry can go ahead.
3. A later request with the key reads the row: the stored answer when there
   is one (and its fingerprint matches: a different body under the same key is
   a client bug and gets 422); 409 while the first request is still in flight.

Finished answers are also kept in memory (LRU, bounded) so retries from a
client in a loop do not each cost a query. Rows older than ``ttl_s`` count as
absent and are replaced. The command's event id and an omitted session id are
derived from the key too, so even a crash between producing and ``finish``
(the claim is then stuck) cannot start two sessions: the engine drops a
second StartSession with the same event id.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from agentstream.gateway.errors import ApiError
from projections.db import raw_connection

MAX_REMEMBERED = 50_000
MAX_KEY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Answer:
    """What the first request with a key was answered."""

    status: int
    body: bytes


def fingerprint(method_path: str, body: Any) -> str:
    """What makes two requests "the same": route and canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{method_path}\n{canonical}".encode()).hexdigest()


def check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
        )
    return key


class IdempotencyStore:
    """Claims, answers and releases Idempotency-Keys of one stream."""

    def __init__(self, engine: AsyncEngine, stream: str, *, ttl_s: float = 86_400.0) -> None:
        self.engine = engine
        self.stream = stream
        self.ttl_s = ttl_s
        self._answers: OrderedDict[tuple[str, str], tuple[str, Answer]] = OrderedDict()

    def _remember(self, tenant: str, key: str, fp: str, answer: Answer) -> None:
        self._answers[(tenant, key)] = (fp, answer)
        if len(self._answers) > MAX_REMEMBERED:
            self._answers.popitem(last=False)

    @staticmethod
    def _mismatch() -> ApiError:
        return ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )

    async def claim(self, tenant: str, key: str, fp: str) -> Answer | None:
        """None: the caller owns the key and must ``finish`` or ``release`` it.

        Otherwise the stored answer. Raises 422 for a different request under
        the key, 409 while the first request is still being handled.
        """
        remembered = self._answers.get((tenant, key))
        if remembered is not None:
            if remembered[0] != fp:
                raise self._mismatch()
            return remembered[1]
        async with raw_connection(self.engine) as connection, connection.transaction():
            await connection.execute(
                "DELETE FROM idempotency_keys WHERE stream = $1 AND tenant_id = $2 AND key = $3 "
                "AND created_at < now() - make_interval(secs => $4)",
                self.stream,
                tenant,
                key,
                self.ttl_s,
            )
            claimed = await connection.fetchval(
                "INSERT INTO idempotency_keys (stream, tenant_id, key, fingerprint) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
                self.stream,
                tenant,
                key,
                fp,
            )
            if claimed is not None:
                return None
            row = await connection.fetchrow(
                "SELECT fingerprint, status, body FROM idempotency_keys "
                "WHERE stream = $1 AND tenant_id = $2 AND key = $3",
                self.stream,
                tenant,
                key,
            )
        if row is None:  # deleted by a concurrent release: let the client retry
            raise ApiError(409, "idempotency_key_in_use", "retry: the key was just released")
        if row["fingerprint"] != fp:
            raise self._mismatch()
        if row["status"] is None:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still being handled",
            )
        answer = Answer(int(row["status"]), str(row["body"]).encode("utf-8"))
        self._remember(tenant, key, fp, answer)
        return answer

    async def finish(self, tenant: str, key: str, fp: str, answer: Answer) -> None:
        async with raw_connection(self.engine) as connection:
            await connection.execute(
                "UPDATE idempotency_keys SET status = $4, body = $5 "
                "WHERE stream = $1 AND tenant_id = $2 AND key = $3",
                self.stream,
                tenant,
                key,
                answer.status,
                answer.body.decode("utf-8"),
            )
        self._remember(tenant, key, fp, answer)

    async def expire(self) -> int:
        """Delete this stream's keys older than ``ttl_s``; how many went."""
        async with raw_connection(self.engine) as connection:
            status = await connection.execute(
                "DELETE FROM idempotency_keys WHERE stream = $1 "
                "AND created_at < now() - make_interval(secs => $2)",
                self.stream,
                self.ttl_s,
            )
        return int(str(status).rsplit(" ", 1)[-1])

    async def release(self, tenant: str, key: str) -> None:
        async with raw_connection(self.engine) as connection:
            await connection.execute(
                "DELETE FROM idempotency_keys WHERE stream = $1 AND tenant_id = $2 AND key = $3 "
                "AND status IS NULL",
                self.stream,
                tenant,
                key,
            )
