"""Commands the core refuses or ignores, and why: what an operator reads in the DLQ.

A rejection names the session and the reason; nothing is written for it. A
duplicate (something already applied, or stale) is ignored quietly.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from processors.agents.catalog import AgentCatalog
from processors.core import SessionState, decide
from tests.unit.test_core_kit import CATALOG, Script, Session


def started(agent: str = "demo", **kw: Any) -> tuple[Session, Script]:
    session, script = Session(), Script()
    assert session.apply(script.start(agent, **kw)).rejection is None
    return session, script


def call_of(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def test_rejections_name_the_session_and_the_reason() -> None:
    session, script = started()
    other = Script(session_id="s-2")
    name, record = other.user("hi")
    assert session.apply((name, record)).rejection == (
        "command for session 's-2' given the state of s-1"
    )
    script.tenant_id = "intruder"
    assert (
        session.apply(script.user("hi")).rejection == "tenant 'intruder' does not own session s-1"
    )
    script.tenant_id = "tenant-a"
    missing = decide(None, *script.user("hi"), CATALOG)
    assert missing.rejection == "UserMessage for a session that does not exist"
    assert (missing.events, missing.work, missing.state) == ((), (), None)
    assert session.apply(("Reboot", {})).rejection == "Reboot is not a session command"
    assert session.apply(script.timer("alarm", None)).rejection == "unknown timer kind 'alarm'"
    assert session.apply(script.tool("t9")).rejection == "result for unknown tool call t9"
    assert session.apply(script.llm_ok("x9")).rejection == "result for unknown LLM call x9"
    assert session.apply(script.approval("a9", True)).rejection == (
        "approval for unknown tool call a9"
    )


def test_a_malformed_command_is_rejected_naming_the_problem() -> None:
    session, script = started()
    name, record = script.tool("t1")
    del record["call_id"]
    assert (
        session.apply((name, record)).rejection
        == "malformed ToolCallResult: missing field 'call_id'"
    )
    name, record = script.llm_ok(call_of(session.now))
    record["input_tokens"] = "many"
    rejection = session.apply((name, record)).rejection or ""
    assert rejection.startswith("malformed LLMCallResult: invalid literal for int()")


def test_a_start_for_a_session_id_in_use_says_it_exists_whoever_sends_it() -> None:
    session, _ = started()
    other = Script(tenant_id="tenant-b", counter=5)  # its own command id
    assert session.apply(other.start()).rejection == "session s-1 already exists"


def test_a_start_without_session_or_tenant_is_refused() -> None:
    for missing in ("session_id", "tenant_id"):
        name, record = Script().start()
        record[missing] = ""
        decision = decide(None, name, record, CATALOG)
        assert decision.rejection == "StartSession needs a session_id and a tenant_id"
        assert decision.state is None


def without_agents(session: Session) -> None:
    """The agents file changed: the session's agent is no longer defined."""
    session.agents = AgentCatalog({}, CATALOG.models, CATALOG.tools)


def test_a_session_whose_agent_disappeared_can_still_be_cancelled() -> None:
    session, script = started()
    without_agents(session)
    session.apply(script.cancel("cleanup"))
    assert session.names()[-1] == "SessionCancelled"
    assert session.now.end_reason == "cleanup"


def test_its_start_redelivered_is_still_a_duplicate() -> None:
    session, script = started()
    without_agents(session)
    assert session.apply(script.sent[0]).duplicate
    assert session.now.status == "running"


def test_any_other_command_fails_it_saying_why() -> None:
    session, script = started()
    without_agents(session)
    decision = session.apply(script.user("still there?"))
    assert [name for name, _ in decision.events] == ["SessionFailed"]
    assert session.now.end_reason == "agent 'demo' is no longer defined"
    assert replace(session.now, end_reason=None).status == "failed"
