"""Alembic environment for the read models; always run through :mod:`projections.migrate`.

``projections.migrate.upgrade`` hands over an open (sync-adapted) connection in
``config.attributes["connection"]``, already inside a transaction that holds an
advisory lock, so concurrent starts (several ``agentstream api`` processes,
parallel tests) migrate once.
"""

from __future__ import annotations

from alembic import context

from projections.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the projections migrations with `agentstream api --migrate-only` or "
        "projections.migrate.upgrade(url), which pass the connection"
    )
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
