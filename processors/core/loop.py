"""The agent loop's moves, shared by the command handlers of :mod:`processors.core.decide`.

A :class:`Step` collects the events of one decision. Each ``emit`` fills the
envelope (deterministic event id, the command's time, causation and the
session's correlation id, the next seq) and applies the event with
``evolve`` at once, so every later move reads the state as it will be after
the events so far; ``Decision.state`` is then the fold of the events by
construction. The moves (ask the model, request a tool, answer, ...) encode
the rules of the loop once, whichever command led to them.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any, Literal

from processors.agents.model_types import ChatMessage, ToolCall, prompt_hash_of_records
from processors.core.evolve import evolve
from processors.core.state import Decision, Record, SessionState, WorkItem

if TYPE_CHECKING:
    from processors.agents.catalog import AgentCatalog, AgentConfig

NAMESPACE = uuid.UUID("6f1c5e0e-7d0b-5b7e-9a43-0c1f2a4c3e11")
"""uuid5 namespace of every id the core derives (event, work item and LLM call ids)."""


_NAMESPACE_BYTES = NAMESPACE.bytes


def derive_id(*parts: object) -> str:
    """A deterministic UUID from ``parts`` (same parts, same id, on every replay).

    Equal to ``str(uuid.uuid5(NAMESPACE, ":".join(map(str, parts))))``, computed
    without building UUID objects (several ids per event, on the hot path).
    """
    name = ":".join([str(p) for p in parts]).encode("utf-8", "surrogatepass")
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def seconds(ms: int) -> str:
    """``120000`` -> ``"120"``, ``1500`` -> ``"1.5"`` (for error texts)."""
    return f"{ms / 1000:g}"


class Step:
    """The events and work items one command leads to, applied as they are emitted."""

    def __init__(
        self,
        state: SessionState | None,
        command: dict[str, Any],
        agents: AgentCatalog,
    ) -> None:
        self.before = state
        self.state = state
        self.command = command
        self.agents = agents
        self.command_id: str = command["event_id"]
        self.time_ms: int = int(command["time_ms"])
        self.events: list[Record] = []
        self.work: list[WorkItem] = []

    # -- outcomes ---------------------------------------------------------------

    def done(self) -> Decision:
        return Decision(tuple(self.events), tuple(self.work), self.state)

    def reject(self, reason: str) -> Decision:
        return Decision((), (), self.before, rejection=reason)

    def duplicate(self) -> Decision:
        return Decision((), (), self.before, duplicate=True)

    # -- envelope and emission --------------------------------------------------

    @property
    def current(self) -> SessionState:
        """The state so far; only valid once the session exists."""
        assert self.state is not None, "no session yet"
        return self.state

    @property
    def agent(self) -> AgentConfig:
        config = self.agents.agent(self.current.agent)
        assert config is not None, "decide checks the agent exists before any move"
        return config

    def _envelope(self, event_id: str, causation_id: str) -> dict[str, Any]:
        state = self.state
        if state is None:
            session_id, tenant_id = self.command["session_id"], self.command["tenant_id"]
            correlation = self.command.get("correlation_id") or self.command_id
        else:
            session_id, tenant_id = state.session_id, state.tenant_id
            correlation = state.correlation_id
        return {
            "event_id": event_id,
            "session_id": session_id,
            "tenant_id": tenant_id,
            "time_ms": self.time_ms,
            "causation_id": causation_id,
            "correlation_id": correlation,
        }

    def emit(self, name: str, **fields: Any) -> dict[str, Any]:
        """Append event ``name`` with ``fields`` at the next seq and apply it; returns it."""
        seq = (self.state.seq if self.state is not None else 0) + 1
        session_id = self.state.session_id if self.state else self.command["session_id"]
        event = self._envelope(derive_id(session_id, seq, self.command_id), self.command_id)
        event["seq"] = seq
        event.update(fields)
        self.state = evolve(self.state, name, event)
        self.events.append((name, event))
        return event

    def emit_work(
        self, kind: Literal["llm", "tool"], name: str, cause: dict[str, Any], **fields: Any
    ) -> None:
        """Add a work item caused by event ``cause`` (its causation id is that event's id)."""
        work_id = derive_id(self.current.session_id, self.command_id, "work", fields["call_id"])
        record = self._envelope(work_id, cause["event_id"])
        record.update(fields)
        self.work.append(WorkItem(kind, (name, record)))

    # -- the loop's moves ---------------------------------------------------------

    def ask_model(self) -> None:
        """Request the next model call with the whole conversation, or fail on max_steps."""
        state, agent = self.current, self.agent
        if state.turn_steps + 1 > agent.max_steps:
            self.emit("SessionFailed", reason="max_steps")
            return
        messages = [m.to_record() for m in state.messages]
        if agent.system:
            messages.insert(0, ChatMessage("system", agent.system).to_record())
        tools = [spec.to_record() for spec in self.agents.tool_specs(agent.name)]
        digest = prompt_hash_of_records(agent.model, messages, tools)
        step = state.llm_steps + 1
        call_id = derive_id(state.session_id, self.command_id, "llm", state.seq + 1)
        event = self.emit(
            "LLMCallRequested",
            call_id=call_id,
            model=agent.model,
            step=step,
            prompt_hash=digest,
            message_count=len(state.messages),
        )
        pending = self.current.pending_llm
        assert pending is not None
        self.emit_work(
            "llm",
            "LLMCallWork",
            event,
            call_id=call_id,
            agent=agent.name,
            model=agent.model,
            step=step,
            prompt_hash=digest,
            messages=messages,
            tools=tools,
            deadline_ms=pending.deadline_ms,
        )

    def request_tool(self, call: ToolCall, llm_call_id: str) -> None:
        """Record a tool call the model asked for, then refuse, gate or run it."""
        agent = self.agent
        self.emit(
            "ToolCallRequested",
            call_id=call.call_id,
            tool=call.name,
            arguments_json=call.arguments_json,
            llm_call_id=llm_call_id,
        )
        if call.name not in agent.tools:
            error = f"tool {call.name} is not allowed for agent {agent.name}"
            self.emit("ToolCallFailed", call_id=call.call_id, tool=call.name, error=error)
        elif call.name in agent.approval:
            self.emit(
                "ApprovalRequested",
                call_id=call.call_id,
                tool=call.name,
                arguments_json=call.arguments_json,
            )
        else:
            self.run_tool(call.call_id, self.events[-1][1])

    def run_tool(self, call_id: str, cause: dict[str, Any]) -> None:
        """Send the (pending, running) tool call to the tool executors."""
        pending = self.current.tool(call_id)
        assert pending is not None and pending.status == "running"
        self.emit_work(
            "tool",
            "ToolCallWork",
            cause,
            call_id=call_id,
            agent=self.current.agent,
            tool=pending.tool,
            arguments_json=pending.arguments_json,
            deadline_ms=pending.deadline_ms,
        )

    def after_tool(self) -> None:
        """A tool call got its result: once none is pending, ask the model again."""
        if not self.current.pending_tools and not self.current.terminal:
            self.ask_model()

    def answer(self, text: str, llm_call_id: str, prompt_count: int) -> None:
        """The model answered: record it, then go on, wait for the user, or complete.

        User messages that arrived while the model was thinking (after the
        prompt's ``prompt_count`` messages) were not seen by it; rather than
        drop them, the session asks the model again at once.
        """
        unanswered = any(m.role == "user" for m in self.current.messages[prompt_count:])
        self.emit("AssistantMessageAdded", text=text, llm_call_id=llm_call_id)
        if unanswered:
            self.ask_model()
        elif not self.current.keep_open:
            self.emit("SessionCompleted", output=text, reason="answered")

    def over_budget(self, more_tokens: int, more_cost: float) -> str | None:
        """Which budget limit the session passes with this much more usage ('tokens>20000')."""
        budget, state = self.agent.budget, self.current
        if budget.tokens is not None and state.tokens_used + more_tokens > budget.tokens:
            return f"tokens>{budget.tokens}"
        if budget.cost_usd is not None and state.cost_usd + more_cost > budget.cost_usd:
            return f"cost_usd>{budget.cost_usd:g}"
        return None

    def unique_calls(self, specs: list[dict[str, Any]]) -> tuple[ToolCall, ...]:
        """The model's tool calls with ids unique in the session.

        A missing id, or one the session already used (some providers number
        calls per response: ``call_0``...), is replaced by a derived one, so a
        result always matches exactly one call. The replacement is what
        LLMCallCompleted records, so the conversation stays consistent.
        """
        state = self.current
        seen = set(state.finished_calls)
        seen.update(t.call_id for t in state.pending_tools)
        if state.pending_llm is not None:
            seen.add(state.pending_llm.call_id)
        calls: list[ToolCall] = []
        for index, spec in enumerate(specs):
            call_id = str(spec.get("call_id") or "")
            if not call_id or call_id in seen:
                call_id = derive_id(state.session_id, self.command_id, "tool", index)
            seen.add(call_id)
            calls.append(
                ToolCall(call_id, str(spec["name"]), str(spec.get("arguments_json") or "{}"))
            )
        return tuple(calls)
