"""One contract, every provider: sim, OpenAI and Anthropic over real HTTP.

:class:`ProviderContract` says what any provider must do: answer text with
usage, ask for tools, stream pieces that add up to the final text, and report
a failure as a retryable :class:`ProviderError`. Each provider runs it through
its own harness; the HTTP providers also run :class:`HttpContract` (error
statuses, Retry-After, malformed bodies, a hang, a dropped connection, the
credential) over both transports, against the fake servers of
``tests/pool_servers.py`` on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from processors.agents.catalog import EndpointConfig
from processors.agents.model_types import ChatMessage, LLMRequest, LLMResponse, ToolCall, ToolSpec
from processors.agents.sim_model import SimulatedModel
from processors.executors.pool.errors import PoolConfigError, ProviderError
from processors.executors.pool.http import Timeouts, Transport, make_transport
from processors.executors.pool.providers import Provider, SimProvider, build_provider
from tests.pool_servers import Drop, FakeModelServer, Hang, Raw, Reply, Status

CALC = ToolSpec(
    "calculator",
    "Evaluate arithmetic.",
    json.dumps({"type": "object", "properties": {"expression": {"type": "string"}}}),
)
FAST = Timeouts(connect_s=2.0, read_s=5.0)


def _request(text: str, tools: tuple[ToolSpec, ...] = ()) -> LLMRequest:
    return LLMRequest(
        model="m",
        messages=(ChatMessage("system", "Be brief."), ChatMessage("user", text)),
        tools=tools,
        call_id="c1",
    )


class Harness:
    """Arranges what the provider under test answers next."""

    provider: Provider

    def expect_text(self, request: LLMRequest) -> str:
        raise NotImplementedError

    def expect_tool_call(self, request: LLMRequest) -> ToolCall:
        raise NotImplementedError

    def expect_failure(self) -> None:
        raise NotImplementedError


class ProviderContract:
    """What every provider does; subclasses supply ``harness``."""

    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        raise NotImplementedError
        yield

    async def test_answers_text_with_usage(self, harness: Harness) -> None:
        request = _request("Tell me something.")
        expected = harness.expect_text(request)
        response = await harness.provider.complete(request, FAST)
        assert response.content == expected
        assert response.tool_calls == ()
        assert response.finish_reason == "stop"
        assert response.input_tokens > 0 and response.output_tokens > 0
        assert response.model

    async def test_asks_for_tools(self, harness: Harness) -> None:
        request = _request("What is 6*7?", (CALC,))
        expected = harness.expect_tool_call(request)
        response = await harness.provider.complete(request, FAST)
        assert response.finish_reason == "tool_calls"
        assert len(response.tool_calls) == 1
        call = response.tool_calls[0]
        assert (call.call_id, call.name) == (expected.call_id, expected.name)
        assert json.loads(call.arguments_json) == json.loads(expected.arguments_json)

    async def test_streams_pieces_that_add_up(self, harness: Harness) -> None:
        request = _request("Tell me something else, at some length please.")
        expected = harness.expect_text(request)
        pieces: list[str] = []

        async def sink(piece: str) -> None:
            pieces.append(piece)

        response = await harness.provider.complete(request, FAST, sink)
        assert response.content == expected
        assert len(pieces) > 1
        assert "".join(pieces) == expected

    async def test_streams_tool_calls(self, harness: Harness) -> None:
        request = _request("What is 6*7?", (CALC,))
        expected = harness.expect_tool_call(request)

        async def sink(piece: str) -> None:
            return None

        response = await harness.provider.complete(request, FAST, sink)
        assert [c.name for c in response.tool_calls] == [expected.name]
        assert json.loads(response.tool_calls[0].arguments_json) == json.loads(
            expected.arguments_json
        )

    async def test_a_conversation_with_tool_results_is_accepted(self, harness: Harness) -> None:
        asked = ToolCall("call_a", "calculator", '{"expression": "6*7"}')
        request = LLMRequest(
            model="m",
            messages=(
                ChatMessage("user", "What is 6*7?"),
                ChatMessage("assistant", None, tool_calls=(asked,)),
                ChatMessage("tool", "42", tool_call_id="call_a", name="calculator"),
            ),
            tools=(CALC,),
        )
        expected = harness.expect_text(request)
        response = await harness.provider.complete(request, FAST)
        assert response.content == expected

    async def test_failure_is_a_retryable_provider_error(self, harness: Harness) -> None:
        harness.expect_failure()
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hello"), FAST)
        assert caught.value.retryable


# -- the simulated model ------------------------------------------------------------------------


class SimHarness(Harness):
    def __init__(self) -> None:
        self.sim = SimulatedModel(seed=5, chunk_chars=4)
        self.provider = self.sim_provider = SimProvider(self.sim)

    def expect_text(self, request: LLMRequest) -> str:
        self.sim_provider.model = self.sim
        content = self.sim.decide_reply(request).content
        assert content is not None
        return content

    def expect_tool_call(self, request: LLMRequest) -> ToolCall:
        self.sim_provider.model = self.sim
        return self.sim.decide_reply(request).tool_calls[0]

    def expect_failure(self) -> None:
        self.sim_provider.model = SimulatedModel(failure_rate=1.0)


class TestSimProvider(ProviderContract):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[Harness]:
        yield SimHarness()


# -- HTTP providers -------------------------------------------------------------------------------


@dataclass
class HttpHarness(Harness):
    server: FakeModelServer
    provider: Provider
    transport: Transport

    def expect_text(self, request: LLMRequest) -> str:
        text = "The answer, in several pieces of streamed text."
        self.server.push(Reply(text, chunk_chars=6))
        return text

    def expect_tool_call(self, request: LLMRequest) -> ToolCall:
        call = ToolCall("toolu_1", "calculator", '{"expression": "6*7"}')
        self.server.push(Reply(None, tool_calls=((call.call_id, call.name, call.arguments_json),)))
        return call

    def expect_failure(self) -> None:
        self.server.push(Status(500))


SECRET = "sk-test-very-secret-value"


async def _http_harness(
    protocol: str, transport_kind: str, options: dict[str, Any] | None = None
) -> AsyncIterator[HttpHarness]:
    server = await FakeModelServer(protocol).start()  # type: ignore[arg-type]
    transport = make_transport(transport_kind, max_connections=16)
    endpoint = EndpointConfig(
        provider=protocol,
        model="fake-model",
        base_url=server.base_url,
        api_key_env="FAKE_KEY",
        options=options or {},
    )
    provider, _ = build_provider(
        endpoint,
        key="models.m.endpoints[0]",
        transport=transport,
        default_sim=SimulatedModel(),
        environ={"FAKE_KEY": SECRET},
    )
    try:
        yield HttpHarness(server, provider, transport)
    finally:
        await transport.aclose()
        await server.stop()


class HttpContract(ProviderContract):
    """What both HTTP providers do with errors and credentials."""

    protocol = "openai"

    @pytest.fixture(params=["aiohttp", "httpx"])
    async def harness(self, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
        async for built in _http_harness(self.protocol, request.param):
            yield built

    @pytest.mark.parametrize(
        ("status", "kind", "retryable"),
        [
            (500, "server", True),
            (502, "server", True),
            (503, "overloaded", True),
            (529, "overloaded", True),
            (401, "auth", False),
            (403, "auth", False),
            (400, "bad_request", False),
            (404, "bad_request", False),
        ],
    )
    async def test_status_kinds(
        self, harness: HttpHarness, status: int, kind: str, retryable: bool
    ) -> None:
        harness.server.push(Status(status))
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST)
        assert (caught.value.kind, caught.value.retryable, caught.value.status) == (
            kind,
            retryable,
            status,
        )
        assert "fake failure" in str(caught.value)

    @pytest.mark.parametrize(
        ("headers", "seconds"),
        [({"Retry-After": "3"}, 3.0), ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25)],
    )
    async def test_429_carries_retry_after(
        self, harness: HttpHarness, headers: dict[str, str], seconds: float
    ) -> None:
        harness.server.push(Status(429, headers=headers))
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST)
        assert caught.value.kind == "rate_limited"
        assert caught.value.retry_after_s == pytest.approx(seconds)

    @pytest.mark.parametrize(
        "body",
        [b"{not json", b"[1, 2]", b'{"unexpected": true}', b'{"choices": "x", "content": 3}'],
    )
    async def test_malformed_bodies(self, harness: HttpHarness, body: bytes) -> None:
        harness.server.push(Raw(body))
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST)
        assert caught.value.kind == "malformed" and caught.value.retryable
        assert "content type application/json" in str(caught.value)

    async def test_malformed_stream(self, harness: HttpHarness) -> None:
        harness.server.push(Raw(b"data: {broken\n\n", content_type="text/event-stream"))

        async def sink(piece: str) -> None:
            return None

        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST, sink)
        assert caught.value.kind == "malformed"

    async def test_stream_cut_short_is_malformed(self, harness: HttpHarness) -> None:
        first = (
            'data: {"choices": [{"index": 0, "delta": {"content": "par"}}]}\n\n'
            if self.protocol == "openai"
            else 'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
        )
        harness.server.push(Raw(first.encode(), content_type="text/event-stream"))

        async def sink(piece: str) -> None:
            return None

        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST, sink)
        assert caught.value.kind == "malformed"
        assert "content type text/event-stream" in str(caught.value)

    async def test_a_streamed_request_answered_whole_is_read_whole(
        self, harness: HttpHarness
    ) -> None:
        harness.server.stream_as_json = True
        call = ("call_7", "calculator", '{"expression": "6*7"}')
        harness.server.push(Reply("Forty-two.", tool_calls=(call,), usage=(13, 5, 2)))
        pieces: list[str] = []

        async def sink(piece: str) -> None:
            pieces.append(piece)

        response = await harness.provider.complete(_request("Hi", (CALC,)), FAST, sink)
        assert harness.server.seen[-1].body["stream"] is True
        assert (response.content, pieces) == ("Forty-two.", ["Forty-two."])
        assert [(c.call_id, c.name) for c in response.tool_calls] == [call[:2]]
        assert json.loads(response.tool_calls[0].arguments_json) == {"expression": "6*7"}
        assert (response.input_tokens, response.output_tokens, response.cached_tokens) == (13, 5, 2)
        assert response.finish_reason == "tool_calls"

    @pytest.mark.parametrize(
        ("body", "content_type"),
        [
            (b"<html><body>Sign in to the gateway</body></html>", "text/html"),
            (b'{"choices": "x"}', "application/json"),
        ],
    )
    async def test_a_wrong_answer_to_a_streamed_request_names_its_content_type(
        self, harness: HttpHarness, body: bytes, content_type: str
    ) -> None:
        harness.server.push(Raw(body, content_type=content_type))

        async def sink(piece: str) -> None:
            return None

        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST, sink)
        assert caught.value.kind == "malformed" and caught.value.retryable
        assert f"content type {content_type}" in str(caught.value)
        if content_type == "text/html":
            assert "Sign in to the gateway" in str(caught.value)

    async def test_hang_times_out(self, harness: HttpHarness) -> None:
        harness.server.push(Hang())
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), Timeouts(connect_s=1, read_s=0.3))
        assert caught.value.kind == "timeout" and caught.value.retryable

    async def test_dropped_connection(self, harness: HttpHarness) -> None:
        harness.server.push(Drop())
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST)
        assert caught.value.kind in ("connect", "malformed") and caught.value.retryable

    async def test_credential_is_sent_and_never_echoed(self, harness: HttpHarness) -> None:
        echo = json.dumps({"error": {"message": f"bad key {SECRET}"}})
        harness.server.push(Status(401, body=echo))
        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST)
        assert SECRET not in str(caught.value) and "***" in str(caught.value)
        assert SECRET not in harness.provider.label
        headers = {k.lower(): v for k, v in harness.server.seen[-1].headers.items()}
        assert SECRET in (headers.get("authorization", "") + headers.get("x-api-key", ""))

    async def test_connection_refused(self) -> None:
        transport = make_transport("aiohttp", max_connections=4)
        endpoint = EndpointConfig(
            provider=self.protocol, model="x", base_url="http://127.0.0.1:9/v1"
        )
        provider, _ = build_provider(
            endpoint, key="k", transport=transport, default_sim=SimulatedModel()
        )
        try:
            with pytest.raises(ProviderError) as caught:
                await provider.complete(_request("Hi"), FAST)
            assert caught.value.kind == "connect"
        finally:
            await transport.aclose()


class TestOpenAIProvider(HttpContract):
    protocol = "openai"

    async def test_request_shape(self, harness: HttpHarness) -> None:
        asked = ToolCall("call_a", "calculator", '{"expression": "6*7"}')
        request = LLMRequest(
            model="m",
            messages=(
                ChatMessage("system", "Be brief."),
                ChatMessage("user", "6*7?"),
                ChatMessage("assistant", None, tool_calls=(asked,)),
                ChatMessage("tool", "42", tool_call_id="call_a", name="calculator"),
            ),
            tools=(CALC,),
        )
        harness.expect_text(request)
        await harness.provider.complete(request, FAST)
        body = harness.server.seen[-1].body
        assert body["model"] == "fake-model"
        assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
        assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "calculator"
        assert body["messages"][3] == {"role": "tool", "tool_call_id": "call_a", "content": "42"}
        assert body["tools"][0]["function"]["parameters"]["type"] == "object"

    async def test_usage_and_cached_tokens(self, harness: HttpHarness) -> None:
        harness.server.push(Reply("x", usage=(100, 20, 60)))
        response = await harness.provider.complete(_request("Hi"), FAST)
        assert (response.input_tokens, response.output_tokens, response.cached_tokens) == (
            100,
            20,
            60,
        )

    async def test_invalid_tool_json_is_passed_on_for_the_tool_runner(
        self, harness: HttpHarness
    ) -> None:
        harness.server.push(Reply(None, tool_calls=(("c", "calculator", "{oops"),)))
        response = await harness.provider.complete(_request("Hi", (CALC,)), FAST)
        assert response.tool_calls[0].arguments_json == "{oops"


class TestAnthropicProvider(HttpContract):
    protocol = "anthropic"

    async def test_request_shape(self, harness: HttpHarness) -> None:
        asked = ToolCall("toolu_a", "calculator", '{"expression": "6*7"}')
        request = LLMRequest(
            model="m",
            messages=(
                ChatMessage("system", "Be brief."),
                ChatMessage("user", "6*7?"),
                ChatMessage("assistant", "Let me compute.", tool_calls=(asked,)),
                ChatMessage("tool", "42", tool_call_id="toolu_a", name="calculator"),
                ChatMessage("user", "And then?"),
            ),
            tools=(CALC,),
        )
        harness.expect_text(request)
        await harness.provider.complete(request, FAST)
        seen = harness.server.seen[-1]
        body = seen.body
        assert body["system"] == "Be brief."
        assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][1]["content"][1] == {
            "type": "tool_use",
            "id": "toolu_a",
            "name": "calculator",
            "input": {"expression": "6*7"},
        }
        assert body["messages"][2]["content"][0]["type"] == "tool_result"
        assert body["messages"][2]["content"][1] == {"type": "text", "text": "And then?"}
        assert body["max_tokens"] >= 1
        assert body["tools"][0]["input_schema"]["type"] == "object"
        assert {k.lower(): v for k, v in seen.headers.items()}["anthropic-version"]

    async def test_usage_counts_cache_reads_as_input(self, harness: HttpHarness) -> None:
        harness.server.push(Reply("x", usage=(100, 20, 60)))
        response = await harness.provider.complete(_request("Hi"), FAST)
        assert (response.input_tokens, response.output_tokens, response.cached_tokens) == (
            100,
            20,
            60,
        )

    async def test_error_event_mid_stream(self, harness: HttpHarness) -> None:
        events = (
            'event: message_start\ndata: {"type": "message_start", "message": {}}\n\n'
            'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
            '"message": "Overloaded"}}\n\n'
        )
        harness.server.push(Raw(events.encode(), content_type="text/event-stream"))

        async def sink(piece: str) -> None:
            return None

        with pytest.raises(ProviderError) as caught:
            await harness.provider.complete(_request("Hi"), FAST, sink)
        assert caught.value.kind == "overloaded" and caught.value.retryable


# -- configuration ------------------------------------------------------------------------------


def test_missing_credential_is_refused_at_start() -> None:
    endpoint = EndpointConfig(provider="openai", model="x", api_key_env="NOPE_NOT_SET")
    with pytest.raises(PoolConfigError) as caught:
        build_provider(
            endpoint,
            key="models.m.endpoints[0]",
            transport=make_transport("aiohttp", max_connections=1),
            default_sim=SimulatedModel(),
            environ={},
        )
    assert caught.value.key == "models.m.endpoints[0].api_key_env"
    assert "NOPE_NOT_SET" in caught.value.reason


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"tmeout_s": 3}, "options.tmeout_s"),
        ({"timeout_s": -1}, "options.timeout_s"),
        ({"stream": "yes"}, "options.stream"),
        ({"max_tokens": 0}, "options.max_tokens"),
        ({"headers": {"x": 1}}, "options.headers"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    endpoint = EndpointConfig(provider="openai", model="x", options=options)
    with pytest.raises(PoolConfigError) as caught:
        build_provider(
            endpoint,
            key="models.m.endpoints[0]",
            transport=make_transport("aiohttp", max_connections=1),
            default_sim=SimulatedModel(),
            environ={},
        )
    assert caught.value.key == f"models.m.endpoints[0].{key}"


def test_responses_are_plain_records() -> None:
    assert LLMResponse("x").finish_reason == "stop"
