"""The query API over the read models: sessions, a session, its events, usage.

Every query is scoped to the caller's tenant; a session of another tenant
answers 404 exactly like one that does not exist. Query parameters are
checked (422 naming the parameter), lists answer ``{"items", "next"}``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from aiohttp import web

from agentstream.gateway.context import Gateway, json_response
from agentstream.gateway.errors import invalid, not_found
from agentstream.gateway.requests import SESSION_ID
from projections.cursors import CursorError
from projections.fold import clean
from projections.queries import GroupBy

STATUSES = (
    "running",
    "waiting_for_user",
    "waiting_for_approval",
    "completed",
    "failed",
    "cancelled",
)
GROUPS = ("agent", "model", "day")
SESSION_PARAMS = frozenset(
    {"status", "agent", "created_after", "created_before", "cursor", "limit"}
)
EVENT_PARAMS = frozenset({"cursor", "limit"})
USAGE_PARAMS = frozenset({"group_by", "from", "to"})


def _only(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    for name in query:
        if name not in allowed:
            raise invalid(name, "unknown query parameter")


def _limit(query: Mapping[str, str], default: int, most: int) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise invalid("limit", f"expected an integer from 1 to {most}")
    return int(raw)


def _time(query: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(name, "expected an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z") from None
    if value.tzinfo is None:
        raise invalid(name, "the date-time needs a UTC offset (Z or +hh:mm)")
    return value


def _day(query: Mapping[str, str], name: str) -> dt.date | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise invalid(name, "expected a date, e.g. 2026-01-31") from None


async def list_sessions(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = await gw.tenant(request)
    query = request.query
    _only(query, SESSION_PARAMS)
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise invalid("status", f"expected one of {', '.join(STATUSES)}")
    try:
        items, next_cursor = await gw.queries.list_sessions(
            tenant.tenant_id,
            status=status,
            agent=None if "agent" not in query else clean(query["agent"]),
            created_after=_time(query, "created_after"),
            created_before=_time(query, "created_before"),
            cursor=query.get("cursor"),
            limit=_limit(query, 50, 200),
        )
    except CursorError as error:
        raise invalid("cursor", str(error)) from None
    return json_response(200, {"items": items, "next": next_cursor})


async def get_session(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = await gw.tenant(request)
    session_id = request.match_info["session_id"]
    found = (
        await gw.queries.get_session(tenant.tenant_id, session_id)
        if SESSION_ID.match(session_id)
        else None
    )
    if found is None:
        raise not_found()
    return json_response(200, found)


async def list_events(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = await gw.tenant(request)
    session_id = request.match_info["session_id"]
    query = request.query
    _only(query, EVENT_PARAMS)
    limit = _limit(query, 100, 1000)
    if not SESSION_ID.match(session_id) or not await gw.directory.owned_by(
        session_id, tenant.tenant_id
    ):
        raise not_found()
    try:
        items, next_cursor = await gw.queries.list_events(
            tenant.tenant_id, session_id, cursor=query.get("cursor"), limit=limit
        )
    except CursorError as error:
        raise invalid("cursor", str(error)) from None
    return json_response(200, {"items": items, "next": next_cursor})


async def usage(gw: Gateway, request: web.Request) -> web.StreamResponse:
    tenant = await gw.tenant(request)
    query = request.query
    _only(query, USAGE_PARAMS)
    group_by = query.get("group_by", "agent")
    if group_by not in GROUPS:
        raise invalid("group_by", f"expected one of {', '.join(GROUPS)}")
    start, end = _day(query, "from"), _day(query, "to")
    items = await gw.queries.usage(tenant.tenant_id, cast(GroupBy, group_by), start=start, end=end)
    return json_response(200, {"items": items, "next": None})


ROUTES: list[tuple[str, str, str, Callable[[Gateway, web.Request], Awaitable[Any]]]] = [
    ("GET", "/v1/sessions", "list_sessions", list_sessions),
    ("GET", "/v1/sessions/{session_id}", "get_session", get_session),
    ("GET", "/v1/sessions/{session_id}/events", "list_events", list_events),
    ("GET", "/v1/usage", "usage", usage),
]
