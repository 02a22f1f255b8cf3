"""Session snapshots as bytes: ``encode_state`` / ``decode_state``.

Format (documented so other tools can read a snapshot from Postgres):

* byte 0: the format version. ``1``: the rest is UTF-8 JSON; ``2``: the rest
  is zlib-compressed UTF-8 JSON (used once the JSON passes
  :data:`COMPRESS_OVER` bytes; long conversations compress well).
* the JSON is one array holding the :class:`SessionState` fields in
  declaration order; messages are arrays
  ``[role, content, tool_call_id, name, [[call_id, name, arguments_json]...]]``
  with trailing empty members left out; ``finished_calls`` is a sorted array.

Positional arrays keep snapshots small and the stdlib's C JSON codec keeps
them fast. The round trip is exact: floats print as their shortest repr, and
text that is not valid Unicode (lone surrogates) passes through unchanged.
A new field means a new version byte; decoders keep reading the old ones.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from agentstream.errors import AgentstreamError
from processors.agents.model_types import ChatMessage, ToolCall
from processors.core.state import TERMINAL_STATUSES, PendingLLM, PendingTool, SessionState

FORMAT_JSON = 1
FORMAT_ZLIB_JSON = 2
COMPRESS_OVER = 4096
"""JSON bodies longer than this many bytes are stored compressed."""

_STATUSES = frozenset({"running", "waiting_for_user", "waiting_for_approval"}) | TERMINAL_STATUSES


class SnapshotError(AgentstreamError, ValueError):
    """Bytes that are not a snapshot this version can read."""


def _message(m: ChatMessage) -> list[Any]:
    row: list[Any] = [m.role, m.content, m.tool_call_id, m.name]
    if m.tool_calls:
        row.append([[c.call_id, c.name, c.arguments_json] for c in m.tool_calls])
    else:
        while len(row) > 1 and row[-1] is None:
            row.pop()
    return row


def _unmessage(row: list[Any]) -> ChatMessage:
    role, content, tool_call_id, name, calls = (*row, None, None, None, None)[:5]
    if role not in ("system", "user", "assistant", "tool"):
        raise SnapshotError(f"bad message role {role!r}")
    return ChatMessage(
        role,
        content,
        tool_call_id,
        name,
        tuple(ToolCall(c[0], c[1], c[2]) for c in calls or ()),
    )


def _pending_llm(p: PendingLLM | None) -> list[Any] | None:
    return None if p is None else [p.call_id, p.step, p.deadline_ms, p.message_count]


def _pending_tool(t: PendingTool) -> list[Any]:
    return [t.call_id, t.tool, t.arguments_json, t.llm_call_id, t.status, t.deadline_ms]


def encode_state(state: SessionState) -> bytes:
    """The snapshot bytes of ``state`` (see the module docstring for the format)."""
    body = [
        state.session_id,
        state.tenant_id,
        state.agent,
        state.status,
        state.seq,
        state.correlation_id,
        state.start_event_id,
        [_message(m) for m in state.messages],
        [_message(m) for m in state.deferred],
        state.llm_steps,
        state.turn_steps,
        _pending_llm(state.pending_llm),
        [_pending_tool(t) for t in state.pending_tools],
        sorted(state.finished_calls),
        state.tokens_used,
        state.cost_usd,
        state.keep_open,
        state.idle_timeout_ms,
        state.llm_timeout_ms,
        state.tool_timeout_ms,
        state.approval_timeout_ms,
        state.last_activity_ms,
        state.output,
        state.end_reason,
        state.started_ms,
        state.updated_ms,
    ]
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8", "surrogatepass")
    if len(data) > COMPRESS_OVER:
        return bytes((FORMAT_ZLIB_JSON,)) + zlib.compress(data, 1)
    return bytes((FORMAT_JSON,)) + data


def decode_state(data: bytes) -> SessionState:
    """The state ``encode_state`` wrote; raises :class:`SnapshotError` for anything else."""
    if not data:
        raise SnapshotError("empty snapshot")
    version, payload = data[0], data[1:]
    try:
        if version == FORMAT_ZLIB_JSON:
            payload = zlib.decompress(payload)
        elif version != FORMAT_JSON:
            raise SnapshotError(f"unknown snapshot format version {version}")
        return _state(json.loads(payload.decode("utf-8", "surrogatepass")))
    except SnapshotError:
        raise
    except (ValueError, TypeError, IndexError, zlib.error) as error:
        raise SnapshotError(f"not a session snapshot: {error}") from error


def _state(body: list[Any]) -> SessionState:
    (
        session_id,
        tenant_id,
        agent,
        status,
        seq,
        correlation_id,
        start_event_id,
        messages,
        deferred,
        llm_steps,
        turn_steps,
        pending_llm,
        pending_tools,
        finished_calls,
        tokens_used,
        cost_usd,
        keep_open,
        idle_timeout_ms,
        llm_timeout_ms,
        tool_timeout_ms,
        approval_timeout_ms,
        last_activity_ms,
        output,
        end_reason,
        started_ms,
        updated_ms,
    ) = body
    if status not in _STATUSES:
        raise SnapshotError(f"bad status {status!r}")
    return SessionState(
        session_id=session_id,
        tenant_id=tenant_id,
        agent=agent,
        status=status,
        seq=seq,
        correlation_id=correlation_id,
        start_event_id=start_event_id,
        messages=tuple(_unmessage(m) for m in messages),
        deferred=tuple(_unmessage(m) for m in deferred),
        llm_steps=llm_steps,
        turn_steps=turn_steps,
        pending_llm=None if pending_llm is None else PendingLLM(*pending_llm),
        pending_tools=tuple(PendingTool(*t) for t in pending_tools),
        finished_calls=frozenset(finished_calls),
        tokens_used=tokens_used,
        cost_usd=float(cost_usd),
        keep_open=keep_open,
        idle_timeout_ms=idle_timeout_ms,
        llm_timeout_ms=llm_timeout_ms,
        tool_timeout_ms=tool_timeout_ms,
        approval_timeout_ms=approval_timeout_ms,
        last_activity_ms=last_activity_ms,
        output=output,
        end_reason=end_reason,
        started_ms=started_ms,
        updated_ms=updated_ms,
    )
