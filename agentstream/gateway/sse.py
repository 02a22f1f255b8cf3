"""``GET /v1/sessions/{id}/stream``: the session's events and token deltas as Server-Sent Events.

Each event is sent as ``id: <seq>`` / ``event: <type>`` / ``data: <json>``;
token deltas (best effort, not part of the session's state) as
``event: delta`` without an id, so they never move ``Last-Event-ID``.

Resuming without missing or repeating anything: the client sends the last
seq it saw (``Last-Event-ID``, or ``?last_event_id=``). The stream first
replays the events after it from the read model, and reads, in the same
snapshot, the projector's tracked offset T of the session's partition
(everything up to T is in the read model). It then subscribes to the process's
event hub (:mod:`agentstream.gateway.event_hub`), which hands it every record
from the hub's position H on, and reads the log between T + 1 and H once (the
hub's window of recent records usually holds it). It sends only seq greater
than the last one sent. Read model, backlog and hub cover everything, and seq
is contiguous per session, so nothing is lost or repeated whatever the
projector's lag (even with no projector: T = -1). The stream ends after the
terminal event; a client too slow for its queue is cut off and resumes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentstream.gateway.context import Gateway
from agentstream.gateway.errors import invalid, not_found, retry_later
from agentstream.gateway.event_hub import HubFullError, Stream
from agentstream.gateway.metrics import SSE_STREAMS
from agentstream.gateway.requests import SESSION_ID
from projections.queries import iso
from schemas import TERMINAL_EVENT_NAMES
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
    listener = Stream(session_id, max_queued=gw.settings.stream_queue)
    try:
        gw.hub.subscribe(listener)
    except HubFullError:
        raise retry_later(
            503, "too_many_streams", "too many event streams open; retry", 5.0
        ) from None
    hub_position = gw.hub.position(partition)  # same tick: nothing falls between the two
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    SSE_STREAMS.inc()
    gw.streams_open += 1
    try:
        await response.prepare(request)
        for item in replay.events:
            await response.write(frame(item["seq"], item["type"], item))
            last = item["seq"]
            if item["type"] in TERMINAL_EVENT_NAMES:
                return response
        if replay.final_seq is not None and last >= replay.final_seq:
            return response
        backlog = await gw.hub.backlog(
            session_id, partition, replay.tracked_offset + 1, hub_position
        )
        for name, event in backlog:
            seq = int(event.get("seq", 0))
            if seq > last:
                await response.write(frame(seq, name, _event_payload(name, event)))
                last = seq
                if name in TERMINAL_EVENT_NAMES:
                    return response
        await _follow(gw, response, listener, last)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        gw.hub.unsubscribe(listener)
        SSE_STREAMS.dec()
        gw.streams_open -= 1
    return response


async def _follow(gw: Gateway, response: web.StreamResponse, listener: Stream, last: int) -> None:
    """Send what the hub hands the stream until the terminal event (or overflow)."""
    heartbeat_s = gw.settings.sse_heartbeat_s
    while not listener.overflowed:
        item = await listener.next(heartbeat_s)
        if item is None:
            if not listener.overflowed:
                await response.write(b": keepalive\n\n")
            continue
        name, data = item
        if name == "delta":
            payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            await response.write(f"event: delta\ndata: {payload}\n\n".encode())
            continue
        seq = int(data.get("seq", 0))
        if seq <= last:
            continue
        await response.write(frame(seq, name, _event_payload(name, data)))
        last = seq
        if name in TERMINAL_EVENT_NAMES:
            return
    # Cut off for falling behind: say so; the client resumes from Last-Event-ID.
    await response.write(b"event: overflow\ndata: {}\n\n")


ROUTES: list[tuple[str, str, str, Callable[[Gateway, web.Request], Awaitable[Any]]]] = [
    ("GET", "/v1/sessions/{session_id}/stream", "stream_session", stream),
]
