"""Shared kit for the core's tests: a test catalog, command builders, and the log checks.

The other ``test_core_*`` modules import from here; the few tests at the end
check the kit itself.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from processors.agents.catalog import AgentCatalog, AgentConfig, Budget, builtin_catalog
from processors.core import Decision, Record, SessionState, decide, rebuild
from schemas import TERMINAL_EVENT_NAMES, Codec

CODEC = Codec()
T0 = 1_700_000_000_000

RESULT_EVENTS = {
    "LLMCallCompleted": "llm",
    "LLMCallFailed": "llm",
    "ToolCallCompleted": "tool",
    "ToolCallFailed": "tool",
}


def catalog() -> AgentCatalog:
    """Built-ins plus agents exercising each rule: approval, budget, steps, keep_open."""
    base = builtin_catalog()
    agents = dict(base.agents)
    demo = base.agents["demo"]
    agents["gated"] = replace(
        demo, name="gated", approval=frozenset({"weather"}), approval_timeout_s=30.0
    )
    agents["budget"] = replace(demo, name="budget", budget=Budget(tokens=100, cost_usd=0.01))
    agents["tight"] = replace(demo, name="tight", max_steps=1)
    agents["quick"] = AgentConfig(
        name="quick",
        model="sim",
        tools=("calculator",),
        llm_timeout_s=5.0,
        tool_timeout_s=2.0,
        idle_timeout_s=10.0,
    )
    return AgentCatalog(agents, base.models, base.tools)


CATALOG = catalog()


@dataclass
class Script:
    """Builds inbox commands for one session with a deterministic clock and ids."""

    session_id: str = "s-1"
    tenant_id: str = "tenant-a"
    now_ms: int = T0
    counter: int = 0
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def command(self, name: str, **fields: Any) -> tuple[str, dict[str, Any]]:
        self.counter += 1
        self.now_ms += 1
        record: dict[str, Any] = {
            "event_id": f"cmd-{self.session_id}-{self.counter}",
            "session_id": self.session_id,
            "tenant_id": self.tenant_id,
            "time_ms": self.now_ms,
            "causation_id": None,
            "correlation_id": None,
        }
        record.update(fields)
        CODEC.encode(name, record)  # every command we send fits its schema too
        self.sent.append((name, record))
        return name, record

    def start(
        self, agent: str = "demo", text: str = "hello", keep_open: bool = False, idle: int = 0
    ) -> tuple[str, dict[str, Any]]:
        return self.command(
            "StartSession",
            agent=agent,
            input=text,
            keep_open=keep_open,
            idle_timeout_ms=idle,
            metadata={"who": "test"},
        )

    def llm_ok(
        self,
        call_id: str,
        content: str | None = "an answer",
        tools: list[tuple[str, str, dict[str, Any]]] | None = None,
        input_tokens: int = 10,
        output_tokens: int = 5,
        cost_usd: float = 0.0,
    ) -> tuple[str, dict[str, Any]]:
        calls = [
            {"call_id": cid, "name": name, "arguments_json": json.dumps(args)}
            for cid, name, args in tools or []
        ]
        return self.command(
            "LLMCallResult",
            call_id=call_id,
            ok=True,
            model="sim",
            content=content,
            tool_calls=calls,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=0,
            cost_usd=cost_usd,
            latency_s=0.01,
            error=None,
            attempts=1,
        )

    def llm_fail(self, call_id: str, error: str = "boom") -> tuple[str, dict[str, Any]]:
        return self.command(
            "LLMCallResult",
            call_id=call_id,
            ok=False,
            model="sim",
            content=None,
            tool_calls=[],
            input_tokens=0,
            output_tokens=0,
            cached_tokens=0,
            cost_usd=0.0,
            latency_s=0.0,
            error=error,
            attempts=3,
        )

    def tool(
        self, call_id: str, ok: bool = True, output: str = "42", error: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        return self.command(
            "ToolCallResult",
            call_id=call_id,
            ok=ok,
            output=output if ok else "",
            error=None if ok else (error or "it broke"),
            latency_s=0.002,
        )

    def approval(
        self, call_id: str, approved: bool, reason: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        return self.command("Approval", call_id=call_id, approved=approved, reason=reason)

    def user(self, text: str) -> tuple[str, dict[str, Any]]:
        return self.command("UserMessage", text=text)

    def cancel(self, reason: str | None = "user left") -> tuple[str, dict[str, Any]]:
        return self.command("Cancel", reason=reason)

    def timer(self, kind: str, call_id: str | None) -> tuple[str, dict[str, Any]]:
        target = call_id or self.session_id
        return self.command("TimerFired", timer_id=f"{kind}:{target}", kind=kind, call_id=call_id)


@dataclass
class Session:
    """Applies commands with decide, checking each decision, and keeps the log."""

    agents: AgentCatalog = field(default_factory=lambda: CATALOG)
    state: SessionState | None = None
    log: list[Record] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def apply(self, command: tuple[str, dict[str, Any]]) -> Decision:
        name, record = command
        before = self.state
        decision = decide(before, name, record, self.agents)
        check_decision(before, decision)
        assert decide(before, name, record, self.agents) == decision, "decide is not deterministic"
        self.decisions.append(decision)
        self.log.extend(decision.events)
        self.state = decision.state
        return decision

    @property
    def now(self) -> SessionState:
        assert self.state is not None
        return self.state

    def names(self) -> list[str]:
        return [name for name, _ in self.log]

    def last(self, name: str) -> dict[str, Any]:
        return [e for n, e in self.log if n == name][-1]


def check_decision(before: SessionState | None, decision: Decision) -> None:
    """Every per-decision contract: schema fit, seq, fold equality, quiet rejections."""
    if decision.rejection is not None or decision.duplicate:
        assert decision.events == () and decision.work == ()
        assert decision.state == before
        assert not (decision.rejection is not None and decision.duplicate)
        return
    start = before.seq if before is not None else 0
    for offset, (name, event) in enumerate(decision.events, start=1):
        assert event["seq"] == start + offset
        CODEC.encode(name, event)
    for item in decision.work:
        CODEC.encode(*item.record)
        assert item.kind == ("llm" if item.record[0] == "LLMCallWork" else "tool")
    assert rebuild(decision.events, before) == decision.state


def check_log(log: list[Record], state: SessionState | None) -> None:
    """Whole-log invariants: seq 1..n, unique ids, one terminal event last, one result a call."""
    assert [e["seq"] for _, e in log] == list(range(1, len(log) + 1))
    ids = [e["event_id"] for _, e in log]
    assert len(ids) == len(set(ids))
    terminal = [i for i, (name, _) in enumerate(log) if name in TERMINAL_EVENT_NAMES]
    assert len(terminal) <= 1
    if terminal:
        assert terminal[0] == len(log) - 1
    results = Counter(e["call_id"] for name, e in log if name in RESULT_EVENTS)
    assert all(count == 1 for count in results.values()), results
    resolutions = Counter(e["call_id"] for name, e in log if name == "ApprovalResolved")
    assert all(count == 1 for count in resolutions.values())
    requested = {
        e["call_id"] for name, e in log if name in ("LLMCallRequested", "ToolCallRequested")
    }
    assert set(results) <= requested
    if log:
        assert {e["correlation_id"] for _, e in log} == {log[0][1]["correlation_id"]}
    assert rebuild(log) == state


# -- the kit's own tests ---------------------------------------------------------------


def test_script_commands_fit_their_schemas() -> None:
    script = Script()
    for command in (
        script.start(),
        script.llm_ok("c", tools=[("t1", "calculator", {"expression": "1+1"})]),
        script.llm_fail("c"),
        script.tool("t1"),
        script.tool("t1", ok=False),
        script.approval("t1", True),
        script.user("hi"),
        script.cancel(),
        script.timer("idle_timeout", None),
    ):
        assert command[1]["time_ms"] > T0


def test_catalog_has_the_test_agents() -> None:
    assert {"demo", "gated", "budget", "tight", "quick"} <= set(CATALOG.agents)
