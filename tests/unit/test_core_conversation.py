"""The conversation the model is sent on each turn, and user messages that must wait.

The next prompt is the whole conversation in order: the system message, each
user message, each assistant message (with the tool calls it asked for), each
tool result naming its call and tool. A user message that arrives while tool
calls are out waits (``deferred``) until the last result is in, so no user
message ever sits between a tool request and its result, which providers refuse.
"""

from __future__ import annotations

from typing import Any

from processors.agents.model_types import ChatMessage, ToolCall, prompt_hash_of_records
from processors.core import SessionState, rebuild
from tests.unit.test_core_kit import CATALOG, Script, Session, check_log

SYSTEM: dict[str, Any] = {
    "role": "system",
    "content": CATALOG.agents["demo"].system,
    "tool_call_id": None,
    "name": None,
    "tool_calls": [],
}


def msg(role: str, content: str | None, **kw: Any) -> dict[str, Any]:
    """A message as the LLMCallWork record holds it."""
    return {
        "role": role,
        "content": content,
        "tool_call_id": None,
        "name": None,
        "tool_calls": [],
    } | kw


def call(call_id: str, name: str, arguments_json: str) -> dict[str, str]:
    return {"call_id": call_id, "name": name, "arguments_json": arguments_json}


def started(
    agent: str = "demo", text: str = "hello", keep_open: bool = False
) -> tuple[Session, Script]:
    session, script = Session(), Script()
    assert session.apply(script.start(agent, text, keep_open=keep_open)).rejection is None
    return session, script


def call_of(state: SessionState) -> str:
    assert state.pending_llm is not None
    return state.pending_llm.call_id


def prompt(session: Session) -> list[dict[str, Any]]:
    """The messages of the model call the last decision asked for."""
    (work,) = [w for w in session.decisions[-1].work if w.kind == "llm"]
    messages: list[dict[str, Any]] = work.record[1]["messages"]
    return messages


def test_the_next_prompt_holds_the_tool_calls_and_every_result_in_order() -> None:
    session, script = started(text="6*7 and the weather?")
    tools = [("t1", "calculator", {"expression": "6*7"}), ("t2", "weather", {"city": "Oslo"})]
    session.apply(script.llm_ok(call_of(session.now), content="Let me check.", tools=tools))
    session.apply(script.tool("t2", ok=False, error="no network"))  # results in any order
    session.apply(script.tool("t1", output="42"))
    assert prompt(session) == [
        SYSTEM,
        msg("user", "6*7 and the weather?"),
        msg(
            "assistant",
            "Let me check.",
            tool_calls=[
                call("t1", "calculator", '{"expression": "6*7"}'),
                call("t2", "weather", '{"city": "Oslo"}'),
            ],
        ),
        msg("tool", "error: no network", tool_call_id="t2", name="weather"),
        msg("tool", "42", tool_call_id="t1", name="calculator"),
    ]
    requested = session.last("LLMCallRequested")
    assert requested["message_count"] == 4  # the prompt without the system message
    (work,) = session.decisions[-1].work
    assert requested["prompt_hash"] == prompt_hash_of_records(
        "sim", prompt(session), work.record[1]["tools"]
    )
    assert rebuild(session.log) == session.state  # replay has the same conversation
    check_log(session.log, session.state)


def test_an_open_session_sends_the_earlier_turns_with_the_new_message() -> None:
    session, script = started(text="hi", keep_open=True)
    session.apply(script.llm_ok(call_of(session.now), content="Hello! How can I help?"))
    session.apply(script.user("what is 2+2?"))
    assert prompt(session) == [
        SYSTEM,
        msg("user", "hi"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "what is 2+2?"),
    ]
    assert session.last("LLMCallRequested")["message_count"] == 3


def test_a_denied_or_disallowed_tool_is_a_result_the_model_reads() -> None:
    session, script = started("gated")
    tools = [("w1", "weather", {"city": "Rome"}), ("x1", "shell", {"cmd": "ls"})]
    session.apply(script.llm_ok(call_of(session.now), content=None, tools=tools))
    session.apply(script.approval("w1", False))
    assert prompt(session)[-2:] == [
        msg(
            "tool",
            "error: tool shell is not allowed for agent gated",
            tool_call_id="x1",
            name="shell",
        ),
        msg("tool", "error: denied", tool_call_id="w1", name="weather"),
    ]
    assert prompt(session)[-3]["content"] is None  # the model only asked for tools


