"""Budgets and max_steps: exact limits, usage spread over many calls, turns of a long session.

A budget is cumulative over the whole session and a limit is inclusive: a
session may use exactly its budget. ``max_steps`` limits model calls per turn
(from a user message to the answer), while step numbers count on over the
session.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from processors.agents.catalog import AgentCatalog, Budget
from processors.core import SessionState
from tests.unit.test_core_kit import CATALOG, Script, Session, check_log

DEMO = CATALOG.agents["demo"]
AGENTS = AgentCatalog(
    {
        "capped": replace(DEMO, name="capped", budget=Budget(tokens=100)),
        "priced": replace(DEMO, name="priced", budget=Budget(cost_usd=0.5)),
        "both": replace(DEMO, name="both", budget=Budget(tokens=100, cost_usd=0.5)),
        "three": replace(DEMO, name="three", max_steps=3),
        "chatty": replace(DEMO, name="chatty", max_steps=2),
    },
    CATALOG.models,
    CATALOG.tools,
)


def started(agent: str, keep_open: bool = False) -> tuple[Session, Script]:
    session, script = Session(agents=AGENTS), Script()
    assert session.apply(script.start(agent, keep_open=keep_open)).rejection is None
    return session, script


def call_of(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def tool_round(session: Session, script: Script, n: int, **usage: float) -> None:
    """The model asks for one calculator call, which answers: the model is asked again."""
    tools = [(f"t{n}", "calculator", {"expression": "1+1"})]
    session.apply(script.llm_ok(call_of(session.now), content=None, tools=tools, **usage))  # type: ignore[arg-type]
    if not session.now.terminal:
        session.apply(script.tool(f"t{n}"))


# -- budgets -------------------------------------------------------------------------------


def test_a_session_may_use_exactly_its_token_budget() -> None:
    session, script = started("capped")
    session.apply(script.llm_ok(call_of(session.now), input_tokens=70, output_tokens=30))
    assert session.now.tokens_used == 100
    assert session.now.end_reason == "answered"
    assert "BudgetExceeded" not in session.names()


def test_one_token_over_the_budget_fails_the_session() -> None:
    session, script = started("capped")
    decision = session.apply(script.llm_ok(call_of(session.now), input_tokens=70, output_tokens=31))
    assert session.names()[-2:] == ["BudgetExceeded", "SessionFailed"]
    exceeded = session.last("BudgetExceeded")
    assert (exceeded["tokens_used"], exceeded["limit"]) == (101, "tokens>100")
    assert session.now.end_reason == "budget" and decision.work == ()


def test_token_budget_counts_every_call_of_the_session() -> None:
    session, script = started("capped")
    tool_round(session, script, 1, input_tokens=30, output_tokens=10)
    tool_round(session, script, 2, input_tokens=40, output_tokens=20)
    assert session.now.tokens_used == 100 and session.now.status == "running"
    session.apply(script.llm_ok(call_of(session.now), input_tokens=1, output_tokens=0))
    exceeded = session.last("BudgetExceeded")
    assert (exceeded["tokens_used"], exceeded["limit"]) == (101, "tokens>100")
    assert session.last("LLMCallCompleted")["content"] == "an answer"  # kept: no message follows
    check_log(session.log, session.state)


def test_cached_tokens_are_not_charged_to_the_budget() -> None:
    session, script = started("capped")
    name, record = script.llm_ok(call_of(session.now), input_tokens=60, output_tokens=40)
    record["cached_tokens"] = 5_000
    session.apply((name, record))
    assert session.last("LLMCallCompleted")["cached_tokens"] == 5_000
    assert session.now.tokens_used == 100 and session.now.end_reason == "answered"


def test_a_session_may_spend_exactly_its_cost_budget_over_several_calls() -> None:
    session, script = started("priced")
    tool_round(session, script, 1, cost_usd=0.25)
    assert session.now.cost_usd == 0.25
    session.apply(script.llm_ok(call_of(session.now), cost_usd=0.25))
    assert session.now.cost_usd == 0.5 and session.now.end_reason == "answered"


def test_cost_budget_counts_every_call_of_the_session() -> None:
    session, script = started("priced")
    tool_round(session, script, 1, cost_usd=0.25)
    tool_round(session, script, 2, cost_usd=0.125)
    decision = session.apply(
        script.llm_ok(
            call_of(session.now), content=None, tools=[("t3", "calculator", {})], cost_usd=0.25
        )
    )
    exceeded = session.last("BudgetExceeded")
    assert exceeded["cost_usd"] == pytest.approx(0.625)
    assert exceeded["limit"] == "cost_usd>0.5"
    assert decision.work == ()  # the last call's tools never run
    assert session.now.cost_usd == pytest.approx(0.625)


def test_tokens_are_named_first_when_both_budgets_are_passed() -> None:
    session, script = started("both")
    session.apply(
        script.llm_ok(call_of(session.now), input_tokens=101, output_tokens=0, cost_usd=0.75)
    )
    assert session.last("BudgetExceeded")["limit"] == "tokens>100"
    session, script = started("both")
    session.apply(
        script.llm_ok(call_of(session.now), input_tokens=100, output_tokens=0, cost_usd=0.75)
    )
    assert session.last("BudgetExceeded")["limit"] == "cost_usd>0.5"


def test_without_a_budget_usage_is_only_counted() -> None:
    session, script = started("three")
    tool_round(session, script, 1, input_tokens=10**6, output_tokens=10**6, cost_usd=99.0)
    assert session.now.tokens_used == 2 * 10**6 and session.now.cost_usd == 99.0
    assert session.now.status == "running"


# -- max_steps -----------------------------------------------------------------------------


def test_a_turn_may_use_exactly_max_steps_model_calls() -> None:
    session, script = started("three")
    tool_round(session, script, 1)
    tool_round(session, script, 2)
    assert session.now.turn_steps == 3 and session.last("LLMCallRequested")["step"] == 3
    session.apply(script.llm_ok(call_of(session.now), content="done in three"))
    assert session.now.end_reason == "answered"


def test_the_call_after_max_steps_is_never_made() -> None:
    session, script = started("three")
    for n in (1, 2, 3):
        tool_round(session, script, n)
    assert [e["step"] for name, e in session.log if name == "LLMCallRequested"] == [1, 2, 3]
    assert session.names()[-2:] == ["ToolCallCompleted", "SessionFailed"]
    assert session.now.end_reason == "max_steps"
    assert session.decisions[-1].work == ()
    check_log(session.log, session.state)


def test_every_turn_of_an_open_session_gets_max_steps_anew() -> None:
    session, script = started("chatty", keep_open=True)
    for turn in range(3):
        tool_round(session, script, turn)
        session.apply(script.llm_ok(call_of(session.now), content=f"answer {turn}"))
        assert session.now.status == "waiting_for_user"
        assert session.now.turn_steps == 0
        session.apply(script.user(f"question {turn + 1}"))
    steps = [e["step"] for name, e in session.log if name == "LLMCallRequested"]
    assert steps == [1, 2, 3, 4, 5, 6, 7]  # numbered over the session
    assert session.now.llm_steps == 7 and session.now.turn_steps == 1
    tool_round(session, script, 9)
    tool_round(session, script, 10)
    assert session.now.end_reason == "max_steps"  # the third call of one turn
    check_log(session.log, session.state)


def test_a_message_that_arrives_while_the_model_thinks_starts_a_new_turn() -> None:
    session, script = started("chatty", keep_open=True)
    tool_round(session, script, 1)
    session.apply(script.user("one more thing"))  # seen by no prompt yet
    session.apply(script.llm_ok(call_of(session.now), content="first answer"))
    assert session.names()[-2:] == ["AssistantMessageAdded", "LLMCallRequested"]
    assert session.now.turn_steps == 1 and session.now.llm_steps == 3
    session.apply(script.llm_ok(call_of(session.now), content="second answer"))
    assert session.now.status == "waiting_for_user"
