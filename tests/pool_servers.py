"""Fake model servers that speak the OpenAI Chat Completions and Anthropic Messages protocols.

A test kit, not a mock: real HTTP on 127.0.0.1, so the pool's providers,
transport, timeouts and retry layer run exactly as they would against a real
server. Each server answers from a script (one :data:`Behaviour` per request,
in order), else from ``responder(request_body)``, else with ``default``; it
records every request it got (:class:`Seen`) and how many it held at once.
With ``stream_as_json`` it answers streamed requests with a whole JSON answer.

Behaviours: :class:`Reply` (text and/or tool calls, usage, optional delay;
streamed as SSE when the request says ``stream: true``), :class:`Status` (an
error status with headers such as ``Retry-After``), :class:`Hang` (never
answers), :class:`Raw` (any bytes: malformed JSON...), :class:`Drop` (closes
the connection).

Also runnable, for the pool benchmark: ``python -m tests.pool_servers
--protocol openai --latency 1.0`` prints ``PORT <n>`` and serves until killed;
``GET /stats`` answers the request count and the peak held at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Protocol = Literal["openai", "anthropic"]


@dataclass(frozen=True)
class Reply:
    """A successful answer."""

    content: str | None = "Hello from the fake server."
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    """(id, name, arguments_json) per call."""
    usage: tuple[int, int, int] = (11, 7, 0)
    """(input, output, cached) tokens."""
    delay_s: float = 0.0
    chunk_chars: int = 8
    """Size of the text pieces when streamed."""
    stop_reason: str | None = None
    """Override of the protocol's stop/finish reason (e.g. "length")."""


@dataclass(frozen=True)
class Status:
    """An error answer."""

    status: int
    body: str = '{"error": {"message": "fake failure", "type": "server_error"}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer."""


@dataclass(frozen=True)
class Raw:
    """Whatever bytes, e.g. malformed JSON with status 200."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer."""


Behaviour = Reply | Status | Hang | Raw | Drop


