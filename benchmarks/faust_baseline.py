"""The same agent loop written as plain faust agents: the baseline of bench_engine.

Three faust agents, one event at a time, the way faust's documentation writes
a pipeline: ``engine`` reads the inbox, runs the very same ``decide`` over a
plain dict of session states, and sends the events and work items it returns;
``llm`` and ``tools`` read their work topics, run the same simulated model and
tools, and send results back to the inbox. Only the runtime differs from
agentstream's: no batching, no transactions (faust's default at-least-once),
no snapshots. Run: ``python -m benchmarks.faust_baseline worker -l warn``
with AGENTSTREAM_TOPIC_PREFIX etc. set (bench_engine does this).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faust

from processors.agents.loader import load_agents
from processors.agents.model_types import LLMRequest, llm_result_record
from processors.agents.sim_model import SimulatedModel
from processors.agents.tools import run_tool, tool_result_record
from processors.core import SessionState, decide
from schemas import Codec
from streams.catalogue import Catalogue
from streams.settings import KafkaSettings

kafka = KafkaSettings.from_env()
catalogue = Catalogue.from_settings(kafka)
codec = Codec()
agents = load_agents(None)
model = SimulatedModel()
registry = agents.registry()
states: dict[str, SessionState] = {}

app = faust.App(
    f"{kafka.topic_prefix}.faust-baseline",
    broker=[f"kafka://{server}" for server in kafka.bootstrap.split(",")],
    store="memory://",
    web_port=int(os.environ.get("BASELINE_WEB_PORT", "6199")),
    web_host="127.0.0.1",
    datadir=os.environ.get("BASELINE_DATADIR", "/tmp/agentstream-faust-baseline"),
    topic_partitions=kafka.partitions,
)


def _topic(name: str) -> Any:
    return app.topic(name, key_serializer="raw", value_serializer="raw")


inbox, llm_calls, tool_calls, events = (
    _topic(catalogue.inbox.name),
    _topic(catalogue.llm_calls.name),
    _topic(catalogue.tool_calls.name),
    _topic(catalogue.events.name),
)


async def _send(topic: Any, key: bytes, name: str, record: dict[str, Any]) -> None:
    await topic.send(key=key, value=codec.encode(name, record), headers={"type": name.encode()})


@app.agent(inbox)
async def engine(stream: Any) -> None:
    async for event in stream.events():
        name, command = codec.decode(event.value)
        session_id = command["session_id"]
        decision = decide(states.get(session_id), name, command, agents)
        if decision.state is not None:
            states[session_id] = decision.state
        for event_name, record in decision.events:
            await _send(events, event.key, event_name, record)
        for work in decision.work:
            work_name, work_record = work.record
            target = llm_calls if work.kind == "llm" else tool_calls
            await _send(target, event.key, work_name, work_record)


@app.agent(llm_calls)
async def llm(stream: Any) -> None:
    async for event in stream.events():
        _, work = codec.decode(event.value)
        response = await model.complete(LLMRequest.from_work(work))
        record = llm_result_record(
            work, response, event_id=str(uuid.uuid4()), time_ms=int(time.time() * 1000)
        )
        await _send(inbox, event.key, "LLMCallResult", record)


@app.agent(tool_calls)
async def tools(stream: Any) -> None:
    async for event in stream.events():
        _, work = codec.decode(event.value)
        outcome = await run_tool(registry, work["tool"], work["arguments_json"], work["call_id"])
        record = tool_result_record(
            work, outcome, event_id=str(uuid.uuid4()), time_ms=int(time.time() * 1000)
        )
        await _send(inbox, event.key, "ToolCallResult", record)


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    assigned = app.consumer.assignment() if app.consumer else set()
    return web.json({"ok": True, "assigned": len(assigned)})


if __name__ == "__main__":
    app.main()
