"""Request bodies -> inbox commands: parsing and validation, no I/O.

Each body becomes the JSON form of a command, checked by
``schemas.command_from_json`` so a bad field gets the schemas' own error
naming it (``input: expected a string, got int``). The body never names the
tenant: ``tenant_id`` (and the envelope fields ``type``, ``event_id``,
``time_ms``) are refused as unknown fields, and the tenant is set from the API
key.

Starting sessions is the hot path (single and batch), so :func:`start_record`
first tries a direct check of the few StartSession fields, exactly as strict
as the schema, and builds the Avro-ready record itself; only a body that
fails it goes through ``command_from_json`` to find and name the culprit.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from agentstream.gateway.errors import ApiError, invalid
from schemas import RecordValidationError, command_from_json

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""What a client-chosen session id may look like (it is a Kafka key and a URL segment)."""
START_FIELDS = frozenset(
    {"agent", "input", "session_id", "keep_open", "idle_timeout_ms", "metadata"}
)
MESSAGE_FIELDS = frozenset({"text"})
APPROVAL_FIELDS = frozenset({"call_id", "approved", "reason"})
CANCEL_FIELDS = frozenset({"reason"})
_LONG = 2**63
_ABSENT = object()


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; 400 when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {error}") from None


_VARIANT = {c: "89ab"[int(c, 16) >> 2] for c in "0123456789abcdef"}


def new_ids(n: int) -> list[str]:
    """``n`` random UUID4 strings (one urandom call: cheaper than uuid.uuid4 per id)."""
    h = os.urandom(16 * n).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * n, 32)
    ]


