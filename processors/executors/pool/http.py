"""HTTP for providers: a small transport seam, error statuses, Server-Sent Events.

Providers build a request (URL, headers, JSON body) and parse what comes
back; the transport only moves bytes. It never retries (the pool is the one
retry layer) and turns network trouble into :class:`ProviderError` kinds
``connect`` and ``timeout``. Response bodies are capped: a server that
streams without end is ``malformed``, not an out-of-memory worker.

Two transports implement the seam. :class:`AiohttpTransport` is the default:
against the same local server httpx managed an order of magnitude fewer
requests/s than aiohttp (its connection pool rescans every connection on
every request), which puts thousands of calls in flight per process out of
reach (``benchmarks/bench_pool.py``; docs/benchmarks.md).
:class:`HttpxTransport` is kept for parity (``AGENTSTREAM_POOL_HTTP=httpx``)
and the provider contract suite runs over both. Neither has a retry layer.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx

from processors.executors.pool.errors import ProviderError
from processors.executors.pool.pause import server_wait

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""Largest response body read (non-streamed) or SSE line accepted."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-request limits in seconds; the pool bounds the whole attempt separately."""

    connect_s: float = 5.0
    """Opening the TCP connection."""
    read_s: float = 60.0
    """Waiting for the next bytes (for a stream: between two chunks)."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A whole (non-streamed) response."""

    status: int
    headers: Mapping[str, str]
    """Looked up case-insensitively (or with lower-case names)."""
    body: bytes


class StreamReply(Protocol):
    """A response whose body is read as lines (Server-Sent Events)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Header names lower-cased."""
        ...

    async def read(self) -> bytes:
        """The whole body (capped), for error responses."""
        ...

    def lines(self) -> AsyncIterator[bytes]:
        """The body line by line, without the line ending."""
        ...


