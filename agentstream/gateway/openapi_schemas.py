"""The schemas of the OpenAPI document (``components``): request and answer bodies.

Kept apart from the paths (:mod:`agentstream.gateway.openapi`) because they are
most of the document; the agent enum and the size limits come from the running
gateway's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentstream.gateway.requests import SESSION_ID
from agentstream.gateway.settings import GatewaySettings

SESSION_ID_PATTERN = SESSION_ID.pattern
"""The session id pattern of the API, as the request parser checks it."""
STATUSES = [
    "running",
    "waiting_for_user",
    "waiting_for_approval",
    "completed",
    "failed",
    "cancelled",
]


def ref(name: str) -> dict[str, str]:
    """A reference to the schema ``name`` of this document."""
    return {"$ref": f"#/components/schemas/{name}"}


def components(settings: GatewaySettings, agents: Sequence[str]) -> dict[str, Any]:
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
                "items": {"type": "array", "items": ref(item)},
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
                        "items": ref("StartSession"),
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
            "SessionOutcome": {
                "type": "object",
                "required": ["session_id", "command_id", "status", "seq", "usage"],
                "properties": {
                    "session_id": string,
                    "command_id": string,
                    "status": {"type": "string", "enum": STATUSES},
                    "seq": {"type": "integer"},
                    "output": nullable_string,
                    "reason": nullable_string,
                    "usage": {
                        "type": "object",
                        "required": ["input_tokens", "output_tokens", "cost_usd"],
                        "properties": {
                            "input_tokens": {"type": "integer"},
                            "output_tokens": {"type": "integer"},
                            "cost_usd": {"type": "number"},
                        },
                    },
                },
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
