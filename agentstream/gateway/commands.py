"""Command endpoints: they produce inbox commands and answer 202.

Every check happens before anything is produced (auth 401, size 413, rate
429, lag 503, JSON 400, fields 422, ownership 404), so a refused request
leaves the inbox untouched. Commands go to the inbox keyed by session id
(murmur2, the session's shard) through the idempotent, acks=all producer, and
202 is answered only once Kafka acked: an accepted command is durable.

``POST /v1/sessions`` without an Idempotency-Key is the hot path: the key
cache is read synchronously, the record encoded by hand
(:mod:`agentstream.gateway.encoding`) and handed to aiokafka directly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentstream.gateway import metrics
from agentstream.gateway.context import Gateway, json_response
from agentstream.gateway.errors import ApiError, invalid, not_found
from agentstream.gateway.idempotency import Answer, check_key, fingerprint
from agentstream.gateway.requests import (
    SESSION_ID,
    batch_items,
    new_ids,
    parse_json,
    session_command,
    start_record,
)
from agentstream.gateway.tenants import Tenant
from agentstream.gateway.waiting import WaitFor, requested_wait
from processors.core import NAMESPACE
from schemas import SchemaError
from streams.partitioner import partition_for_key
from streams.producer import OutgoingRecord, type_headers

Produce = Callable[[list[str], list[str]], Awaitable[tuple[int, dict[str, Any]]]]
"""Given event ids and default session ids, produce and return (status, answer body)."""

ENDED = frozenset({"completed", "failed", "cancelled"})
_START = metrics.COMMANDS.labels("StartSession")
_START_HEADERS = type_headers("StartSession")


def _ids(gw: Gateway, tenant: Tenant, key: str | None, n: int) -> tuple[list[str], list[str]]:
    """Event ids and default session ids: random, or derived from the Idempotency-Key.

    Derived ids make a retried start after a crash between produce and the
    stored answer a duplicate the engine drops (same event id, same session).
    """
    if key is None:
        ids = new_ids(2 * n)
        return ids[:n], ids[n:]
    base = f"{gw.stream}:{tenant.tenant_id}:{key}"
    return (
        [str(uuid.uuid5(NAMESPACE, f"{base}:event:{i}")) for i in range(n)],
        [str(uuid.uuid5(NAMESPACE, f"{base}:session:{i}")) for i in range(n)],
    )


def _unencodable(error: Exception) -> ApiError:
    """A string JSON allows but UTF-8 does not (a lone surrogate such as "\\ud800")."""
    return invalid("", f"the body holds text that is not valid Unicode: {error}")


async def _answer(
    gw: Gateway, request: web.Request, tenant: Tenant, obj: Any, n: int, produce: Produce
) -> web.Response:
    """Run ``produce`` once per Idempotency-Key (or every time without one)."""
    header = request.headers.get("Idempotency-Key")
    if header is None:
        events, sessions = _ids(gw, tenant, None, n)
        status, payload = await produce(events, sessions)
        return json_response(status, payload)
    key = check_key(header)
    fp = fingerprint(f"{request.method} {request.path}", obj)
    stored = await gw.idempotency.claim(tenant.tenant_id, key, fp)
    if stored is not None:
        return web.Response(
            status=stored.status,
            body=stored.body,
            content_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        events, sessions = _ids(gw, tenant, key, n)
        status, payload = await produce(events, sessions)
    except BaseException:
        await gw.idempotency.release(tenant.tenant_id, key)
        raise
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await gw.idempotency.finish(tenant.tenant_id, key, fp, Answer(status, body))
    return web.Response(status=status, body=body, content_type="application/json")


async def _check_new(gw: Gateway, session_id: str) -> None:
    """409 when a client-chosen session id is already in use (by anyone)."""
    if await gw.directory.owner(session_id) is not None:
        raise ApiError(409, "session_exists", f"session id {session_id!r} is already in use")


def _encode_start(gw: Gateway, record: dict[str, Any]) -> OutgoingRecord:
    try:
        value = gw.start_encoder.encode(record)
        key = record["session_id"].encode("utf-8")
    except (UnicodeEncodeError, SchemaError) as error:
        raise _unencodable(error) from None
    return OutgoingRecord(
        gw.inbox, key, value, _START_HEADERS, partition_for_key(key, gw.kafka.partitions)
    )


async def start_session(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = gw.auth.cached(request.headers.get("Authorization")) or await gw.tenant(request)
    gw.admit(request, tenant)
    obj = parse_json(await gw.body(request))
    # Validated before any id is derived, so a bad body never claims an Idempotency-Key.
    record = start_record(
        obj, tenant=tenant.tenant_id, event_id="", session_id="",
        time_ms=int(time.time() * 1000), agents=gw.agent_names,
    )  # fmt: skip
    wait_s = requested_wait(gw, request)
    if wait_s is None and "Idempotency-Key" not in request.headers:
        # The hot path: no claim, no closure, no waiter.
        event_id, session_id = new_ids(2)
        status, payload = await _start_one(gw, tenant, record, event_id, session_id)
        return json_response(status, payload)
    wait = WaitFor(gw, wait_s, keep_open=bool(record.get("keep_open")))

    async def produce(events: list[str], sessions: list[str]) -> tuple[int, dict[str, Any]]:
        wait.open(record["session_id"] or sessions[0])  # before anything is produced
        return await _start_one(gw, tenant, record, events[0], sessions[0])

    try:
        return await wait.respond(await _answer(gw, request, tenant, obj, 1, produce))
    finally:
        wait.close()


async def _start_one(
    gw: Gateway, tenant: Tenant, record: dict[str, Any], event_id: str, session_id: str
) -> tuple[int, dict[str, Any]]:
    """Produce one validated StartSession (ids filled in here) and wait for the ack."""
    record["event_id"] = event_id
    if record["session_id"]:
        await _check_new(gw, record["session_id"])
    else:
        record["session_id"] = session_id
    out = _encode_start(gw, record)
    sent = await gw.producer.aiokafka.send(
        out.topic, out.value, key=out.key, partition=out.partition, headers=out.headers
    )
    await sent
    gw.directory.started(record["session_id"], tenant.tenant_id)
    _START.inc()
    return 202, {"session_id": record["session_id"], "command_id": event_id}


async def start_batch(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = gw.auth.cached(request.headers.get("Authorization")) or await gw.tenant(request)
    gw.admit(request, tenant, 0)  # size and lag now; the rate once the count is known
    obj = parse_json(await gw.body(request))
    items = batch_items(obj, gw.settings.batch_max)
    now_ms = int(time.time() * 1000)
    tenant_id, agents = tenant.tenant_id, gw.agent_names
    records = [
        start_record(
            item, tenant=tenant_id, event_id="", session_id="", time_ms=now_ms, agents=agents,
            index=i,
        )
        for i, item in enumerate(items)
    ]  # fmt: skip
    chosen = [i for i, record in enumerate(records) if record["session_id"]]
    if len({records[i]["session_id"] for i in chosen}) < len(chosen):
        raise invalid("sessions", "a session_id appears twice in the batch")
    gw.rates.check(tenant_id, len(items), rate_per_s=tenant.rate_per_s, burst=tenant.burst)

    async def produce(events: list[str], sessions: list[str]) -> tuple[int, dict[str, Any]]:
        for i in chosen:
            await _check_new(gw, records[i]["session_id"])
        out = []
        for record, event_id, session_id in zip(records, events, sessions, strict=True):
            record["event_id"] = event_id
            if not record["session_id"]:
                record["session_id"] = session_id
            out.append(_encode_start(gw, record))
        await gw.producer.send_many(out, partition_count=gw.kafka.partitions)
        ids = [record["session_id"] for record in records]
        started = gw.directory.started
        for session_id in ids:
            started(session_id, tenant_id)
        _START.inc(len(ids))
        return 202, {"session_ids": ids}

    return await _answer(gw, request, tenant, obj, len(items), produce)


def _session_route(name: str) -> Callable[[Gateway, web.Request], Awaitable[web.StreamResponse]]:
    counter = metrics.COMMANDS.labels(name)

    async def handle(gw: Gateway, request: web.Request) -> web.StreamResponse:
        tenant = await gw.tenant(request)
        session_id = request.match_info["session_id"]
        gw.admit(request, tenant)
        raw = await gw.body(request)
        obj = None if name == "Cancel" and not raw.strip() else parse_json(raw)
        record = session_command(
            name, obj, tenant=tenant.tenant_id, session_id=session_id, event_id="",
            time_ms=int(time.time() * 1000),
        )  # fmt: skip
        if not SESSION_ID.match(session_id) or not await gw.directory.owned_by(
            session_id, tenant.tenant_id
        ):
            raise not_found()
        # An ended session takes no more commands: say so rather than accept one the
        # engine would dead-letter (the read model may lag: then the engine still refuses).
        if await gw.queries.status(session_id) in ENDED:
            raise ApiError(409, "session_ended", f"session {session_id!r} has ended")

        async def produce(events: list[str], sessions: list[str]) -> tuple[int, dict[str, Any]]:
            wait.open(session_id)  # before anything is produced
            record["event_id"] = events[0]
            try:
                out = gw.producer.encode(gw.inbox, name, record)
            except (UnicodeEncodeError, SchemaError) as error:
                raise _unencodable(error) from None
            sent = await gw.producer.aiokafka.send(
                out.topic, out.value, key=out.key, headers=out.headers
            )
            await sent
            counter.inc()
            return 202, {"session_id": session_id, "command_id": record["event_id"]}

        # Only a user message starts a turn whose answer is worth waiting for; the
        # session is open (it takes messages), so its answer settles the wait.
        wait = WaitFor(
            gw, requested_wait(gw, request) if name == "UserMessage" else None, keep_open=True
        )
        try:
            return await wait.respond(await _answer(gw, request, tenant, obj, 1, produce))
        finally:
            wait.close()

    return handle


ROUTES: list[tuple[str, str, str, Callable[[Gateway, web.Request], Awaitable[Any]]]] = [
    ("POST", "/v1/sessions", "start_session", start_session),
    ("POST", "/v1/sessions:batch", "start_batch", start_batch),
    ("POST", "/v1/sessions/{session_id}/messages", "send_message", _session_route("UserMessage")),
    ("POST", "/v1/sessions/{session_id}/approvals", "send_approval", _session_route("Approval")),
    ("POST", "/v1/sessions/{session_id}/cancel", "cancel_session", _session_route("Cancel")),
]