class Transport(Protocol):
    """Moves one POST; see the module docstring."""

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpReply: ...

    def stream(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> AbstractAsyncContextManager[StreamReply]: ...

    async def aclose(self) -> None: ...


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Lines of a byte stream (``\\n`` or ``\\r\\n``), whatever the chunking; capped length."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                break
            line, pending = pending[:cut], pending[cut + 1 :]
            yield line[:-1] if line.endswith(b"\r") else line
        if len(pending) > MAX_RESPONSE_BYTES:
            raise ProviderError("malformed", "stream line longer than the response limit")
    if pending:
        yield pending


def _lower(headers: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


# -- aiohttp --------------------------------------------------------------------------------


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers  # case-insensitive already
        self._response = response

    async def read(self) -> bytes:
        return await _read_capped(self._response)

    def lines(self) -> AsyncIterator[bytes]:
        return split_lines(self._response.content.iter_any())


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    length = response.content_length
    if length is not None and length <= MAX_RESPONSE_BYTES:
        return await response.read()  # the common case, without a chunk loop
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ProviderError("malformed", f"response body over {MAX_RESPONSE_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


class AiohttpTransport:
    """The default transport: one aiohttp session, created on first use inside the loop."""

    def __init__(self, *, max_connections: int = 0) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=0, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
        return self._session

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeouts)
        if found is None:
            if len(self._timeouts) > 1024:  # deadline-bound timeouts vary; keep this small
                self._timeouts.clear()
            found = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.connect_s, sock_read=timeouts.read_s
            )
        return found

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpReply:
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=self._timeout(timeouts)
            ) as response:
                return HttpReply(response.status, response.headers, await _read_capped(response))
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise ProviderError("timeout", f"no answer in time ({type(error).__name__})") from None
        except (aiohttp.ClientError, OSError) as error:
            raise ProviderError("connect", f"{type(error).__name__}: {error}") from None

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> AsyncIterator[StreamReply]:
        try:
            async with self._client().post(
                url, data=body, headers=headers, timeout=self._timeout(timeouts)
            ) as response:
                yield _AiohttpStream(response)
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise ProviderError("timeout", f"no answer in time ({type(error).__name__})") from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientError, OSError) as error:
            raise ProviderError("connect", f"{type(error).__name__}: {error}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- httpx ----------------------------------------------------------------------------------


class _HttpxStream:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = _lower(response.headers)
        self._response = response

    async def read(self) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self._response.aiter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise ProviderError("malformed", f"response body over {MAX_RESPONSE_BYTES} bytes")
            parts.append(chunk)
        return b"".join(parts)

    def lines(self) -> AsyncIterator[bytes]:
        return split_lines(self._response.aiter_bytes())


class HttpxTransport:
    """httpx with its own retries off (``retries=0``) and TCP_NODELAY."""

    def __init__(self, *, max_connections: int = 1000) -> None:
        self._max_connections = max_connections
        self._client_: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._client_ is None:
            limits = httpx.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            )
            transport = httpx.AsyncHTTPTransport(
                retries=0,
                limits=limits,
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            )
            self._client_ = httpx.AsyncClient(transport=transport)
        return self._client_

    @staticmethod
    def _timeout(timeouts: Timeouts) -> httpx.Timeout:
        return httpx.Timeout(timeouts.read_s, connect=timeouts.connect_s, pool=None)

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> HttpReply:
        async with self.stream(url, headers, body, timeouts) as reply:
            return HttpReply(reply.status, reply.headers, await reply.read())

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> AsyncIterator[StreamReply]:
        request = self._client().build_request(
            "POST", url, content=body, headers=dict(headers), timeout=self._timeout(timeouts)
        )
        try:
            response = await self._client().send(request, stream=True)
            try:
                yield _HttpxStream(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as error:
            raise ProviderError("timeout", f"no answer in time ({type(error).__name__})") from None
        except (httpx.TransportError, OSError) as error:
            raise ProviderError("connect", f"{type(error).__name__}: {error}") from None

    async def aclose(self) -> None:
        if self._client_ is not None:
            await self._client_.aclose()
            self._client_ = None


def make_transport(kind: str, *, max_connections: int) -> Transport:
    """``aiohttp`` (default) or ``httpx``."""
    if kind == "aiohttp":
        return AiohttpTransport(max_connections=max_connections)
    if kind == "httpx":
        return HttpxTransport(max_connections=max_connections or 1000)
    raise ValueError(f"unknown HTTP transport {kind!r} (aiohttp | httpx)")


# -- protocol helpers -------------------------------------------------------------------------


def status_error(status: int, headers: Mapping[str, str], detail: str) -> ProviderError:
    """The ProviderError an HTTP error status means (see the pool's errors module)."""
    wait = server_wait(status, headers)
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    if status == 429:
        return ProviderError("rate_limited", message, retry_after_s=wait, status=status)
    if status in (503, 529):
        return ProviderError("overloaded", message, retry_after_s=wait, status=status)
    if status >= 500 or status in (408, 409):
        return ProviderError("server", message, retry_after_s=wait, status=status)
    if status in (401, 403):
        return ProviderError("auth", message, status=status)
    return ProviderError("bad_request", message, status=status)


def error_detail(body: bytes, secrets: tuple[str, ...] = (), limit: int = 300) -> str:
    """A short, secret-free description of an error body (the provider's message if JSON)."""
    text = body.decode("utf-8", errors="replace")
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    return redact(" ".join(text.split())[:limit], secrets)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by ``***`` (credentials never reach a log)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


async def sse_events(lines: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events stream; ``event`` is "" when unnamed."""
    event, data = "", list[str]()
    async for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield event, "\n".join(data)


def loads_object(text: bytes | str, what: str) -> dict[str, Any]:
    """``json.loads`` that insists on an object; ``malformed`` otherwise."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ProviderError("malformed", f"{what} is not JSON ({error})") from None
    if not isinstance(document, dict):
        raise ProviderError("malformed", f"{what} is not a JSON object")
    return document
