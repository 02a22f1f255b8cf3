"""The part of the OpenAI and Anthropic providers that is just HTTP.

A subclass says how to build the body (``body``) and how to read an answer,
whole (``parse``) or streamed (``parse_stream``); this class sends it, maps
error statuses to :class:`~processors.executors.pool.errors.ProviderError` kinds and
keeps the credential out of every message. Streaming is used only when
someone listens (``on_delta``) and the endpoint allows it, since a streamed
answer costs more to parse than a whole one; what comes back is read by its
content type, since some compatible servers answer a streamed request whole.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from processors.agents.model_types import LLMRequest, LLMResponse, ModelError
from processors.executors.pool.errors import ErrorKind, ProviderError
from processors.executors.pool.http import (
    StreamReply,
    Timeouts,
    Transport,
    error_detail,
    loads_object,
    redact,
    sse_events,
    status_error,
)
from processors.executors.pool.providers.base import DEFAULT_MAX_TOKENS, DeltaSink, EndpointOptions


class HttpProvider:
    """Sends one JSON POST per request; subclasses speak the protocol."""

    kind = "http"
    supports_batch = False

    def __init__(
        self,
        *,
        model: str,
        url: str,
        headers: Mapping[str, str],
        secrets: tuple[str, ...],
        options: EndpointOptions,
        transport: Transport,
    ) -> None:
        self.model = model
        self.url = url
        self.headers = {"content-type": "application/json", **options.headers, **headers}
        self.secrets = secrets
        self.options = options
        self.transport = transport
        self.max_output_tokens = options.max_tokens or DEFAULT_MAX_TOKENS
        self.label = f"{self.kind}/{model}@{urlsplit(url).netloc}"

    # -- what subclasses provide ------------------------------------------------------------

    def body(self, request: LLMRequest, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, request: LLMRequest, document: dict[str, Any]) -> LLMResponse:
        raise NotImplementedError

    async def parse_stream(
        self, request: LLMRequest, events: AsyncIterator[tuple[str, str]], on_delta: DeltaSink
    ) -> LLMResponse:
        raise NotImplementedError

    # -- the request --------------------------------------------------------------------------

    def _document(self, request: LLMRequest, stream: bool) -> bytes:
        body = self.body(request, stream)
        body.update(self.options.parameters)
        body.update(self.options.extra_body)
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return status_error(status, headers, error_detail(raw, self.secrets))

    async def complete(
        self, request: LLMRequest, timeouts: Timeouts, on_delta: DeltaSink | None = None
    ) -> LLMResponse:
        streaming = on_delta is not None and self.options.stream
        data = self._document(request, streaming)
        try:
            if on_delta is not None and streaming:
                async with self.transport.stream(self.url, self.headers, data, timeouts) as reply:
                    if reply.status != 200:
                        raise self._error(reply.status, reply.headers, await reply.read())
                    return await self._streamed(request, reply, on_delta)
            whole = await self.transport.post(self.url, self.headers, data, timeouts)
            if whole.status != 200:
                raise self._error(whole.status, whole.headers, whole.body)
            return self._whole(request, whole.body, media_type(whole.headers))
        except ProviderError as error:
            safe = redact(str(error), self.secrets)
            if safe != str(error):
                raise ProviderError(
                    error.kind, safe, retry_after_s=error.retry_after_s, status=error.status
                ) from None
            raise

    def _whole(self, request: LLMRequest, body: bytes, kind: str) -> LLMResponse:
        """A whole answer; a malformed one is reported with the content type it came as."""
        try:
            return self.parse(request, loads_object(body, "response"))
        except ProviderError as error:
            if error.kind != "malformed":
                raise
            raise ProviderError("malformed", f"{error} (content type {kind or 'none'})") from None

    async def _streamed(
        self, request: LLMRequest, reply: StreamReply, on_delta: DeltaSink
    ) -> LLMResponse:
        """A streamed request's answer: events, or the whole answer if the server sent one.

        Some compatible servers ignore ``stream: true`` and answer plain JSON;
        its content type says so, and it is read like a non-streamed answer
        (its text reaches ``on_delta`` as one piece). A missing content type
        is read as events, as before; anything else is refused by name.
        """
        kind = media_type(reply.headers)
        if kind in ("text/event-stream", ""):
            try:
                return await self.parse_stream(request, sse_events(reply.lines()), on_delta)
            except ProviderError as error:
                if error.kind != "malformed":
                    raise
                raise ProviderError(
                    "malformed", f"{error} (content type {kind or 'none'})"
                ) from None
        body = await reply.read()
        if kind == "application/json" or kind.endswith("+json"):
            response = self._whole(request, body, kind)
            if response.content:
                await on_delta(response.content)
            return response
        raise ProviderError(
            "malformed",
            f"answer of content type {kind} to a streamed request (expected "
            f"text/event-stream or application/json): {error_detail(body, self.secrets, 200)}",
        )

    async def complete_batch(
        self, requests: Sequence[LLMRequest], timeouts: Timeouts
    ) -> list[LLMResponse | ModelError]:
        """Chat Completions / Messages take one conversation per request: no batch call."""
        raise NotImplementedError(f"{self.label} does not accept batches")

    async def aclose(self) -> None:
        return None  # the transport is the pool's, shared by endpoints


def media_type(headers: Mapping[str, str]) -> str:
    """The content type without parameters, lower-cased ("" when the server sent none)."""
    return headers.get("content-type", "").partition(";")[0].strip().lower()


def stream_error(document: Mapping[str, Any]) -> ProviderError:
    """An error event inside a stream (the status was already 200)."""
    error = document.get("error")
    message = ""
    kind: ErrorKind = "server"
    if isinstance(error, Mapping):
        message = str(error.get("message") or "")
        if "overloaded" in str(error.get("type") or ""):
            kind = "overloaded"
        elif "rate_limit" in str(error.get("type") or ""):
            kind = "rate_limited"
    return ProviderError(kind, f"error in stream: {message[:300]}")


def json_event(data: str) -> dict[str, Any]:
    """One SSE data payload as a JSON object (``malformed`` otherwise)."""
    return loads_object(data, "stream event")
