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

from agentstream.gateway.settings import GatewaySettings

SESSION_ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
STATUSES = [
    "running",
    "waiting_for_user",
    "waiting_for_approval",
    "completed",
    "failed",
    "cancelled",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, headers: Sequence[str] = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json(_ref("Error"))}
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
COMMAND_ERRORS = ("400", "401", "409", "413", "422", "429", "503")


def _command(
    summary: str,
    body: str,
    *,
    answer: str = "CommandAccepted",
    path_id: bool = True,
    body_required: bool = True,
) -> dict[str, Any]:
    errors = _errors(*COMMAND_ERRORS, *(("404",) if path_id else ()))
    return {
        "post": {
            "summary": summary,
            "parameters": ([_path_id()] if path_id else []) + [IDEMPOTENCY_KEY],
            "requestBody": {"required": body_required, "content": _json(_ref(body))},
            "responses": {
                "202": {
                    "description": "Accepted: produced to the inbox and acked by Kafka.",
                    "content": _json(_ref(answer)),
                },
                **errors,
            },
        }
    }


def _components(settings: GatewaySettings, agents: Sequence[str]) -> dict[str, Any]:
    string = {"type": "string"}
    nullable_string = {"type": "string", "nullable": True}
    start = {
        "type": "object",
        "additionalProperties": False,
        "required": ["agent", "input"],
        "properties": {
            "agent": {"type": "string", "enum": list(agents)},
            "input": string,
            "session_id": {"type": "string", "pattern": SESSION_ID_PATTERN},
            "keep_open": {"type": "boolean", "default": False},
            "idle_timeout_ms": {"type": "integer", "minimum": 0, "maximum": 2**62},
            "metadata": {"type": "object", "additionalProperties": string},
        },
    }
    session = {
        "type": "object",
        "required": [
            "session_id",
            "tenant_id",
            "agent",
            "status",
            "keep_open",
            "created_at",
            "updated_at",
            "seq",
            "steps",
            "input",
            "last_message",
            "output",
            "end_reason",
            "usage",
            "metadata",
        ],
        "properties": {
            "session_id": string,
            "tenant_id": string,
            "agent": string,
            "status": {"type": "string", "enum": STATUSES},
            "keep_open": {"type": "boolean"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "seq": {"type": "integer"},
            "steps": {"type": "integer"},
            "input": string,
            "last_message": {
                "type": "object",
                "nullable": True,
                "required": ["role", "text"],
                "properties": {
                    "role": {"type": "string", "enum": ["user", "assistant"]},
                    "text": string,
                },
            },
            "output": nullable_string,
            "end_reason": nullable_string,
            "usage": {
                "type": "object",
                "required": ["tokens", "cost_usd"],
                "properties": {"tokens": {"type": "integer"}, "cost_usd": {"type": "number"}},
            },
            "metadata": {"type": "object", "additionalProperties": string},
        },
    }
    event = {
        "type": "object",
        "required": ["seq", "type", "time", "data"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "type": string,
            "time": {"type": "string", "format": "date-time"},
            "data": {"type": "object", "description": "The event's fields (its Avro record)."},
        },
    }
    usage = {
        "type": "object",
        "required": ["llm_calls", "input_tokens", "output_tokens", "cached_tokens", "cost_usd"],
        "description": "Totals for one group; the group's key is named after group_by.",
        "properties": {
            "agent": string,
            "model": string,
            "day": {"type": "string", "format": "date"},
            "llm_calls": {"type": "integer"},
            "input_tokens": {"type": "integer"},
            "output_tokens": {"type": "integer"},
            "cached_tokens": {"type": "integer"},
            "cost_usd": {"type": "number"},
        },
    }

    def page(item: str) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["items", "next"],
            "properties": {
                "items": {"type": "array", "items": _ref(item)},
                "next": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as ?cursor= for the next page; null at the end.",
                },
            },
        }

    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait.",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            },
            "WWW-Authenticate": {"description": "Bearer.", "schema": string},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": string, "message": string, "field": string},
                    }
                },
            },
            "StartSession": start,
            "StartBatch": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sessions"],
                "properties": {
                    "sessions": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": settings.batch_max,
                        "items": _ref("StartSession"),
                    }
                },
            },
            "UserMessage": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text"],
                "properties": {"text": string},
            },
            "Approval": {
                "type": "object",
                "additionalProperties": False,
                "required": ["call_id", "approved"],
                "properties": {
                    "call_id": string,
                    "approved": {"type": "boolean"},
                    "reason": nullable_string,
                },
            },
            "Cancel": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"reason": nullable_string},
            },
            "CommandAccepted": {
                "type": "object",
                "required": ["session_id", "command_id"],
                "properties": {"session_id": string, "command_id": string},
            },
            "BatchAccepted": {
                "type": "object",
                "required": ["session_ids"],
                "properties": {"session_ids": {"type": "array", "items": string}},
            },
            "Session": session,
            "SessionList": page("Session"),
            "Event": event,
            "EventList": page("Event"),
            "Usage": usage,
            "UsageList": page("Usage"),
        },
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
    return {"description": description, "content": _json(_ref(schema))}


def openapi_document(settings: GatewaySettings, agents: Sequence[str]) -> dict[str, Any]:
    """The OpenAPI document of a gateway with ``settings`` serving ``agents``."""
    open_ops: dict[str, Any] = {"security": []}
    date_time = {"type": "string", "format": "date-time"}
    cursor = _query("cursor", {"type": "string"}, "The `next` of the previous page.")
    paths: dict[str, Any] = {
        "/v1/sessions": {
            **_command("Start a session", "StartSession", path_id=False),
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
        "/v1/sessions/{session_id}/messages": _command("Send a user message", "UserMessage"),
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
        "/healthz": {
            "get": {
                **open_ops,
                "summary": "Liveness",
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
                f"limited to {settings.max_body_bytes} bytes."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": _components(settings, agents),
    }