def test_the_answer_is_recorded_once_as_the_assistant_message() -> None:
    session, script = started("quick", keep_open=True)
    session.apply(script.llm_ok(call_of(session.now), content="the answer"))
    assert session.last("LLMCallCompleted")["content"] is None
    added = session.last("AssistantMessageAdded")
    assert (added["text"], added["llm_call_id"]) == (
        "the answer",
        session.last("LLMCallCompleted")["call_id"],
    )
    assert session.now.messages[-1] == ChatMessage("assistant", "the answer")
    assert session.now.output == "the answer"


def test_an_empty_answer_is_an_empty_text() -> None:
    session, script = started()
    session.apply(script.llm_ok(call_of(session.now), content=None))
    assert session.last("AssistantMessageAdded")["text"] == ""
    assert session.last("SessionCompleted")["output"] == ""


# -- deferred user messages ------------------------------------------------------------------


def test_user_messages_wait_until_the_last_of_several_tool_calls_is_in() -> None:
    session, script = started(text="check three things")
    tools = [(f"t{i}", "calculator", {"expression": str(i)}) for i in (1, 2, 3)]
    session.apply(script.llm_ok(call_of(session.now), content=None, tools=tools))
    session.apply(script.tool("t1", output="1"))
    first = session.apply(script.user("also this"))
    assert [name for name, _ in first.events] == ["UserMessageAdded"] and first.work == ()
    session.apply(script.tool("t2", output="2"))
    session.apply(script.user("and that"))
    assert session.now.deferred == (
        ChatMessage("user", "also this"),
        ChatMessage("user", "and that"),
    )
    assert [m.role for m in session.now.messages] == ["user", "assistant", "tool", "tool"]
    assert session.now.pending_llm is None
    session.apply(script.tool("t3", output="3"))
    assert not session.now.deferred
    assert prompt(session)[2:] == [
        msg(
            "assistant",
            None,
            tool_calls=[call(f"t{i}", "calculator", f'{{"expression": "{i}"}}') for i in (1, 2, 3)],
        ),
        msg("tool", "1", tool_call_id="t1", name="calculator"),
        msg("tool", "2", tool_call_id="t2", name="calculator"),
        msg("tool", "3", tool_call_id="t3", name="calculator"),
        msg("user", "also this"),
        msg("user", "and that"),
    ]
    assert session.last("LLMCallRequested")["message_count"] == 7
    check_log(session.log, session.state)


def test_a_user_message_waits_for_a_call_that_awaits_approval() -> None:
    session, script = started("gated")
    session.apply(script.llm_ok(call_of(session.now), tools=[("w1", "weather", {"city": "Rome"})]))
    session.apply(script.user("please hurry"))
    assert session.now.status == "waiting_for_approval"
    assert session.now.deferred == (ChatMessage("user", "please hurry"),)
    session.apply(script.approval("w1", True))
    # Approved, the call is still out (it runs now): the message keeps waiting.
    assert session.now.deferred == (ChatMessage("user", "please hurry"),)
    assert [m.role for m in session.now.messages][-1] == "assistant"
    session.apply(script.tool("w1", output="sunny"))
    assert [m["role"] for m in prompt(session)][-2:] == ["tool", "user"]


def test_waiting_messages_are_dropped_when_the_session_ends() -> None:
    session, script = started()
    session.apply(script.llm_ok(call_of(session.now), tools=[("t1", "calculator", {})]))
    session.apply(script.user("never mind"))
    session.apply(script.cancel("user left"))
    assert session.now.deferred == () and session.now.pending_tools == ()
    assert (session.now.status, session.now.end_reason) == ("cancelled", "user left")
    assert rebuild(session.log) == session.state


def test_a_message_while_the_model_thinks_is_not_held_back() -> None:
    session, script = started()
    decision = session.apply(script.user("one more thing"))
    assert decision.work == ()  # the model is already asked; it is answered next
    assert session.now.deferred == ()
    assert session.now.messages[-1] == ChatMessage("user", "one more thing")


def test_tool_call_message_keeps_the_calls_the_model_asked_for() -> None:
    session, script = started()
    session.apply(
        script.llm_ok(
            call_of(session.now), content="hm", tools=[("t1", "calculator", {"expression": "1"})]
        )
    )
    assert session.now.messages[-1] == ChatMessage(
        "assistant", "hm", tool_calls=(ToolCall("t1", "calculator", '{"expression": "1"}'),)
    )
