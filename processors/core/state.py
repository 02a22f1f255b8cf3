"""The session's state and the records the core hands to the runtime.

All frozen: a state is a value, changed only by :func:`processors.core.evolve`,
which returns a new one. The runtime may therefore keep, share and snapshot a
state without copying it, and a test can compare two states with ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from processors.agents.model_types import ChatMessage

Record = tuple[str, dict[str, Any]]
"""(Avro record name, Avro-ready dict fitting ``schemas/avsc/<name>.avsc``)."""

Status = Literal[
    "running", "waiting_for_user", "waiting_for_approval", "completed", "failed", "cancelled"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

ToolStatus = Literal["running", "awaiting_approval"]
TimerKind = Literal["llm_timeout", "tool_timeout", "approval_timeout", "idle_timeout"]
TIMER_KINDS: tuple[str, ...] = ("llm_timeout", "tool_timeout", "approval_timeout", "idle_timeout")


@dataclass(frozen=True, slots=True)
class PendingLLM:
    """The model call the session waits for (at most one at a time)."""

    call_id: str
    """The engine-derived id; the result must carry it."""
    step: int
    """Which model call of the session it is (1, 2, ...)."""
    deadline_ms: int
    """Epoch ms when its ``llm_timeout`` timer fires."""
    message_count: int
    """How many conversation messages its prompt held (the prompt is this prefix)."""


@dataclass(frozen=True, slots=True)
class PendingTool:
    """A tool call the model asked for that has no result yet."""

    call_id: str
    """The id from the model's request (made unique by the core when needed)."""
    tool: str
    arguments_json: str
    llm_call_id: str
    """The model call that asked for it."""
    status: ToolStatus
    """running (a work item is out) | awaiting_approval (nothing runs until an Approval)."""
    deadline_ms: int
    """Epoch ms of its ``tool_timeout`` (running) or ``approval_timeout`` (awaiting)."""


@dataclass(frozen=True, slots=True)
class SessionState:
    """Everything the core needs to decide the session's next events: a fold over its events."""

    session_id: str
    tenant_id: str
    agent: str
    status: Status
    seq: int
    """seq of the last event applied (the next event gets seq + 1)."""
    correlation_id: str
    """Shared by every event of the session: the StartSession's correlation id or event id."""
    start_event_id: str
    """event_id of the StartSession (a second StartSession with it is a duplicate)."""
    messages: tuple[ChatMessage, ...]
    """The conversation without the system message, each message once, in order."""
    deferred: tuple[ChatMessage, ...]
    """User messages that arrived while tool calls were out; they join ``messages`` when the
    last result is in, so no user message ever sits between a tool request and its result."""
    llm_steps: int
    """Model calls requested so far in the session (the last call's ``step``)."""
    turn_steps: int
    """Model calls requested since the last answer (what ``max_steps`` limits)."""
    pending_llm: PendingLLM | None
    pending_tools: tuple[PendingTool, ...]
    """In the order the model asked for them."""
    finished_calls: frozenset[str]
    """Ids of LLM and tool calls that have their result event (later results are duplicates)."""
    tokens_used: int
    """Input + output tokens over the session (what the token budget limits)."""
    cost_usd: float
    keep_open: bool
    idle_timeout_ms: int
    """With keep_open: how long the session waits for a message once it answered."""
    llm_timeout_ms: int
    tool_timeout_ms: int
    approval_timeout_ms: int
    last_activity_ms: int
    """time_ms of the last event (the idle timer counts from it)."""
    output: str | None
    """The last answer."""
    end_reason: str | None
    """Why the session ended (the terminal event's reason); None while it runs."""
    started_ms: int
    updated_ms: int

    @property
    def terminal(self) -> bool:
        """True once the session has its terminal event; nothing follows it."""
        return self.status in TERMINAL_STATUSES

    def tool(self, call_id: str) -> PendingTool | None:
        """The pending tool call ``call_id``, if any."""
        for pending in self.pending_tools:
            if pending.call_id == call_id:
                return pending
        return None

    @property
    def idle_deadline_ms(self) -> int | None:
        """When an open session waiting for the user completes by idle timeout, else None."""
        if self.status == "waiting_for_user" and self.keep_open:
            return self.last_activity_ms + self.idle_timeout_ms
        return None


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    """A durable timer the runtime must fire (as a TimerFired command) at ``deadline_ms``."""

    deadline_ms: int
    """Epoch ms when it is due."""
    kind: TimerKind
    call_id: str | None
    """The call it guards; None for ``idle_timeout``."""
    timer_id: str
    """``<kind>:<call_id or session_id>``; a new deadline under the same id replaces the old."""


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A record for an executor topic, implied by the events of the same decision."""

    kind: Literal["llm", "tool"]
    """Which topic: ``agentstream.llm-calls`` (llm) or ``agentstream.tool-calls`` (tool)."""
    record: Record
    """("LLMCallWork", {...}) or ("ToolCallWork", {...})."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`processors.core.decide` made of one command."""

    events: tuple[Record, ...]
    """New events, seq state.seq+1, +2, ... in order."""
    work: tuple[WorkItem, ...]
    """Work items the events imply; produced in the same transaction as the events."""
    state: SessionState | None
    """The state after the events (equal to folding evolve over them); the input state when
    nothing happened; None only if there is no session and nothing happened."""
    rejection: str | None = None
    """Why the command does not fit (DLQ reason); events and work are empty then."""
    duplicate: bool = False
    """The command repeats something already applied (or is stale): ignored, not an error."""
