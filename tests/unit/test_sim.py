"""The simulated model: determinism, tool choice, answers, usage, latency and failures."""

from __future__ import annotations

import statistics
import time

import pytest

from processors.agents.model_types import (
    ChatMessage,
    LLMRequest,
    LLMResponse,
    ModelError,
    ToolCall,
    llm_result_record,
)
from processors.agents.sim_model import LatencyModel, SimulatedModel
from processors.agents.tools import builtin_registry
from schemas import Codec

TOOLS = tuple(tool.spec for tool in builtin_registry())


def ask(text: str, tools: bool = True, call_id: str = "", attempt: int = 1) -> LLMRequest:
    messages = (ChatMessage("system", "be nice"), ChatMessage("user", text))
    return LLMRequest("sim", messages, TOOLS if tools else (), call_id=call_id, attempt=attempt)


def test_same_seed_and_prompt_same_reply() -> None:
    request = ask("what is 6*7 and the weather in Paris?")
    assert SimulatedModel(seed=1).decide_reply(request) == SimulatedModel(seed=1).decide_reply(
        request
    )
    ids_1 = [c.call_id for c in SimulatedModel(seed=1).decide_reply(request).tool_calls]
    ids_2 = [c.call_id for c in SimulatedModel(seed=2).decide_reply(request).tool_calls]
    assert ids_1 != ids_2 and len(set(ids_1)) == 2


def test_asks_for_several_tools_in_input_order() -> None:
    reply = SimulatedModel().decide_reply(ask("what is 6*7 and the weather in Paris?"))
    assert reply.content is None and reply.finish_reason == "tool_calls"
    assert [(c.name, c.arguments_json) for c in reply.tool_calls] == [
        ("calculator", '{"expression":"6*7"}'),
        ("weather", '{"city":"Paris"}'),
    ]
    reply = SimulatedModel().decide_reply(ask("weather for New York, then (2+3)*4 and 10/4"))
    assert [c.name for c in reply.tool_calls] == ["weather", "calculator", "calculator"]
    assert reply.tool_calls[0].arguments_json == '{"city":"New York"}'


def test_only_offered_tools_are_asked_for() -> None:
    weather_only = ask("what is 6*7 and the weather in Paris?")
    weather_only = LLMRequest("sim", weather_only.messages, TOOLS[1:])
    assert [c.name for c in SimulatedModel().decide_reply(weather_only).tool_calls] == ["weather"]
    plain = SimulatedModel().decide_reply(ask("what is 6*7?", tools=False))
    assert plain.tool_calls == () and plain.content


def test_answers_with_the_tool_results() -> None:
    first = SimulatedModel().decide_reply(ask("what is 6*7 and the weather in Paris?"))
    calc, weather = first.tool_calls
    messages = (
        *ask("what is 6*7 and the weather in Paris?").messages,
        ChatMessage("assistant", None, tool_calls=first.tool_calls),
        ChatMessage("tool", "42", tool_call_id=calc.call_id, name="calculator"),
        ChatMessage("tool", "Paris: 18°C, sunny", tool_call_id=weather.call_id, name="weather"),
    )
    reply = SimulatedModel().decide_reply(LLMRequest("sim", messages, TOOLS))
    assert reply.tool_calls == () and reply.finish_reason == "stop"
    assert reply.content == "6*7 = 42. The weather in Paris is 18°C, sunny."
    failed = (
        *messages[:3],
        ChatMessage("tool", "error: timeout after 60s", calc.call_id, "calculator"),
    )
    text = SimulatedModel().decide_reply(LLMRequest("sim", failed, TOOLS)).content or ""
    assert "could not use calculator: timeout after 60s" in text


def test_a_new_user_message_after_an_answer_can_ask_for_tools_again() -> None:
    convo = (
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "hello"),
        ChatMessage("user", "weather in Oslo?"),
    )
    reply = SimulatedModel().decide_reply(LLMRequest("sim", convo, TOOLS))
    assert [c.name for c in reply.tool_calls] == ["weather"]


def test_plain_answers_depend_on_the_input() -> None:
    model = SimulatedModel()
    answers = {model.decide_reply(ask(f"tell me about topic {i}")).content for i in range(20)}
    assert len(answers) > 3
    assert model.decide_reply(ask("tell me")) == model.decide_reply(ask("tell me"))
    empty = model.decide_reply(LLMRequest("sim", ()))
    assert empty.content and empty.output_tokens >= 1


def test_token_usage_is_about_a_quarter_of_the_characters() -> None:
    request = ask("x" * 400, tools=False)
    reply = SimulatedModel().decide_reply(request)
    assert reply.input_tokens == round((len("be nice") + 400) / 4)
    assert reply.output_tokens == max(1, round(len(reply.content or "") / 4))
    assert (
        SimulatedModel().decide_reply(LLMRequest("sim", (ChatMessage("user", ""),))).input_tokens
        == 1
    )


