"""Local infrastructure: Kafka and Postgres without Docker (:mod:`infra.local`).

Imports nothing of ours; the CLI (``agentstream infra``) and the test fixtures both
call :func:`infra.local.ensure_up`, so they bring up exactly the same servers.
"""
