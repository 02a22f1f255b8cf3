"""The simulated model: a deterministic stand-in for an LLM, part of the product.

The demo, the tests, the benchmarks and users' own tests run agents against
it with no network and no keys. Its reply is a pure function of the seed and
the prompt:

* when the agent offers tools, the latest user message calls for them and
  their results are not in the conversation yet, it asks for them, several at
  once when the input calls for several: arithmetic (``6*7``) -> ``calculator``,
  "weather in <City>" -> ``weather``;
* once the results are in, it answers with them ("6*7 = 42. The weather in
  Paris is ...");
* otherwise it answers with a sentence chosen by the hash of the input.

Tool call ids derive from (seed, prompt hash, index), token usage is about
one token per 4 characters. Latency and failures are drawn from an RNG seeded
by (seed, prompt hash, call id, attempt): the same call gets the same latency
every time, a retry (next attempt) may succeed where the first failed, and
many sessions with the same prompt still spread over the distribution.
``fail_all=True`` fails every call, for the test proving replay never calls a
model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from processors.agents.builtin_tools import ToolError, calculate
from processors.agents.model_types import (
    ChatMessage,
    LLMRequest,
    LLMResponse,
    ModelError,
    ToolCall,
    canonical_json,
)

__all__ = ["LatencyModel", "ModelError", "SimulatedModel"]

_Z99 = 2.3263478740408408
"""The standard normal's 99th percentile: lognormal sigma = ln(p99 / median) / _Z99."""


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long a simulated call takes, in seconds.

    ``zero`` (the default, for benchmarks of everything but the model),
    ``fixed``, ``uniform`` in [low_s, high_s], or ``lognormal`` with the given
    median and 99th percentile (a realistic long tail). ``max_s`` caps any draw.
    """

    kind: Literal["zero", "fixed", "uniform", "lognormal"] = "zero"
    fixed_s: float = 0.0
    low_s: float = 0.0
    high_s: float = 0.0
    median_s: float = 0.0
    p99_s: float = 0.0
    max_s: float | None = None

    @staticmethod
    def fixed(seconds: float) -> LatencyModel:
        return LatencyModel("fixed", fixed_s=seconds)

    @staticmethod
    def uniform(low_s: float, high_s: float) -> LatencyModel:
        return LatencyModel("uniform", low_s=low_s, high_s=high_s)

    @staticmethod
    def lognormal(median_s: float, p99_s: float, max_s: float | None = None) -> LatencyModel:
        return LatencyModel("lognormal", median_s=median_s, p99_s=p99_s, max_s=max_s)

    def __post_init__(self) -> None:
        if self.kind not in ("zero", "fixed", "uniform", "lognormal"):
            raise ValueError(f"unknown latency kind {self.kind!r} (zero|fixed|uniform|lognormal)")
        if self.kind == "uniform" and not 0 <= self.low_s <= self.high_s:
            raise ValueError("uniform latency needs 0 <= low_s <= high_s")
        if self.kind == "lognormal" and not 0 < self.median_s <= self.p99_s:
            raise ValueError("lognormal latency needs 0 < median_s <= p99_s")
        if self.kind == "fixed" and self.fixed_s < 0:
            raise ValueError("fixed latency must not be negative")

    def sample(self, rng: random.Random) -> float:
        """One draw, in seconds (never negative)."""
        if self.kind == "fixed":
            value = self.fixed_s
        elif self.kind == "uniform":
            value = rng.uniform(self.low_s, self.high_s)
        elif self.kind == "lognormal":
            sigma = math.log(self.p99_s / self.median_s) / _Z99
            value = rng.lognormvariate(math.log(self.median_s), sigma)
        else:
            value = 0.0
        if self.max_s is not None:
            value = min(value, self.max_s)
        return max(0.0, value)

    @staticmethod
    def from_options(options: Mapping[str, Any]) -> LatencyModel:
        """From an agents-file mapping, e.g. ``{kind: lognormal, median_s: 0.8, p99_s: 3}``."""
        allowed = {"kind", "fixed_s", "low_s", "high_s", "median_s", "p99_s", "max_s"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown latency option(s): {', '.join(sorted(unknown))}")
        return LatencyModel(**options)


_CALC_RUN = re.compile("[\\d(][\\d\\s.+\\-*/%()^\u00d7\u00f7]*[\\d)]")
_OPERATOR = re.compile("\\d\\s*\\)*\\s*(\\*\\*|//|[+\\-*/%^\u00d7\u00f7])\\s*\\(*\\s*[\\d.]")
_WEATHER = re.compile(
    r"(?i:\bweather)\s+(?i:in|for|at|of)\s+([A-Za-z][\w'\-]*(?:\s[A-Z][\w'\-]*)*)"
)


def _intents(text: str) -> list[tuple[int, str, dict[str, str]]]:
    """(position, tool, arguments) for each tool call ``text`` asks for, in text order."""
    found: list[tuple[int, str, dict[str, str]]] = []
    for match in _CALC_RUN.finditer(text):
        expression = " ".join(match.group(0).split())
        if not _OPERATOR.search(expression):
            continue
        try:
            calculate(expression)
        except ToolError:
            continue
        found.append((match.start(), "calculator", {"expression": expression}))
    for match in _WEATHER.finditer(text):
        found.append((match.start(), "weather", {"city": match.group(1)}))
    found.sort(key=lambda item: item[0])
    return found


_OPENERS = ("Sure.", "Good question.", "Here is my take.", "Let me answer that.", "Of course.")
_BODIES = (
    "The short answer is yes, with a few caveats.",
    "It depends on the details, but the usual approach works well.",
    "I would start small, measure, and then decide.",
    "There are two sides to this; both have merit.",
    "The simplest explanation is usually the right one.",
    "I do not have enough context to be certain, but probably not.",
)


def _tokens(chars: int) -> int:
    return max(1, round(chars / 4))


def _prompt_chars(request: LLMRequest) -> int:
    total = 0
    for m in request.messages:
        total += len(m.content or "") + sum(
            len(c.name) + len(c.arguments_json) for c in m.tool_calls
        )
    for t in request.tools:
        total += len(t.name) + len(t.description) + len(t.parameters_json)
    return total


def _summarise(result: ChatMessage, call: ToolCall | None) -> str:
    name = result.name or (call.name if call else "tool")
    content = result.content or ""
    if content.startswith("error: "):
        return f"I could not use {name}: {content[len('error: ') :]}."
    arguments: dict[str, Any] = {}
    if call is not None:
        try:
            loaded = json.loads(call.arguments_json)
            arguments = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            arguments = {}
    if name == "calculator" and "expression" in arguments:
        return f"{arguments['expression']} = {content}."
    if name == "weather" and "city" in arguments:
        city = str(arguments["city"])
        rest = content[len(city) + 2 :] if content.startswith(f"{city}: ") else content
        return f"The weather in {city} is {rest}."
    return f"{name} returned {content}."


class SimulatedModel:
    """A deterministic model: same seed and prompt, same reply (see the module docstring)."""

    def __init__(
        self,
        seed: int = 0,
        latency: LatencyModel | None = None,
        failure_rate: float = 0.0,
        *,
        fail_all: bool = False,
        name: str = "sim",
        chunk_chars: int = 16,
    ) -> None:
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError("failure_rate must be within [0, 1]")
        self.seed = seed
        self.latency = latency or LatencyModel()
        self.failure_rate = failure_rate
        self.fail_all = fail_all
        self.name = name
        self.chunk_chars = max(1, chunk_chars)

    @staticmethod
    def from_options(options: Mapping[str, Any]) -> SimulatedModel:
        """From an endpoint's ``options`` in the agents file (seed, latency, failure_rate...)."""
        allowed = {"seed", "latency", "failure_rate", "fail_all", "chunk_chars"}
        unknown = set(options) - allowed
        if unknown:
            raise ValueError(f"unknown sim option(s): {', '.join(sorted(unknown))}")
        return SimulatedModel(
            seed=int(options.get("seed", 0)),
            latency=LatencyModel.from_options(options.get("latency") or {}),
            failure_rate=float(options.get("failure_rate", 0.0)),
            fail_all=bool(options.get("fail_all", False)),
            chunk_chars=int(options.get("chunk_chars", 16)),
        )

    # -- determinism --------------------------------------------------------------

    def _rng(self, request: LLMRequest) -> random.Random:
        return random.Random(f"{self.seed}:{request.hash()}:{request.call_id}:{request.attempt}")

    def latency_of(self, request: LLMRequest) -> float:
        """Seconds this request takes (the same for the same request)."""
        rng = self._rng(request)
        rng.random()  # the failure draw comes first
        return self.latency.sample(rng)

    def fails(self, request: LLMRequest) -> bool:
        """Whether this request fails (with probability ``failure_rate``, deterministically)."""
        return self.fail_all or self._rng(request).random() < self.failure_rate

    def _call_id(self, digest: str, index: int) -> str:
        return "call_" + hashlib.sha256(f"{self.seed}:{digest}:{index}".encode()).hexdigest()[:24]

    # -- the reply ----------------------------------------------------------------

    def decide_reply(self, request: LLMRequest) -> LLMResponse:
        """The reply, without latency; raises ModelError when the request is set to fail."""
        if self.fail_all:
            raise ModelError("the simulated model is set to fail every call", retryable=False)
        if self.fails(request):
            raise ModelError("simulated model failure", retryable=True)
        return self._reply(request)

    def _reply(self, request: LLMRequest) -> LLMResponse:
        messages = request.messages
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        text = messages[last_user].content or "" if last_user >= 0 else ""
        after = messages[last_user + 1 :]
        asked = [c for m in after if m.role == "assistant" for c in m.tool_calls]
        if asked:
            return self._final(request, after, asked)
        available = {t.name for t in request.tools}
        wanted = [(tool, args) for _, tool, args in _intents(text) if tool in available]
        if wanted:
            digest = request.hash()
            calls = tuple(
                ToolCall(self._call_id(digest, i), tool, canonical_json(args))
                for i, (tool, args) in enumerate(wanted)
            )
            out = sum(len(c.name) + len(c.arguments_json) for c in calls)
            return self._response(request, None, calls, out)
        pick = hashlib.sha256(f"{self.seed}:{text}".encode("utf-8", "surrogatepass")).digest()
        answer = f"{_OPENERS[pick[0] % len(_OPENERS)]} {_BODIES[pick[1] % len(_BODIES)]}"
        return self._response(request, answer, (), len(answer))

    def _final(
        self, request: LLMRequest, after: Sequence[ChatMessage], asked: list[ToolCall]
    ) -> LLMResponse:
        by_id = {c.call_id: c for c in asked}
        parts = [_summarise(m, by_id.get(m.tool_call_id or "")) for m in after if m.role == "tool"]
        answer = " ".join(parts) if parts else "I asked for tools but got no results."
        return self._response(request, answer, (), len(answer))

    def _response(
        self, request: LLMRequest, content: str | None, calls: tuple[ToolCall, ...], chars: int
    ) -> LLMResponse:
        return LLMResponse(
            content=content,
            tool_calls=calls,
            input_tokens=_tokens(_prompt_chars(request)),
            output_tokens=_tokens(chars),
            cached_tokens=0,
            finish_reason="tool_calls" if calls else "stop",
            model=self.name,
        )

    # -- async API ------------------------------------------------------------------

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """The reply after the request's latency; raises ModelError when it fails."""
        delay = self.latency_of(request)
        if delay > 0:
            await asyncio.sleep(delay)
        return self.decide_reply(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | LLMResponse]:
        """Text chunks of the reply as they "arrive", then the whole LLMResponse last.

        The latency is spread over the chunks. A failing request raises
        ModelError before any chunk, as a refused provider request would.
        """
        delay = self.latency_of(request)
        response = self.decide_reply(request)
        text = response.content or ""
        chunks = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        pause = delay / (len(chunks) + 1)
        if pause > 0:
            await asyncio.sleep(pause)
        for chunk in chunks:
            yield chunk
            if pause > 0:
                await asyncio.sleep(pause)
        yield response
