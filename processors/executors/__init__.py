"""Executors: thousands of LLM and tool calls in flight, their results back to the inbox.

An executor consumes a work topic in its own consumer group, starts a task per
work item, produces the result command to the inbox and commits only up to the
lowest record not yet done. The parts::

    work_executor   WorkExecutor (the loop shared by both kinds), ResultProducer
    commit_offsets  PartitionProgress: the committable offset while calls finish out of order
    llm_executor    LLMExecutor: a WorkExecutor whose handler is the LLM pool
    tool_runner     ToolRunner: allow-list, argument checks, timeouts, output limit, sandbox
    pool/           the LLM pool: providers, routing, breakers, admission, cache, batching
"""

from __future__ import annotations

from processors.executors.llm_executor import LLMExecutor
from processors.executors.tool_runner import ToolRunner, ToolRunnerSettings
from processors.executors.work_executor import ExecutorStats, ResultProducer, WorkExecutor

__all__ = [
    "ExecutorStats",
    "LLMExecutor",
    "ResultProducer",
    "ToolRunner",
    "ToolRunnerSettings",
    "WorkExecutor",
]
