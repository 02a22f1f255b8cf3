"""The pure half of the projector: events in, row changes out.

No Kafka and no Postgres here (a pure core, effects at the edge): :class:`BatchFold` takes the
decoded events of one consumer batch, in log order, folds them onto the
touched sessions' rows (loaded by the caller beforehand) and collects the rows
to write. :mod:`projections.writer` turns the result into a handful of
multi-row statements.

The session status follows the engine's ``evolve`` exactly (the projection
test compares the two): ``running`` from the start and whenever a model call
is requested; ``waiting_for_approval`` while a requested tool waits for a
human; ``waiting_for_user`` once an open (``keep_open``) session answered;
``completed`` / ``failed`` / ``cancelled`` from the terminal event. The
projections package may not import the engine (docs/architecture.md: projections
depend on schemas and streams only), hence this mirror rather than a call.

Events at or below a session's stored ``seq`` are duplicates and skipped, so
replaying a batch onto rows that already hold it changes nothing. An event
that cannot be applied (no ``SessionStarted`` before it, a missing field)
raises :class:`PoisonEvent`; the projector sends it to the DLQ and moves on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentstream.errors import AgentstreamError

TERMINAL: dict[str, str] = {
    "SessionCompleted": "completed",
    "SessionFailed": "failed",
    "SessionCancelled": "cancelled",
}
TERMINAL_STATUSES = frozenset(TERMINAL.values())


class PoisonEvent(AgentstreamError, ValueError):
    """An event the read models cannot apply; it goes to the DLQ."""


def clean(text: str) -> str:
    """``text`` storable in Postgres: NUL (legal in Avro and JSON, not in ``text``) -> U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@dataclass(slots=True)
class SessionRow:
    """A session's read-model row, as the fold works on it."""

    session_id: str
    tenant_id: str
    agent: str
    status: str
    """running | waiting_for_user | waiting_for_approval | completed | failed | cancelled."""
    keep_open: bool
    awaiting: set[str]
    """Tool calls waiting for an Approval."""
    pending_tools: set[str]
    """Tool calls requested and not yet answered."""
    partition: int
    seq: int
    """seq of the last event applied."""
    steps: int
    """Model calls requested so far (the engine's ``llm_steps``)."""
    input: str
    last_message: str | None
    last_message_role: str | None
    output: str | None
    end_reason: str | None
    tokens: int
    """Input + output tokens over the session."""
    cost_usd: float
    metadata: dict[str, str]
    created_ms: int
    updated_ms: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


_UTC_CACHE: dict[int, dt.datetime] = {}


def utc(ms: int) -> dt.datetime:
    """Epoch milliseconds as an aware UTC datetime (memoised: a command's events share one
    time, and every event needs it several times)."""
    found = _UTC_CACHE.get(ms)
    if found is None:
        if len(_UTC_CACHE) > 65_536:
            _UTC_CACHE.clear()
        found = _UTC_CACHE[ms] = _utc(ms)
    return found


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


