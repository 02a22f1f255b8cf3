"""``decide``: what one inbox command means for a session, as new events and work items.

A pure function of (state, command name, command, agents): no clock (event
times are the command's ``time_ms``), no randomness (ids are uuid5 of the
session, the command's event id and a position), no I/O. Run twice on the same
inputs it gives equal decisions, which is what lets the runtime retry a batch
after a crash and the tests compare a live run with a replay.

Three kinds of outcome:

* events (and the work items they imply), applied to the state with evolve;
* ``duplicate``: the command was already applied or is stale (a retried result,
  a timer for a call already answered, a late result for an ended session):
  ignored, not an error;
* ``rejection``: the command does not fit (unknown agent or call, message to an
  ended session, malformed record): the runtime sends it to the DLQ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from processors.core.evolve import EventOrderError
from processors.core.loop import Step, seconds
from processors.core.state import TIMER_KINDS, Decision, SessionState

if TYPE_CHECKING:
    from processors.agents.catalog import AgentCatalog


def _start(s: Step) -> Decision:
    c, state = s.command, s.state
    if state is not None:
        if c["event_id"] == state.start_event_id:
            return s.duplicate()
        return s.reject(f"session {state.session_id} already exists")
    if not c.get("session_id") or not c.get("tenant_id"):
        return s.reject("StartSession needs a session_id and a tenant_id")
    agent = s.agents.agent(c["agent"])
    if agent is None:
        return s.reject(f"unknown agent {c['agent']!r}")
    keep_open = bool(c.get("keep_open", False))
    idle_ms = int(c.get("idle_timeout_ms") or 0)
    if not keep_open:
        idle_ms = 0
    elif idle_ms <= 0:
        idle_ms = agent.idle_timeout_ms
    s.emit(
        "SessionStarted",
        agent=agent.name,
        input=c["input"],
        keep_open=keep_open,
        idle_timeout_ms=idle_ms,
        llm_timeout_ms=agent.llm_timeout_ms,
        tool_timeout_ms=agent.tool_timeout_ms,
        approval_timeout_ms=agent.approval_timeout_ms,
        metadata=dict(c.get("metadata") or {}),
    )
    s.emit("UserMessageAdded", text=c["input"])
    s.ask_model()
    return s.done()


def _llm_result(s: Step) -> Decision:
    c, state = s.command, s.current
    call_id = c["call_id"]
    if state.terminal or call_id in state.finished_calls:
        return s.duplicate()
    pending = state.pending_llm
    if pending is None or pending.call_id != call_id:
        return s.reject(f"result for unknown LLM call {call_id}")
    if not c["ok"]:
        error = c.get("error") or "model call failed"
        s.emit("LLMCallFailed", call_id=call_id, error=error)
        s.emit("SessionFailed", reason=f"llm_failed: {error}")
        return s.done()
    calls = s.unique_calls(list(c.get("tool_calls") or ()))
    input_tokens, output_tokens = int(c.get("input_tokens", 0)), int(c.get("output_tokens", 0))
    cost = float(c.get("cost_usd", 0.0))
    limit = s.over_budget(input_tokens + output_tokens, cost)
    content = c.get("content")
    # The log holds each message once: a final answer is AssistantMessageAdded's text,
    # so LLMCallCompleted keeps the content only when no such event will follow.
    answered = not calls and limit is None
    s.emit(
        "LLMCallCompleted",
        call_id=call_id,
        model=c.get("model") or "",
        content=None if answered else content,
        tool_calls=[call.to_record() for call in calls],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cached_tokens=int(c.get("cached_tokens", 0)),
        cost_usd=cost,
        latency_s=float(c.get("latency_s", 0.0)),
    )
    if limit is not None:
        after = s.current
        s.emit(
            "BudgetExceeded", tokens_used=after.tokens_used, cost_usd=after.cost_usd, limit=limit
        )
        s.emit("SessionFailed", reason="budget")
    elif calls:
        for call in calls:
            s.request_tool(call, call_id)
        s.after_tool()
    else:
        s.answer(content or "", call_id, pending.message_count)
    return s.done()


def _tool_result(s: Step) -> Decision:
    c, state = s.command, s.current
    call_id = c["call_id"]
    if state.terminal or call_id in state.finished_calls:
        return s.duplicate()
    pending = state.tool(call_id)
    if pending is None:
        return s.reject(f"result for unknown tool call {call_id}")
    if pending.status != "running":
        return s.reject(f"result for tool call {call_id}, which waits for approval and never ran")
    if c["ok"]:
        s.emit(
            "ToolCallCompleted",
            call_id=call_id,
            tool=pending.tool,
            output=c.get("output") or "",
            latency_s=float(c.get("latency_s", 0.0)),
        )
    else:
        error = c.get("error") or "tool failed"
        s.emit("ToolCallFailed", call_id=call_id, tool=pending.tool, error=error)
    s.after_tool()
    return s.done()


def _approval(s: Step) -> Decision:
    c, state = s.command, s.current
    call_id = c["call_id"]
    if state.terminal:
        return s.reject(f"session {state.session_id} has ended")
    pending = state.tool(call_id)
    if pending is None:
        if call_id in state.finished_calls:
            return s.duplicate()
        return s.reject(f"approval for unknown tool call {call_id}")
    if pending.status != "awaiting_approval":
        return s.duplicate()
    approved, reason = bool(c["approved"]), c.get("reason")
    event = s.emit("ApprovalResolved", call_id=call_id, approved=approved, reason=reason)
    if approved:
        s.run_tool(call_id, event)
    else:
        error = f"denied: {reason}" if reason else "denied"
        s.emit("ToolCallFailed", call_id=call_id, tool=pending.tool, error=error)
        s.after_tool()
    return s.done()


def _user_message(s: Step) -> Decision:
    state = s.current
    if state.terminal:
        return s.reject(f"session {state.session_id} has ended")
    s.emit("UserMessageAdded", text=s.command["text"])
    if state.status == "waiting_for_user":
        s.ask_model()
    return s.done()


def _cancel(s: Step) -> Decision:
    if s.current.terminal:
        return s.duplicate()
    s.emit("SessionCancelled", reason=s.command.get("reason"))
    return s.done()


def _timer(s: Step) -> Decision:
    c, state = s.command, s.current
    kind, call_id = c["kind"], c.get("call_id")
    if kind not in TIMER_KINDS:
        return s.reject(f"unknown timer kind {kind!r}")
    if state.terminal:
        return s.duplicate()
    if kind == "llm_timeout":
        if state.pending_llm is None or state.pending_llm.call_id != call_id:
            return s.duplicate()
        error = f"timeout after {seconds(state.llm_timeout_ms)}s"
        s.emit("LLMCallFailed", call_id=call_id, error=error)
        s.emit("SessionFailed", reason=f"llm_failed: {error}")
        return s.done()
    if kind == "idle_timeout":
        deadline = state.idle_deadline_ms
        if deadline is None or s.time_ms < deadline:
            return s.duplicate()
        s.emit("SessionCompleted", output=state.output, reason="idle_timeout")
        return s.done()
    pending = state.tool(call_id) if call_id else None
    waits = "running" if kind == "tool_timeout" else "awaiting_approval"
    if pending is None or pending.status != waits:
        return s.duplicate()
    if kind == "tool_timeout":
        error = f"timeout after {seconds(state.tool_timeout_ms)}s"
    else:
        s.emit("ApprovalResolved", call_id=pending.call_id, approved=False, reason="timeout")
        error = f"denied: no approval within {seconds(state.approval_timeout_ms)}s"
    s.emit("ToolCallFailed", call_id=pending.call_id, tool=pending.tool, error=error)
    s.after_tool()
    return s.done()


_COMMANDS: dict[str, Callable[[Step], Decision]] = {
    "StartSession": _start,
    "LLMCallResult": _llm_result,
    "ToolCallResult": _tool_result,
    "Approval": _approval,
    "UserMessage": _user_message,
    "Cancel": _cancel,
    "TimerFired": _timer,
}


def _mismatch(state: SessionState, command: dict[str, Any]) -> str | None:
    if command.get("session_id") != state.session_id:
        given = command.get("session_id")
        return f"command for session {given!r} given the state of {state.session_id}"
    if command.get("tenant_id") != state.tenant_id:
        return f"tenant {command.get('tenant_id')!r} does not own session {state.session_id}"
    return None


def decide(
    state: SessionState | None, name: str, command: dict[str, Any], agents: AgentCatalog
) -> Decision:
    """The events, work items and new state that inbox command ``name`` leads to.

    Never raises for a bad command: a command that does not fit, or lacks a
    field it needs, comes back as a rejection naming why.
    """
    handler = _COMMANDS.get(name)
    if handler is None:
        return Decision((), (), state, rejection=f"{name} is not a session command")
    if state is None and name != "StartSession":
        return Decision((), (), None, rejection=f"{name} for a session that does not exist")
    if state is not None and name != "StartSession":
        problem = _mismatch(state, command)
        if problem:
            return Decision((), (), state, rejection=problem)
    try:
        step = Step(state, command, agents)
        if (
            state is not None
            and not state.terminal
            and name not in ("Cancel", "StartSession")
            and agents.agent(state.agent) is None
        ):
            step.emit("SessionFailed", reason=f"agent {state.agent!r} is no longer defined")
            return step.done()
        return handler(step)
    except EventOrderError:
        raise  # a broken state or log, not a bad command
    except KeyError as error:
        return Decision((), (), state, rejection=f"malformed {name}: missing field {error}")
    except (TypeError, ValueError) as error:
        return Decision((), (), state, rejection=f"malformed {name}: {error}")
