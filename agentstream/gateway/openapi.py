"""The OpenAPI 3.0 document served at /openapi.json, written by hand.

Written rather than generated because the routes are bare aiohttp (see
:mod:`agentstream.gateway.app` for why); kept truthful by tests: every route
of the app is in it and every path in it is a route
(``tests/unit/test_gateway_openapi.py``), and schemathesis checks the answers
against it (``tests/integration/test_gateway_schemathesis.py``). The agent
enum and the size limits come from the running gateway's settings, so the
document describes this deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentstream.gateway.openapi_schemas import SESSION_ID_PATTERN, STATUSES, components, ref
from agentstream.gateway.settings import GatewaySettings


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: Sequence[str] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(ref("Error"))}
    if headers:
        response["headers"] = {h: {"$ref": f"#/components/headers/{h}"} for h in headers}
    return response


ERRORS: dict[str, dict[str, Any]] = {
    "400": _error("Malformed JSON body, or a malformed Idempotency-Key."),
    "401": _error("Missing, invalid or revoked API key.", ["WWW-Authenticate"]),
    "404": _error("No such session for this tenant (other tenants' sessions included)."),
    "409": _error(
        "The session id is in use, the session has ended, or the Idempotency-Key's request "
        "is in flight."
    ),
    "413": _error("The body is larger than the configured limit."),
    "422": _error("A field or parameter is invalid (named in error.field), or unknown agent."),
    "429": _error("The tenant's rate limit is exceeded.", ["Retry-After"]),
    "503": _error(
        "The engine is too far behind, or Kafka or Postgres is unavailable.", ["Retry-After"]
    ),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in codes}


def _path_id() -> dict[str, Any]:
    return {
        "name": "session_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": SESSION_ID_PATTERN},
    }


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key (per tenant) answers the same and produces one command.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
PREFER_WAIT = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "RFC 7240 `wait=N`: answer 200 with the session's outcome if it comes "
    "within N seconds (capped by the server), else 202 as usual.",
    "schema": {"type": "string", "pattern": "^wait=[0-9]{1,4}$"},
}
COMMAND_ERRORS = ("400", "401", "409", "413", "422", "429", "503")


def _command(
    summary: str,
    body: str,
    *,
    answer: str = "CommandAccepted",
    path_id: bool = True,
    body_required: bool = True,
    waits: bool = False,
) -> dict[str, Any]:
    errors = _errors(*COMMAND_ERRORS, *(("404",) if path_id else ()))
    done: dict[str, Any] = {}
    if waits:
        done["200"] = {
            "description": "With `Prefer: wait=N`: the session ended, asks for approval, or "
            "(kept open) answered within N seconds; its outcome and usage.",
            "headers": {"Preference-Applied": {"schema": {"type": "string"}}},
            "content": _json(ref("SessionOutcome")),
        }
    return {
        "post": {
            "summary": summary,
            "parameters": ([_path_id()] if path_id else [])
            + [IDEMPOTENCY_KEY]
            + ([PREFER_WAIT] if waits else []),
            "requestBody": {"required": body_required, "content": _json(ref(body))},
            "responses": {
                **done,
                "202": {
                    "description": "Accepted: produced to the inbox and acked by Kafka.",
                    "content": _json(ref(answer)),
                },
                **errors,
            },
        }
    }


def _get(
    summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any], *errors: str
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, **_errors(*errors)},
        }
    }


def _query(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(ref(schema))}


def openapi_document(settings: GatewaySettings, agents: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document of a gateway with ``settings`` serving ``agents``."""
    open_ops: dict[str, Any] = {"security": []}
    date_time = {"type": "string", "format": "date-time"}
    cursor = _query("cursor", {"type": "string"}, "The `next` of the previous page.")
    paths: dict[str, Any] = {
        "/v1/sessions": {
            **_command("Start a session", "StartSession", path_id=False, waits=True),
            **_get(
                "List the tenant's sessions, newest first",
                [
                    _query("status", {"type": "string", "enum": STATUSES}),
                    _query("agent", {"type": "string"}),
                    _query("created_after", date_time, "Inclusive."),
                    _query("created_before", date_time, "Exclusive."),
                    cursor,
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                ],
                _ok("A page of sessions.", "SessionList"),
                "401",
                "422",
                "503",
            ),
        },
        "/v1/sessions:batch": _command(
            "Start many sessions in one produce batch",
            "StartBatch",
            answer="BatchAccepted",
            path_id=False,
        ),
        "/v1/sessions/{session_id}": _get(
            "A session's read model",
            [_path_id()],
            _ok("The session.", "Session"),
            "401",
            "404",
            "503",
        ),
        "/v1/sessions/{session_id}/messages": _command(
            "Send a user message", "UserMessage", waits=True
        ),
        "/v1/sessions/{session_id}/approvals": _command("Approve or deny a tool call", "Approval"),
        "/v1/sessions/{session_id}/cancel": _command(
            "Cancel a session", "Cancel", body_required=False
        ),
        "/v1/sessions/{session_id}/events": _get(
            "A session's events by seq",
            [
                _path_id(),
                cursor,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ],
            _ok("A page of events.", "EventList"),
            "401",
            "404",
            "422",
            "503",
        ),
        "/v1/sessions/{session_id}/stream": _get(
            "Server-Sent Events of the session's events and token deltas",
            [
                _path_id(),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "The seq last received; the stream resumes after it.",
                },
                _query(
                    "last_event_id",
                    {"type": "string", "pattern": "^[0-9]+$"},
                    "Same as the Last-Event-ID header (for clients that cannot set it).",
                ),
            ],
            {
                "description": (
                    "An event stream: events as `id: <seq>`, `event: <type>`, `data: <json "
                    "Event>`; token deltas as `event: delta` (no id). Ends after the terminal "
                    "event."
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            "401",
            "404",
            "422",
            "503",
        ),
        "/v1/usage": _get(
            "Token and cost totals of the tenant",
            [
                _query(
                    "group_by",
                    {"type": "string", "enum": ["agent", "model", "day"], "default": "agent"},
                ),
                _query("from", {"type": "string", "format": "date"}, "First UTC day."),
                _query("to", {"type": "string", "format": "date"}, "Last UTC day."),
            ],
            _ok("Totals per group (one page: `next` is null).", "UsageList"),
            "401",
            "422",
            "503",
        ),
        "/livez": {
            "get": {
                **open_ops,
                "summary": "Liveness: the event loop runs",
                "responses": {
                    "200": {"description": "Alive.", "content": _json({"type": "object"})},
                    "503": {
                        "description": "The event loop was blocked past its limit (`problems`).",
                        "content": _json({"type": "object"}),
                    },
                },
            }
        },
        "/healthz": {
            "get": {
                **open_ops,
                "summary": "The process answers",
                "responses": {
                    "200": {"description": "Alive.", "content": _json({"type": "object"})}
                },
            }
        },
        "/readyz": {
            "get": {
                **open_ops,
                "summary": "Kafka and Postgres reachable",
                "responses": {
                    "200": {"description": "Ready.", "content": _json({"type": "object"})},
                    "503": {"description": "Not ready.", "content": _json({"type": "object"})},
                },
            }
        },
        "/metrics": {
            "get": {
                **open_ops,
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                **open_ops,
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.0.", "content": _json({"type": "object"})}
                },
            }
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "agentstream API",
            "version": "1",
            "description": (
                "Start and steer agent sessions (commands are produced to Kafka and answered "
                "202), stream their events, and query read models. Every /v1 endpoint needs "
                "`Authorization: Bearer <API key>`; the tenant comes from the key. Bodies are "
                f"limited to {settings.max_body_bytes} bytes. A method a path does not have "
                "answers 405 with `Allow`; a path not listed here, 404."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": components(settings, agents),
    }