def test_latency_models() -> None:
    assert SimulatedModel().latency_of(ask("a")) == 0.0
    assert SimulatedModel(latency=LatencyModel.fixed(0.25)).latency_of(ask("a")) == 0.25
    uniform = SimulatedModel(latency=LatencyModel.uniform(0.1, 0.3))
    draws = [uniform.latency_of(ask("same", call_id=f"c{i}")) for i in range(500)]
    assert all(0.1 <= d <= 0.3 for d in draws) and statistics.pstdev(draws) > 0.03
    assert uniform.latency_of(ask("same", call_id="c1")) == draws[1]  # deterministic per call
    lognormal = SimulatedModel(latency=LatencyModel.lognormal(0.5, 2.0))
    draws = sorted(lognormal.latency_of(ask("same", call_id=f"c{i}")) for i in range(4000))
    assert statistics.median(draws) == pytest.approx(0.5, rel=0.1)
    assert draws[int(0.99 * len(draws))] == pytest.approx(2.0, rel=0.25)
    capped = SimulatedModel(latency=LatencyModel.lognormal(0.5, 2.0, max_s=1.0))
    assert max(capped.latency_of(ask("x", call_id=f"c{i}")) for i in range(500)) <= 1.0
    for bad in ({"kind": "uniform", "low_s": 2, "high_s": 1}, {"kind": "gauss"}, {"speed": 1}):
        with pytest.raises(ValueError):
            LatencyModel.from_options(bad)


def test_failure_rate_is_deterministic_and_about_right() -> None:
    model = SimulatedModel(failure_rate=0.2)
    requests = [ask("same", call_id=f"c{i}") for i in range(3000)]
    failures = sum(model.fails(r) for r in requests)
    assert 0.17 * 3000 < failures < 0.23 * 3000
    failing = next(r for r in requests if model.fails(r))
    with pytest.raises(ModelError) as caught:
        model.decide_reply(failing)
    assert caught.value.retryable
    assert model.fails(failing)  # the same call fails the same way every time
    retries = [ask("same", call_id=failing.call_id, attempt=a) for a in range(2, 30)]
    assert not all(model.fails(r) for r in retries)  # a retry can succeed
    assert SimulatedModel(failure_rate=0.0).fails(failing) is False


def test_fail_all_fails_every_call() -> None:
    model = SimulatedModel(fail_all=True)
    for i in range(20):
        with pytest.raises(ModelError) as caught:
            model.decide_reply(ask(f"q{i}"))
        assert not caught.value.retryable


async def test_complete_waits_for_the_latency() -> None:
    model = SimulatedModel(latency=LatencyModel.fixed(0.05))
    started = time.perf_counter()
    reply = await model.complete(ask("hello", tools=False))
    assert time.perf_counter() - started >= 0.045
    assert reply == model.decide_reply(ask("hello", tools=False))


async def test_stream_yields_chunks_then_the_response() -> None:
    model = SimulatedModel(latency=LatencyModel.fixed(0.02), chunk_chars=5)
    items = [item async for item in model.stream(ask("hello", tools=False))]
    *chunks, final = items
    assert isinstance(final, LLMResponse) and all(isinstance(c, str) for c in chunks)
    assert "".join(str(c) for c in chunks) == final.content and len(chunks) > 2
    with pytest.raises(ModelError):
        async for _ in SimulatedModel(fail_all=True).stream(ask("x")):
            pass


def test_from_options() -> None:
    model = SimulatedModel.from_options(
        {"seed": 7, "failure_rate": 0.5, "latency": {"kind": "fixed", "fixed_s": 0.1}}
    )
    assert (model.seed, model.failure_rate, model.latency.fixed_s) == (7, 0.5, 0.1)
    with pytest.raises(ValueError):
        SimulatedModel.from_options({"failure_rate": 2})


def test_llm_result_record_fits_the_schema() -> None:
    work = {
        "event_id": "w",
        "session_id": "s",
        "tenant_id": "t",
        "correlation_id": "k",
        "call_id": "c",
    }
    reply = SimulatedModel().decide_reply(ask("6*7"))
    ok = llm_result_record(work, reply, event_id="r", time_ms=1, cost_usd=0.1, latency_s=0.2)
    failed = llm_result_record(
        work, None, event_id="r2", time_ms=2, error="rate limited", attempts=3
    )
    codec = Codec()
    codec.encode("LLMCallResult", ok)
    codec.encode("LLMCallResult", failed)
    assert ok["ok"] and ok["tool_calls"][0]["name"] == "calculator"
    assert (failed["ok"], failed["error"], failed["attempts"]) == (False, "rate limited", 3)
    assert ToolCall.from_record(ok["tool_calls"][0]) == reply.tool_calls[0]
