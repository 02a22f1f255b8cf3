"""The pool's public surface, pinned (like httpx's test_exported_members): changing it is a decision."""

from __future__ import annotations

import processors.executors.pool


def test_public_surface() -> None:
    assert sorted(processors.executors.pool.__all__) == [
        "CallContext",
        "LLMPool",
        "PoolConfigError",
        "PoolError",
        "PoolResult",
        "PoolSettings",
        "PooledModel",
        "ProviderError",
        "ShedError",
        "TenantLimits",
    ]
    for name in processors.executors.pool.__all__:
        assert getattr(processors.executors.pool, name).__module__.startswith(
            "processors.executors.pool."
        )


def test_pool_errors_are_model_errors() -> None:
    from processors.agents.model_types import ModelError

    for error in ("PoolError", "ProviderError", "ShedError"):
        assert issubclass(getattr(processors.executors.pool, error), ModelError)
