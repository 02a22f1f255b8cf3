"""An in-memory runtime for the session core: whole sessions without Kafka.

:class:`InlineRuntime` plays the engine and both executors in one process:
it feeds a command to ``decide``, keeps each session's event log and state,
answers LLM work items with a model (the :class:`~processors.agents.sim_model.SimulatedModel`
by default) and tool work items with a tool registry, and feeds their results
back, until nothing is left to do. Approvals, user messages, cancels and timer
firings are the caller's to send, so a test can script any interleaving.

It exists for users' tests of their agents and tools, for the unit tests of
the core, and for benchmarks of the core alone; it is not a production
runtime (no durability, no concurrency, one clock: ``now_ms``, advanced by
the caller or by 1 ms per command).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from processors.agents.catalog import AgentCatalog
from processors.agents.model_types import LLMRequest, LLMResponse, ModelError, llm_result_record
from processors.agents.sim_model import SimulatedModel
from processors.agents.tools import ToolRegistry, run_tool, tool_result_record
from processors.core import Decision, Record, SessionState, WorkItem, decide, derive_id


class ReplyingModel(Protocol):
    """What the inline runtime needs from a model: a synchronous reply."""

    def decide_reply(self, request: LLMRequest) -> LLMResponse: ...


@dataclass
class InlineRuntime:
    """Drives sessions through ``decide`` with in-process executors (see the module docstring)."""

    agents: AgentCatalog
    model: ReplyingModel = field(default_factory=SimulatedModel)
    tools: ToolRegistry | None = None
    now_ms: int = 1_700_000_000_000
    """The clock every command is stamped with; +1 ms after each command."""
    states: dict[str, SessionState] = field(default_factory=dict)
    logs: dict[str, list[Record]] = field(default_factory=dict)
    """Each session's events, in seq order."""
    decisions: list[tuple[str, dict[str, Any], Decision]] = field(default_factory=list)
    """Every command applied, with what decide made of it."""
    _counter: int = 0

    def __post_init__(self) -> None:
        if self.tools is None:
            self.tools = self.agents.registry()

    def _command(self, session_id: str, tenant_id: str, **fields: Any) -> dict[str, Any]:
        self._counter += 1
        record: dict[str, Any] = {
            "event_id": derive_id("inline", session_id, self._counter),
            "session_id": session_id,
            "tenant_id": tenant_id,
            "time_ms": self.now_ms,
            "causation_id": None,
            "correlation_id": None,
        }
        record.update(fields)
        return record

    def apply(self, name: str, command: dict[str, Any]) -> Decision:
        """Feed one command to ``decide`` and record the outcome (no work is run)."""
        session_id = command["session_id"]
        decision = decide(self.states.get(session_id), name, command, self.agents)
        self.decisions.append((name, command, decision))
        if decision.events:
            self.logs.setdefault(session_id, []).extend(decision.events)
        if decision.state is not None:
            self.states[session_id] = decision.state
        self.now_ms += 1
        return decision

    async def send(self, name: str, command: dict[str, Any]) -> Decision:
        """Apply ``command``, then run every work item it leads to, transitively."""
        decision = self.apply(name, command)
        queue: deque[WorkItem] = deque(decision.work)
        while queue:
            result_name, result = await self._execute(queue.popleft())
            queue.extend(self.apply(result_name, result).work)
        return decision

    async def _execute(self, item: WorkItem) -> Record:
        _, work = item.record
        event_id = derive_id("inline-result", work["event_id"])
        if item.kind == "llm":
            request = LLMRequest.from_work(work)
            try:
                response: LLMResponse | None = self.model.decide_reply(request)
                error = None
            except ModelError as failure:
                response, error = None, str(failure)
            return (
                "LLMCallResult",
                llm_result_record(
                    work, response, event_id=event_id, time_ms=self.now_ms, error=error
                ),
            )
        assert self.tools is not None
        outcome = await run_tool(self.tools, work["tool"], work["arguments_json"], work["call_id"])
        record = tool_result_record(work, outcome, event_id=event_id, time_ms=self.now_ms)
        return ("ToolCallResult", record)

    async def start(
        self,
        session_id: str,
        agent: str,
        text: str,
        *,
        tenant_id: str = "tenant",
        keep_open: bool = False,
        idle_timeout_ms: int = 0,
    ) -> Decision:
        """Start a session and run it as far as it goes without the caller."""
        command = self._command(
            session_id,
            tenant_id,
            agent=agent,
            input=text,
            keep_open=keep_open,
            idle_timeout_ms=idle_timeout_ms,
            metadata={},
        )
        return await self.send("StartSession", command)

    def _for(self, session_id: str, **fields: Any) -> dict[str, Any]:
        return self._command(session_id, self.states[session_id].tenant_id, **fields)

    async def say(self, session_id: str, text: str) -> Decision:
        return await self.send("UserMessage", self._for(session_id, text=text))

    async def approve(
        self, session_id: str, call_id: str, approved: bool = True, reason: str | None = None
    ) -> Decision:
        command = self._for(session_id, call_id=call_id, approved=approved, reason=reason)
        return await self.send("Approval", command)

    async def cancel(self, session_id: str, reason: str | None = None) -> Decision:
        return await self.send("Cancel", self._for(session_id, reason=reason))

    async def fire(self, session_id: str, kind: str, call_id: str | None = None) -> Decision:
        """Fire a timer now (the caller sets ``now_ms`` past its deadline first, if it cares)."""
        target = call_id or session_id
        command = self._for(session_id, timer_id=f"{kind}:{target}", kind=kind, call_id=call_id)
        return await self.send("TimerFired", command)

    def events(self, session_id: str) -> list[str]:
        """The names of the session's events, in order (handy in assertions)."""
        return [name for name, _ in self.logs.get(session_id, [])]
