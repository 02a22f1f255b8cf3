"""A test kit for users' agents and tools: whole sessions in one process, no Kafka.

inline_runtime  InlineRuntime: plays the engine and both executors around the
                pure core, with the simulated model by default
"""

from __future__ import annotations

from processors.testing.inline_runtime import InlineRuntime

__all__ = ["InlineRuntime"]
