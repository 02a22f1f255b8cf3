"""``evolve``: the only way a session's state changes, live and on replay alike.

``evolve(state, name, event)`` applies one event (already decided, already in
the log) and returns the new state. It never decides anything and never fails
on a well-formed log: every choice was made by ``decide`` and is recorded in
the events, so folding the log always gives the state that was live
(the "replay never calls a model or a tool" invariant rests on this).

The agent's LLM, tool and approval timeouts are recorded in SessionStarted
(``*_timeout_ms``, schema v2) when the session starts, so replay needs no
agents file and a changed agents file never moves the deadlines of a session
that already runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from operator import attrgetter
from typing import Any

from agentstream.errors import AgentstreamError
from processors.agents.model_types import ChatMessage, ToolCall
from processors.core.state import PendingLLM, PendingTool, SessionState, Status

DEFAULT_TIMEOUTS_MS: Mapping[str, int] = {"llm": 120_000, "tool": 60_000, "approval": 86_400_000}


class EventOrderError(AgentstreamError, ValueError):
    """An event does not follow the state (seq gap or repeat, or no SessionStarted first)."""


def _timeouts(event: Mapping[str, Any]) -> dict[str, int]:
    """The timeouts SessionStarted recorded; 0 (or a v1 event without them) → the default."""
    return {
        kind: int(event.get(f"{kind}_timeout_ms") or 0) or default
        for kind, default in DEFAULT_TIMEOUTS_MS.items()
    }


def _started(event: Mapping[str, Any]) -> SessionState:
    timeouts = _timeouts(event)
    time_ms = int(event["time_ms"])
    return SessionState(
        session_id=event["session_id"],
        tenant_id=event["tenant_id"],
        agent=event["agent"],
        status="running",
        seq=int(event["seq"]),
        correlation_id=event.get("correlation_id") or event["event_id"],
        start_event_id=event.get("causation_id") or event["event_id"],
        messages=(),
        deferred=(),
        llm_steps=0,
        turn_steps=0,
        pending_llm=None,
        pending_tools=(),
        finished_calls=frozenset(),
        tokens_used=0,
        cost_usd=0.0,
        keep_open=bool(event.get("keep_open", False)),
        idle_timeout_ms=int(event.get("idle_timeout_ms", 0)),
        llm_timeout_ms=timeouts["llm"],
        tool_timeout_ms=timeouts["tool"],
        approval_timeout_ms=timeouts["approval"],
        last_activity_ms=time_ms,
        output=None,
        end_reason=None,
        started_ms=time_ms,
        updated_ms=time_ms,
    )


def _tools_status(tools: tuple[PendingTool, ...]) -> Status:
    if any(t.status == "awaiting_approval" for t in tools):
        return "waiting_for_approval"
    return "running"


Changes = dict[str, Any]
"""Field name -> new value; every handler returns one and evolve applies it at once."""

_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SessionState))
_VALUES = attrgetter(*_FIELDS)
_INDEX: dict[str, int] = {name: i for i, name in enumerate(_FIELDS)}
# The slot descriptors' setters: a frozen dataclass's __init__ goes through
# object.__setattr__ once per field, which was a third of the cost of a copy.
_SETTERS: tuple[Callable[[SessionState, Any], None], ...] = tuple(
    SessionState.__dict__[name].__set__ for name in _FIELDS
)


def _updated(state: SessionState, changes: Changes) -> SessionState:
    """``dataclasses.replace`` for the fold (this runs once per event, live and on replay).

    It builds the new (still frozen) state through the slot descriptors, about
    twice as fast as ``SessionState(**values)`` over every field. Nothing else may
    write a slot; the state stays immutable to everyone else.
    """
    values = list(_VALUES(state))
    for name, value in changes.items():
        values[_INDEX[name]] = value
    new = object.__new__(SessionState)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(new, value)
    return new


def _without_tool(s: SessionState, e: Mapping[str, Any], content: str) -> Changes:
    call_id = e["call_id"]
    pending = s.tool(call_id)
    name = pending.tool if pending else e["tool"]
    remaining = tuple(t for t in s.pending_tools if t.call_id != call_id)
    message = ChatMessage("tool", content, tool_call_id=call_id, name=name)
    messages = (*s.messages, message)
    deferred = s.deferred
    if not remaining and deferred:
        messages, deferred = messages + deferred, ()
    return {
        "pending_tools": remaining,
        "finished_calls": s.finished_calls | {call_id},
        "messages": messages,
        "deferred": deferred,
        "status": _tools_status(remaining) if not s.terminal else s.status,
    }


def _replace_tool(s: SessionState, call_id: str, **changes: Any) -> tuple[PendingTool, ...]:
    return tuple(replace(t, **changes) if t.call_id == call_id else t for t in s.pending_tools)


def _user_message(s: SessionState, e: Mapping[str, Any]) -> Changes:
    message = ChatMessage("user", e["text"])
    if s.pending_tools:
        return {"deferred": (*s.deferred, message)}
    return {"messages": (*s.messages, message)}


def _llm_requested(s: SessionState, e: Mapping[str, Any]) -> Changes:
    pending = PendingLLM(
        call_id=e["call_id"],
        step=int(e["step"]),
        deadline_ms=int(e["time_ms"]) + s.llm_timeout_ms,
        message_count=int(e["message_count"]),
    )
    return {
        "pending_llm": pending,
        "llm_steps": pending.step,
        "turn_steps": s.turn_steps + 1,
        "status": "running",
    }


def _llm_completed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    calls = tuple(ToolCall.from_record(c) for c in e.get("tool_calls") or ())
    changes: Changes = {
        "pending_llm": None,
        "finished_calls": s.finished_calls | {e["call_id"]},
        "tokens_used": s.tokens_used
        + int(e.get("input_tokens", 0))
        + int(e.get("output_tokens", 0)),
        "cost_usd": s.cost_usd + float(e.get("cost_usd", 0.0)),
    }
    if calls:
        message = ChatMessage("assistant", e.get("content"), tool_calls=calls)
        changes["messages"] = (*s.messages, message)
    return changes


def _llm_failed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return {"pending_llm": None, "finished_calls": s.finished_calls | {e["call_id"]}}


def _tool_requested(s: SessionState, e: Mapping[str, Any]) -> Changes:
    pending = PendingTool(
        call_id=e["call_id"],
        tool=e["tool"],
        arguments_json=e["arguments_json"],
        llm_call_id=e["llm_call_id"],
        status="running",
        deadline_ms=int(e["time_ms"]) + s.tool_timeout_ms,
    )
    return {"pending_tools": (*s.pending_tools, pending)}


def _approval_requested(s: SessionState, e: Mapping[str, Any]) -> Changes:
    deadline = int(e["time_ms"]) + s.approval_timeout_ms
    tools = _replace_tool(s, e["call_id"], status="awaiting_approval", deadline_ms=deadline)
    return {"pending_tools": tools, "status": "waiting_for_approval"}


def _approval_resolved(s: SessionState, e: Mapping[str, Any]) -> Changes:
    if not e["approved"]:
        return {}  # ToolCallFailed follows and removes the call.
    deadline = int(e["time_ms"]) + s.tool_timeout_ms
    tools = _replace_tool(s, e["call_id"], status="running", deadline_ms=deadline)
    return {"pending_tools": tools, "status": _tools_status(tools)}


def _assistant_message(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return {
        "messages": (*s.messages, ChatMessage("assistant", e["text"])),
        "output": e["text"],
        "turn_steps": 0,
        "status": "waiting_for_user" if s.keep_open else s.status,
    }


def _ended(s: SessionState, e: Mapping[str, Any], status: Status) -> Changes:
    return {
        "status": status,
        "end_reason": e.get("reason") or status,
        "output": s.output,
        "pending_llm": None,
        "pending_tools": (),
        "deferred": (),
    }


def _session_completed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    # The event names the output the session ends with (for an idle timeout, the last answer).
    return {**_ended(s, e, "completed"), "output": e.get("output", s.output)}


def _session_failed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return _ended(s, e, "failed")


def _session_cancelled(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return _ended(s, e, "cancelled")


def _tool_completed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return _without_tool(s, e, e["output"])


def _tool_failed(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return _without_tool(s, e, f"error: {e['error']}")


def _budget_exceeded(s: SessionState, e: Mapping[str, Any]) -> Changes:
    return {}  # SessionFailed follows; the usage is already in the state.


# Named functions rather than lambdas or handlers built by a factory at import: each
# rule then reads on its own, and mutation testing can switch every one of them.
_HANDLERS: dict[str, Callable[[SessionState, Mapping[str, Any]], Changes]] = {
    "UserMessageAdded": _user_message,
    "LLMCallRequested": _llm_requested,
    "LLMCallCompleted": _llm_completed,
    "LLMCallFailed": _llm_failed,
    "ToolCallRequested": _tool_requested,
    "ToolCallCompleted": _tool_completed,
    "ToolCallFailed": _tool_failed,
    "ApprovalRequested": _approval_requested,
    "ApprovalResolved": _approval_resolved,
    "AssistantMessageAdded": _assistant_message,
    "BudgetExceeded": _budget_exceeded,
    "SessionCompleted": _session_completed,
    "SessionFailed": _session_failed,
    "SessionCancelled": _session_cancelled,
}


def _changes(state: SessionState, name: str, event: Mapping[str, Any]) -> Changes:
    """What event ``name`` changes in ``state``; raises EventOrderError if it cannot follow."""
    seq = int(event["seq"])
    if seq != state.seq + 1:
        raise EventOrderError(
            f"session {state.session_id}: {name} has seq {seq}, expected {state.seq + 1}"
        )
    handler = _HANDLERS.get(name)
    if handler is None:
        raise EventOrderError(f"session {state.session_id}: {name} cannot follow SessionStarted")
    changes = handler(state, event)
    time_ms = int(event["time_ms"])
    changes["seq"] = seq
    changes["updated_ms"] = changes["last_activity_ms"] = time_ms
    return changes


def evolve(state: SessionState | None, name: str, event: Mapping[str, Any]) -> SessionState:
    """The state after applying event ``name`` (its Avro dict) to ``state``.

    Raises :class:`EventOrderError` when the event cannot follow ``state``: with
    no state the event must be SessionStarted, and every later event must carry
    exactly ``state.seq + 1`` (a gap or a repeat means a broken log, which must
    stop the replay rather than build a wrong state).
    """
    if state is None:
        if name != "SessionStarted":
            raise EventOrderError(f"{name} before SessionStarted")
        return _started(event)
    return _updated(state, _changes(state, name, event))


def private_copy(state: SessionState) -> SessionState:
    """A copy of ``state`` that only the caller holds, for :func:`evolve_private`."""
    return _updated(state, {})


def evolve_private(state: SessionState | None, name: str, event: Mapping[str, Any]) -> SessionState:
    """:func:`evolve` for a fold that alone holds ``state``: it changes ``state`` in place.

    Partition replay folds tens of thousands of events into states nobody else
    sees until it ends; copying every field per event was most of its time
    (py-spy, ``bench_engine replay``). ``state`` must be None, a state this returned,
    or a :func:`private_copy`: a state anyone else holds (the session cache, a
    Decision) must never be passed, as it would change under them. The result
    equals ``evolve(state, name, event)`` (a property test holds them equal).
    """
    if state is None:
        return evolve(None, name, event)
    for field, value in _changes(state, name, event).items():
        _SETTERS[_INDEX[field]](state, value)
    return state


def rebuild(
    events: Iterable[tuple[str, Mapping[str, Any]]], state: SessionState | None = None
) -> SessionState | None:
    """Fold :func:`evolve` over ``events``, starting from ``state`` (e.g. a snapshot).

    Events at or below the state's seq are skipped: a replay that starts at a
    partition checkpoint may read events a newer snapshot already holds.
    """
    for name, event in events:
        if state is not None and int(event["seq"]) <= state.seq:
            continue
        state = evolve(state, name, event)
    return state