@dataclass(slots=True)
class BatchFold:
    """Rows to write for one batch of events; see the module docstring."""

    sessions: dict[str, SessionRow]
    """Touched sessions (the caller preloads those that have rows); updated in place."""
    dirty: set[str] = field(default_factory=set)
    """Sessions whose row changed."""
    events: list[tuple[Any, ...]] = field(default_factory=list)
    """(session_id, seq, tenant_id, type, partition, offset, time, body json)."""
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    """(session_id, seq, tenant_id, role, text, time)."""
    llm_calls: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(session_id, call_id) -> the columns this batch learnt about the call."""
    tool_calls: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    """(session_id, call_id) -> the columns this batch learnt about the call."""
    usage: dict[tuple[str, dt.date, str, str], list[float]] = field(default_factory=dict)
    """(tenant, day, agent, model) -> [calls, input, output, cached tokens, cost] to add."""
    applied: int = 0
    """Events applied (duplicates not counted)."""

    def apply(self, partition: int, offset: int, name: str, event: Mapping[str, Any]) -> bool:
        """Fold one event; False when it is a duplicate. Raises PoisonEvent (row untouched)."""
        try:
            session_id = clean(str(event["session_id"]))
            seq = int(event["seq"])
            time_ms = int(event["time_ms"])
            row = self.sessions.get(session_id)
            if row is not None and seq <= row.seq:
                return False
            body = orjson.dumps(event).decode("utf-8")
            if row is None:
                if name != "SessionStarted":
                    raise PoisonEvent(f"{name} (seq {seq}) for a session without SessionStarted")
                row = self.sessions[session_id] = _started(partition, event)
            elif name == "SessionStarted":
                raise PoisonEvent(f"second SessionStarted for session {session_id} (seq {seq})")
            else:
                handler = _HANDLERS.get(name)
                if handler is None:
                    raise PoisonEvent(f"{name} is not an event the read models know")
                handler(self, row, event, time_ms)
                row.seq = seq
                row.updated_ms = time_ms
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, PoisonEvent):
                raise
            raise PoisonEvent(f"{name}: {error!r}") from error
        self.dirty.add(session_id)
        if "\\u0000" in body:  # JSON escapes NUL; jsonb refuses \u0000
            body = body.replace("\\u0000", "\\ufffd")
        self.events.append(
            (session_id, seq, row.tenant_id, name, partition, offset, utc(time_ms), body)
        )
        self.applied += 1
        return True

    # -- row helpers ------------------------------------------------------------

    def message(self, row: SessionRow, e: Mapping[str, Any], role: str, text: str) -> None:
        text = clean(text)
        row.last_message, row.last_message_role = text, role
        self.messages.append(
            (row.session_id, int(e["seq"]), row.tenant_id, role, text, utc(int(e["time_ms"])))
        )

    def llm(self, row: SessionRow, call_id: str, **columns: Any) -> None:
        found = self.llm_calls.setdefault((row.session_id, call_id), {})
        for k, v in columns.items():
            if v is not None:
                found[k] = clean(v) if type(v) is str else v

    def tool(self, row: SessionRow, call_id: str, **columns: Any) -> None:
        found = self.tool_calls.setdefault((row.session_id, call_id), {})
        for k, v in columns.items():
            if v is not None:
                found[k] = clean(v) if type(v) is str else v


def _started(partition: int, e: Mapping[str, Any]) -> SessionRow:
    time_ms = int(e["time_ms"])
    return SessionRow(
        session_id=clean(str(e["session_id"])),
        tenant_id=clean(str(e["tenant_id"])),
        agent=clean(str(e["agent"])),
        status="running",
        keep_open=bool(e.get("keep_open", False)),
        awaiting=set(),
        pending_tools=set(),
        partition=partition,
        seq=int(e["seq"]),
        steps=0,
        input=clean(str(e["input"])),
        last_message=None,
        last_message_role=None,
        output=None,
        end_reason=None,
        tokens=0,
        cost_usd=0.0,
        metadata={clean(str(k)): clean(str(v)) for k, v in (e.get("metadata") or {}).items()},
        created_ms=time_ms,
        updated_ms=time_ms,
    )


def _tools_status(row: SessionRow) -> str:
    return "waiting_for_approval" if row.awaiting else "running"


def _user_message(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    f.message(row, e, "user", str(e["text"]))


def _llm_requested(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    row.steps = int(e["step"])
    row.status = "running"
    f.llm(
        row,
        str(e["call_id"]),
        agent=row.agent,
        model=str(e["model"]),
        step=int(e["step"]),
        status="requested",
        requested_at=utc(t),
    )


def _llm_completed(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    tokens_in, tokens_out = int(e.get("input_tokens", 0)), int(e.get("output_tokens", 0))
    cached, cost = int(e.get("cached_tokens", 0)), float(e.get("cost_usd", 0.0))
    row.tokens += tokens_in + tokens_out
    row.cost_usd += cost
    model = str(e.get("model") or "")
    f.llm(
        row,
        str(e["call_id"]),
        model=model or None,
        status="completed",
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=cached,
        cost_usd=cost,
        latency_s=float(e.get("latency_s", 0.0)),
        finished_at=utc(t),
    )
    key = (row.tenant_id, utc(t).date(), row.agent, model or "unknown")
    totals = f.usage.setdefault(key, [0, 0, 0, 0, 0.0])
    totals[0] += 1
    totals[1] += tokens_in
    totals[2] += tokens_out
    totals[3] += cached
    totals[4] += cost


def _llm_failed(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    f.llm(row, str(e["call_id"]), status="failed", error=str(e["error"]), finished_at=utc(t))


def _tool_requested(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    call_id = str(e["call_id"])
    row.pending_tools.add(call_id)
    f.tool(
        row,
        call_id,
        tool=str(e["tool"]),
        arguments_json=str(e["arguments_json"]),
        llm_call_id=str(e["llm_call_id"]),
        status="running",
        requested_at=utc(t),
    )


def _tool_finished(ok: bool) -> Any:
    def apply(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
        call_id = str(e["call_id"])
        row.pending_tools.discard(call_id)
        row.awaiting.discard(call_id)
        if not row.terminal:
            row.status = _tools_status(row)
        if ok:
            f.tool(
                row,
                call_id,
                tool=str(e["tool"]),
                status="completed",
                output=str(e["output"]),
                latency_s=float(e.get("latency_s", 0.0)),
                finished_at=utc(t),
            )
        else:
            f.tool(
                row,
                call_id,
                tool=str(e["tool"]),
                status="failed",
                error=str(e["error"]),
                finished_at=utc(t),
            )

    return apply


def _approval_requested(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    call_id = str(e["call_id"])
    row.awaiting.add(call_id)
    row.status = "waiting_for_approval"
    f.tool(row, call_id, status="awaiting_approval")


def _approval_resolved(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    if not e["approved"]:
        return  # ToolCallFailed follows and removes the call.
    call_id = str(e["call_id"])
    row.awaiting.discard(call_id)
    row.status = _tools_status(row)
    f.tool(row, call_id, status="running")


def _assistant_message(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    text = str(e["text"])
    f.message(row, e, "assistant", text)
    row.output = clean(text)
    if row.keep_open:
        row.status = "waiting_for_user"


def _ended(name: str) -> Any:
    status = TERMINAL[name]

    def apply(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
        row.status = status
        row.end_reason = clean(e.get("reason") or status)
        if status == "completed":
            output = e.get("output", row.output)
            row.output = None if output is None else clean(output)
        row.awaiting, row.pending_tools = set(), set()

    return apply


def _nothing(f: BatchFold, row: SessionRow, e: Mapping[str, Any], t: int) -> None:
    return None


_HANDLERS: dict[str, Any] = {
    "UserMessageAdded": _user_message,
    "LLMCallRequested": _llm_requested,
    "LLMCallCompleted": _llm_completed,
    "LLMCallFailed": _llm_failed,
    "ToolCallRequested": _tool_requested,
    "ToolCallCompleted": _tool_finished(True),
    "ToolCallFailed": _tool_finished(False),
    "ApprovalRequested": _approval_requested,
    "ApprovalResolved": _approval_resolved,
    "AssistantMessageAdded": _assistant_message,
    "BudgetExceeded": _nothing,
    **{name: _ended(name) for name in TERMINAL},
}