def _object(obj: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        kind = "null" if obj is None else type(obj).__name__
        raise invalid(where, f"expected a JSON object, got {kind}")
    return obj


def _fields(obj: Mapping[str, Any], allowed: Collection[str], prefix: str) -> None:
    for key in obj:
        if key not in allowed:
            reason = (
                "not allowed: the tenant comes from the API key"
                if key == "tenant_id"
                else "unknown field"
            )
            raise invalid(f"{prefix}{key}", reason)


def _schema_checked(
    name: str, body: Mapping[str, Any], envelope: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    try:
        _, record = command_from_json({"type": name, **body, **envelope})
    except RecordValidationError as error:
        raise invalid(f"{prefix}{error.field}", error.reason) from None
    return record


def _fast_start(body: Mapping[str, Any]) -> bool:
    """True when every StartSession field is present and of the schema's exact type."""
    agent, text = body.get("agent"), body.get("input")
    if type(agent) is not str or type(text) is not str:
        return False
    keep_open = body.get("keep_open", False)
    if type(keep_open) is not bool:
        return False
    idle = body.get("idle_timeout_ms", 0)
    if type(idle) is not int or not -_LONG <= idle < _LONG:
        return False
    metadata = body.get("metadata", _ABSENT)
    if metadata is _ABSENT:
        return True
    return type(metadata) is dict and all(type(v) is str for v in metadata.values())


def _fast_record(
    body: Mapping[str, Any],
    tenant: str,
    event_id: str,
    session_id: str,
    time_ms: int,
    agents: Collection[str],
    index: int | None,
) -> dict[str, Any]:
    """The record of a body that passed ``_fast_start`` (types exact, no unknown field);
    anything else to refuse goes back through :func:`start_record` for the error."""
    chosen = body.get("session_id", _ABSENT)
    if chosen is not _ABSENT:  # null is no way to say "absent": the schema says string
        if type(chosen) is not str or not SESSION_ID.match(chosen):
            return start_record(
                dict(body, session_id=chosen), tenant=tenant, event_id=event_id,
                session_id=session_id, time_ms=time_ms, agents=agents,
                index=index, slow=True,
            )  # fmt: skip
        session_id = chosen
    agent = body["agent"]
    idle = body.get("idle_timeout_ms", 0)
    if agent not in agents or idle < 0:
        return start_record(
            body, tenant=tenant, event_id=event_id, session_id=session_id, time_ms=time_ms,
            agents=agents, index=index, slow=True,
        )  # fmt: skip
    metadata = body.get("metadata")
    return {
        "event_id": event_id,
        "session_id": session_id,
        "tenant_id": tenant,
        "time_ms": time_ms,
        "causation_id": None,
        "correlation_id": None,
        "agent": agent,
        "input": body["input"],
        "keep_open": body.get("keep_open", False),
        "idle_timeout_ms": idle,
        "metadata": dict(metadata) if metadata is not None else {},
    }


def start_record(
    obj: Any,
    *,
    tenant: str,
    event_id: str,
    session_id: str,
    time_ms: int,
    agents: Collection[str],
    index: int | None = None,
    slow: bool = False,
) -> dict[str, Any]:
    """The StartSession record for body ``obj`` (``session_id`` unless the body names one).

    An empty ``session_id`` / ``event_id`` stays empty in the record: the
    caller fills them in once the request is admitted (ids may depend on the
    Idempotency-Key).

    422 naming the field for anything wrong, including an agent the catalogue
    does not know; with ``index`` (a batch item) the field is ``sessions[index].name``.
    """
    if not slow and type(obj) is dict and obj.keys() <= START_FIELDS and _fast_start(obj):
        return _fast_record(obj, tenant, event_id, session_id, time_ms, agents, index)
    prefix = "" if index is None else f"sessions[{index}]."
    body = _object(obj, prefix.rstrip(".") or "")
    _fields(body, START_FIELDS, prefix)
    chosen = body.get("session_id", _ABSENT)
    if chosen is not _ABSENT:
        if type(chosen) is not str:
            kind = "null" if chosen is None else type(chosen).__name__
            raise invalid(f"{prefix}session_id", f"expected a string, got {kind}")
        if not SESSION_ID.match(chosen):
            raise invalid(
                f"{prefix}session_id",
                "use 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
            )
        session_id = chosen
    envelope = {
        "event_id": event_id,
        "session_id": session_id or "-",  # "" = filled in later by the caller
        "tenant_id": tenant,
        "time_ms": time_ms,
    }
    if _fast_start(body):
        metadata = body.get("metadata")
        record: dict[str, Any] = {
            **envelope,
            "causation_id": None,
            "correlation_id": None,
            "agent": body["agent"],
            "input": body["input"],
            "keep_open": body.get("keep_open", False),
            "idle_timeout_ms": body.get("idle_timeout_ms", 0),
            "metadata": dict(metadata) if metadata is not None else {},
        }
    else:
        record = _schema_checked("StartSession", body, envelope, prefix)
    record["session_id"] = session_id
    if record["agent"] not in agents:
        raise invalid(f"{prefix}agent", f"unknown agent {record['agent']!r}", code="unknown_agent")
    if record["idle_timeout_ms"] < 0:
        raise invalid(f"{prefix}idle_timeout_ms", "must be >= 0")
    return record


def batch_items(obj: Any, batch_max: int) -> list[Any]:
    """The ``sessions`` list of a batch body (1..batch_max items)."""
    body = _object(obj, "")
    _fields(body, {"sessions"}, "")
    items = body.get("sessions")
    if not isinstance(items, list):
        raise invalid("sessions", "expected a list of session starts")
    if not 1 <= len(items) <= batch_max:
        raise invalid("sessions", f"expected 1 to {batch_max} items, got {len(items)}")
    return items


def session_command(
    name: str, obj: Any, *, tenant: str, session_id: str, event_id: str, time_ms: int
) -> dict[str, Any]:
    """UserMessage / Approval / Cancel for an existing session (a Cancel body may be empty)."""
    allowed = {"UserMessage": MESSAGE_FIELDS, "Approval": APPROVAL_FIELDS, "Cancel": CANCEL_FIELDS}
    if obj is None and name == "Cancel":
        obj = {}
    body = _object(obj, "")
    _fields(body, allowed[name], "")
    envelope = {
        "event_id": event_id,
        "session_id": session_id,
        "tenant_id": tenant,
        "time_ms": time_ms,
    }
    return _schema_checked(name, body, envelope, "")
