"""processors: everything that runs agent sessions, by role.

Each room is a package whose ``__init__`` draws its map::

    core/        the pure session core: decide(state, command) -> events, evolve(state, event)
    agents/      what users declare: agents, models, tools (and the simulated model)
    engine/      the session engine runtime: owns inbox partitions, one Kafka
                 transaction per batch, snapshots, recovery, the log audit
    executors/   LLM and tool calls in flight, results back to the inbox; pool/ is the LLM pool
    testing/     an in-process loop of the core for users' tests (no Kafka)

Shared by the engine and the executors: ``settings`` (their ``AGENTSTREAM_*``
settings), ``metrics`` (their Prometheus metrics) and ``postgres`` (asyncpg pools).

Dependencies point one way: ``core`` and ``agents`` import no I/O;
``engine`` and ``executors`` import them, ``schemas`` and ``streams``; nothing
here imports ``projections`` or ``agentstream``.
"""
