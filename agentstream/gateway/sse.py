"""``GET /v1/sessions/{id}/stream``: the session's events and token deltas as Server-Sent Events.

Each event is sent as ``id: <seq>`` / ``event: <type>`` / ``data: <json>``;
token deltas (best effort, not part of the session's state) as
``event: delta`` without an id, so they never move ``Last-Event-ID``.

Resuming without missing or repeating anything: the client sends the last
seq it saw (``Last-Event-ID``, or ``?last_event_id=``). The stream first
replays the events after it from the read model, and reads, in the same
snapshot, the projector's tracked offset T of the session's partition
(everything up to T is in the read model). It then tails the events
partition from T + 1 (read_committed) and sends only seq greater than the
last one sent. The replay covers everything up to T and the tail everything
after, and seq is contiguous per session, so nothing is lost or repeated
whatever the projector's lag (even with no projector: T = -1, the tail reads
the partition from its start). The stream ends after the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka import TopicPartition

from agentstream.gateway.context import Gateway
from agentstream.gateway.errors import invalid, not_found, retry_later
from agentstream.gateway.metrics import SSE_STREAMS
from agentstream.gateway.requests import SESSION_ID
from projections.queries import iso
from schemas import TERMINAL_EVENT_NAMES, SchemaError
from streams.clients import new_consumer
from streams.partitioner import session_partition


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID", request.query.get("last_event_id"))
    if raw is None or raw == "":
        return 0
    if not raw.isdigit():
        raise invalid("Last-Event-ID", "expected the seq (a non-negative integer) of an event")
    return int(raw)


def frame(seq: int, name: str, data: dict[str, Any]) -> bytes:
    """One SSE event carrying an event of the log."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {seq}\nevent: {name}\ndata: {payload}\n\n".encode()


def _event_payload(name: str, event: dict[str, Any]) -> dict[str, Any]:
    import datetime as dt

    at = dt.datetime.fromtimestamp(int(event["time_ms"]) / 1000, tz=dt.UTC)
    return {"seq": int(event["seq"]), "type": name, "time": iso(at), "data": event}


async def stream(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = await gw.tenant(request)
    session_id = request.match_info["session_id"]
    last = _last_event_id(request)
    if gw.streams_open >= gw.settings.max_streams:
        raise retry_later(503, "too_many_streams", "too many event streams open; retry", 5.0)
    if not SESSION_ID.match(session_id) or not await gw.directory.owned_by(
        session_id, tenant.tenant_id
    ):
        raise not_found()
    partition = session_partition(session_id, gw.kafka.partitions)
    replay = await gw.queries.replay(session_id, partition, last)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    SSE_STREAMS.inc()
    gw.streams_open += 1
    try:
        for item in replay.events:
            await response.write(frame(item["seq"], item["type"], item))
            last = item["seq"]
            if item["type"] in TERMINAL_EVENT_NAMES:
                return response
        if replay.final_seq is not None and last >= replay.final_seq:
            return response
        await _tail(gw, response, session_id, partition, replay.tracked_offset, last)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        SSE_STREAMS.dec()
        gw.streams_open -= 1
    return response


async def _tail(
    gw: Gateway,
    response: web.StreamResponse,
    session_id: str,
    partition: int,
    tracked: int,
    last: int,
) -> None:
    events = TopicPartition(gw.stream, partition)
    deltas = TopicPartition(gw.catalogue.deltas.name, partition)
    consumer = new_consumer(gw.kafka, fetch_max_wait_ms=50)
    await consumer.start()
    key = session_id.encode("utf-8")
    heartbeat_ms = int(gw.settings.sse_heartbeat_s * 1000)
    try:
        consumer.assign([events, deltas])
        if tracked < 0:
            await consumer.seek_to_beginning(events)
        else:
            consumer.seek(events, tracked + 1)
        await consumer.seek_to_end(deltas)
        while True:
            batches = await consumer.getmany(timeout_ms=heartbeat_ms, max_records=2000)
            if not batches:
                await response.write(b": keepalive\n\n")
                continue
            for message in batches.get(deltas, ()):
                if message.key == key:
                    await _send_delta(gw, response, message.value)
            for message in batches.get(events, ()):
                if message.key != key or message.value is None:
                    continue
                try:
                    name, event = gw.codec.decode(message.value)
                except SchemaError:
                    continue  # the projector dead-letters it; the stream skips it
                seq = int(event.get("seq", 0))
                if seq <= last:
                    continue
                await response.write(frame(seq, name, _event_payload(name, event)))
                last = seq
                if name in TERMINAL_EVENT_NAMES:
                    return
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


async def _send_delta(gw: Gateway, response: web.StreamResponse, value: bytes | None) -> None:
    if value is None:
        return
    try:
        name, delta = gw.codec.decode(value)
    except SchemaError:
        return
    if name != "TokenDelta":
        return
    data = {"call_id": delta["call_id"], "index": delta["index"], "text": delta["text"]}
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    await response.write(f"event: delta\ndata: {payload}\n\n".encode())


ROUTES: list[tuple[str, str, str, Callable[[Gateway, web.Request], Awaitable[Any]]]] = [
    ("GET", "/v1/sessions/{session_id}/stream", "stream_session", stream),
]
