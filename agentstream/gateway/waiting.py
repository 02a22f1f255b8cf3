"""``Prefer: wait=N``: answer a command with the session's outcome when it comes within N s.

RFC 7240's ``wait`` preference: the client would rather wait up to N seconds
for the result than poll. ``POST /v1/sessions`` and ``POST
/v1/sessions/{id}/messages`` honour it: the request subscribes to its session
on the event hub *before* the command is produced (so no event of the answer
can pass unseen), then answers 200 with the 202 body plus ``status``,
``output``, ``usage`` and ``seq`` once the session ends, asks for approval, or
(a session kept open) answers the user; after N seconds without that, the
usual 202. Both carry ``Preference-Applied: wait=N``. N is capped by
``AGENTSTREAM_API_MAX_WAIT_S``; past ``AGENTSTREAM_API_MAX_WAITERS`` waiting
requests, a new one gets 503 before anything is produced.
"""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp import web

from agentstream.gateway.context import Gateway, json_response
from agentstream.gateway.errors import retry_later
from agentstream.gateway.event_hub import HubFullError, Waiter

_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d{1,6}(?:\.\d{1,3})?)\"?", re.IGNORECASE)


def requested_wait(gw: Gateway, request: web.Request) -> float | None:
    """Seconds the client prefers to wait (capped), or None when it did not ask."""
    header = request.headers.get("Prefer")
    if not header:
        return None
    found = _WAIT.search(header)
    if found is None:
        return None
    return min(float(found.group(1)), gw.settings.max_wait_s)


class WaitFor:
    """One request's wait for its session: opened before producing, closed after answering."""

    def __init__(self, gw: Gateway, wait_s: float | None, *, keep_open: bool) -> None:
        self.gw = gw
        self.wait_s = wait_s
        self.keep_open = keep_open
        self.waiter: Waiter | None = None

    def open(self, session_id: str) -> None:
        """Subscribe to ``session_id`` (call before the command is produced); 503 when full."""
        if self.wait_s is None:
            return
        gw = self.gw
        if gw.waiters_open >= gw.settings.max_waiters:
            raise retry_later(503, "too_many_waiters", "too many requests waiting; retry", 1.0)
        waiter = Waiter(session_id, keep_open=self.keep_open)
        try:
            gw.hub.subscribe(waiter)
        except HubFullError:
            raise retry_later(
                503, "too_many_waiters", "too many requests waiting; retry", 1.0
            ) from None
        gw.waiters_open += 1
        self.waiter = waiter

    def close(self) -> None:
        if self.waiter is not None:
            self.gw.hub.unsubscribe(self.waiter)
            self.gw.waiters_open -= 1
            self.waiter = None

    async def respond(self, accepted: web.Response) -> web.Response:
        """``accepted`` (the 202), or a 200 with the outcome if it comes in time."""
        waiter, wait_s = self.waiter, self.wait_s
        if waiter is None or wait_s is None or accepted.status != 202:
            return accepted
        applied = {"Preference-Applied": f"wait={wait_s:g}"}
        try:
            outcome = await asyncio.wait_for(asyncio.shield(waiter.future), wait_s)
        except TimeoutError:
            accepted.headers.update(applied)
            return accepted
        assert isinstance(accepted.body, bytes)
        body = json.loads(accepted.body)
        body.update(outcome.to_json())
        return json_response(200, body, headers=applied)