@dataclass(frozen=True)
class Seen:
    """One request the server got."""

    at: float
    """time.monotonic() on arrival."""
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeModelServer:
    """One fake server (see the module docstring)."""

    def __init__(
        self,
        protocol: Protocol = "openai",
        *,
        default: Behaviour | None = None,
        latency_s: float = 0.0,
        responder: Callable[[dict[str, Any]], Behaviour] | None = None,
        record: bool = True,
        stream_as_json: bool = False,
    ) -> None:
        self.protocol = protocol
        self.default: Behaviour = default or Reply()
        self.latency_s = latency_s
        self.responder = responder
        self.record = record
        self.stream_as_json = stream_as_json
        """Answer ``stream: true`` with a whole JSON answer, as some compatible servers do."""
        self.script: deque[Behaviour] = deque()
        self.seen: list[Seen] = []
        self.count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeModelServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        path = "/v1/chat/completions" if self.protocol == "openai" else "/v1/messages"
        app.router.add_post(path, self._handle)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=8192)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeModelServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What an agents file's ``base_url`` should say for this server."""
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.protocol == "openai" else root

    def push(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these, in order."""
        self.script.extend(behaviours)

    # -- serving ----------------------------------------------------------------------------

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"count": self.count, "peak_in_flight": self.peak_in_flight})

    def _choose(self, body: dict[str, Any]) -> Behaviour:
        if self.script:
            return self.script.popleft()
        if self.responder is not None:
            return self.responder(body)
        return self.default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        self.count += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            raw = await request.read()
            try:
                body = json.loads(raw)
            except ValueError:
                return web.Response(status=400, text='{"error": {"message": "bad json"}}')
            if self.record:
                self.seen.append(Seen(arrived, request.path, dict(request.headers), body))
            behaviour = self._choose(body)
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            return await self._answer(request, body, behaviour)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: web.Request, body: dict[str, Any], behaviour: Behaviour
    ) -> web.StreamResponse:
        if isinstance(behaviour, Hang):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), 3600)
            return web.Response(status=503)
        if isinstance(behaviour, Drop):
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        if isinstance(behaviour, Raw):
            return web.Response(
                status=behaviour.status, body=behaviour.body, content_type=behaviour.content_type
            )
        if behaviour.delay_s:
            await asyncio.sleep(behaviour.delay_s)
        if isinstance(behaviour, Status):
            return web.Response(
                status=behaviour.status,
                text=behaviour.body,
                headers=behaviour.headers,
                content_type="application/json",
            )
        model = str(body.get("model") or "fake")
        if body.get("stream") and not self.stream_as_json:
            events = (
                openai_chunks(behaviour, model)
                if self.protocol == "openai"
                else anthropic_events(behaviour, model)
            )
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for event in events:
                await response.write(event.encode())
            await response.write_eof()
            return response
        document = (
            openai_document(behaviour, model)
            if self.protocol == "openai"
            else anthropic_document(behaviour, model)
        )
        return web.json_response(document)


# -- protocol encodings -------------------------------------------------------------------------


def openai_document(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
            for i, n, a in reply.tool_calls
        ]
    finish = reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": reply.usage[0],
            "completion_tokens": reply.usage[1],
            "total_tokens": reply.usage[0] + reply.usage[1],
            "prompt_tokens_details": {"cached_tokens": reply.usage[2]},
        },
    }


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), max(1, size))]


def openai_chunks(reply: Reply, model: str) -> list[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model}
    out = [_sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    for piece in _pieces(reply.content or "", reply.chunk_chars):
        out.append(_sse({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}))
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        head = {"index": index, "id": call_id, "type": "function", "function": {"name": name}}
        out.append(_sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]}}]}))
        for piece in _pieces(arguments, reply.chunk_chars):
            part = {"index": index, "function": {"arguments": piece}}
            out.append(_sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [part]}}]}))
    finish = reply.stop_reason or ("tool_calls" if reply.tool_calls else "stop")
    out.append(_sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
    usage = openai_document(reply, model)["usage"]
    out.append(_sse({**base, "choices": [], "usage": usage}))
    out.append("data: [DONE]\n\n")
    return out


def anthropic_document(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.content:
        content.append({"type": "text", "text": reply.content})
    for call_id, name, arguments in reply.tool_calls:
        content.append(
            {"type": "tool_use", "id": call_id, "name": name, "input": json.loads(arguments)}
        )
    stop = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
    uncached = reply.usage[0] - reply.usage[2]
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "usage": {
            "input_tokens": uncached,
            "output_tokens": reply.usage[1],
            "cache_read_input_tokens": reply.usage[2],
            "cache_creation_input_tokens": 0,
        },
    }


def anthropic_events(reply: Reply, model: str) -> list[str]:
    usage = anthropic_document(reply, model)["usage"]
    start = {
        "type": "message_start",
        "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                    "content": [], "usage": {**usage, "output_tokens": 1}},
    }  # fmt: skip
    out = [_sse(start, "message_start"), _sse({"type": "ping"}, "ping")]
    index = 0
    if reply.content:
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        out.append(_sse(block, "content_block_start"))
        for piece in _pieces(reply.content, reply.chunk_chars):
            delta = {"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": piece}}  # fmt: skip
            out.append(_sse(delta, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        index = 1
    for call_id, name, arguments in reply.tool_calls:
        block = {"type": "content_block_start", "index": index,
                 "content_block": {"type": "tool_use", "id": call_id, "name": name, "input": {}}}  # fmt: skip
        out.append(_sse(block, "content_block_start"))
        for piece in _pieces(arguments, reply.chunk_chars):
            delta = {"type": "content_block_delta", "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": piece}}  # fmt: skip
            out.append(_sse(delta, "content_block_delta"))
        out.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1
    stop = reply.stop_reason or ("tool_use" if reply.tool_calls else "end_turn")
    end = {"type": "message_delta", "delta": {"stop_reason": stop},
           "usage": {"output_tokens": reply.usage[1]}}  # fmt: skip
    out.append(_sse(end, "message_delta"))
    out.append(_sse({"type": "message_stop"}, "message_stop"))
    return out


# -- command line (for the benchmark) -------------------------------------------------------------


async def _serve(protocol: Protocol, port: int, latency_s: float) -> None:
    server = FakeModelServer(protocol, latency_s=latency_s, record=False, default=Reply("ok"))
    await server.start(port)
    print(f"PORT {server.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI/Anthropic model server.")
    parser.add_argument("--protocol", choices=("openai", "anthropic"), default="openai")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional
        pass
    asyncio.run(_serve(args.protocol, args.port, args.latency))


if __name__ == "__main__":
    main()
